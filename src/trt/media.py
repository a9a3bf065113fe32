"""What a file is: image dimensions and type, read the way Telegram checks photos."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image, or None when the bytes are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def image_mime(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        # A bomb (a few bytes that claim gigapixels) is no image TRT will take either.
        return None


# The MIME type of each kind of file TRT takes from users and sends to KIE, by its first bytes.
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/flac": ".flac",
}
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"F4A ")
# Subtypes that name one format (KIE's descriptions, catalogues and clients spell them apart).
_FORMAT_ALIASES = {
    "jpg": "jpeg",
    "x-wav": "wav",
    "wave": "wav",
    "vnd.wave": "wav",
    "mp3": "mpeg",
    "x-m4a": "mp4",
    "m4a": "mp4",
    "mov": "quicktime",
}


def canonical_format(subtype: str) -> str:
    """`jpg` → `jpeg`, `x-wav` → `wav`, `mp3` → `mpeg`: one name per format."""
    lowered = subtype.lower()
    return _FORMAT_ALIASES.get(lowered, lowered)


def extension_of(mime: str | None) -> str:
    """The file name extension of a MIME type (`audio/x-wav` → `.wav`); "" when unknown."""
    if not mime:
        return ""
    major, _, subtype = mime.lower().partition("/")
    return EXTENSIONS.get(f"{major}/{subtype}") or EXTENSIONS.get(
        f"{major}/{canonical_format(subtype)}", ""
    )


def result_file_name(job_id: str, position: int, mime: str | None) -> str:
    """The name a result file is sent under, the first time and when sent again."""
    return f"trt-{job_id[:8]}-{position}{extension_of(mime)}"


def sniff_mime(data: bytes) -> str | None:
    """What the bytes are (images by decoding, video and audio by their container's magic),
    or None. The name and the type a client declared can lie; the bytes cannot."""
    head = data[:16]
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AUDIO_BRANDS:
            return "audio/mp4"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        # MPEG audio frame sync; ADTS AAC shares the sync and is told by its layer bits (00).
        if not head.startswith(b"ID3") and head[1] & 0x06 == 0:
            return "audio/aac"
        return "audio/mpeg"
    return image_mime(data)


def mime_kind(mime: str | None) -> str | None:
    """`image`, `video` or `audio`: the major part of a MIME type TRT knows."""
    if mime is None:
        return None
    major = mime.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else None
