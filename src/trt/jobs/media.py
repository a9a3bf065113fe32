"""User uploads: from Telegram (by file id) to KIE's upload API, done by the engine.

The bytes come through a `TelegramFiles` (the adapter is `trt.telegram.files.BotFiles`).

Handlers only record `tg:<file_id>` references while the user chooses; the engine fetches the
bytes and uploads them right before createTask (KIE deletes uploads after 3 days), so no
handler ever waits on a download.
"""

from __future__ import annotations

from typing import Any, Protocol

from trt.catalog.rules import is_telegram_file, telegram_file_id
from trt.catalog.schema import ModelSpec
from trt.errors import MediaFetchError
from trt.kie.client import KieClient
from trt.media import extension_of, mime_kind, sniff_mime


class TelegramFiles(Protocol):
    async def fetch(self, file_id: str) -> tuple[bytes, str]:
        """The file's bytes and a file name."""


async def upload_media(
    model: ModelSpec, params: dict[str, Any], files: TelegramFiles, kie: KieClient, job_id: str
) -> dict[str, Any]:
    """`params` with every `tg:` reference replaced by a KIE upload URL."""
    resolved = dict(params)
    counter = 0
    for name, spec in model.params.items():
        if not spec.is_media or name not in resolved:
            continue
        value = resolved[name]
        values = value if isinstance(value, list) else [value]
        uploaded = []
        for item in values:
            if not is_telegram_file(item):
                uploaded.append(item)
                continue
            data, filename = await files.fetch(telegram_file_id(str(item)))
            assert spec.media is not None
            mime = sniff_mime(data) if data else None
            kind = spec.media.kind.value
            if mime_kind(mime) != kind:
                # The name and the type the client declared can lie; the bytes cannot.
                code = "input_format" if kind == "image" else f"input_{kind}"
                raise MediaFetchError(f"{filename}: not {_ARTICLES[kind]}", code=code)
            extension = _extension(mime, filename)
            counter += 1
            uploaded.append(await kie.upload(data, f"{job_id}-{counter}{extension}"))
        resolved[name] = uploaded if isinstance(value, list) else uploaded[0]
    return resolved


_ARTICLES = {"image": "an image", "video": "a video", "audio": "audio"}


def _extension(mime: str | None, filename: str) -> str:
    known = extension_of(mime)
    if known:
        return known
    return "." + filename.rsplit(".", 1)[-1] if "." in filename else ""
