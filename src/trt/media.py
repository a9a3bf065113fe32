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
