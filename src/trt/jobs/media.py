"""User uploads: from Telegram (by file id) to KIE's upload API, done by the engine.

Handlers only record `tg:<file_id>` references while the user chooses; the engine fetches the
bytes and uploads them right before createTask (KIE deletes uploads after 3 days), so no
handler ever waits on a download.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from trt.catalog.rules import is_telegram_file, telegram_file_id
from trt.catalog.schema import ModelSpec
from trt.kie.client import KieClient
from trt.media import extension_of, mime_kind, sniff_mime
from trt.telemetry.logs import scrub


class MediaFetchError(Exception):
    """A user's file could not be used: not fetched from Telegram (too big, gone; code
    `input`) or not what the model takes (an empty file, a "photo" that is no image; code
    `input_format`, and `input_video` / `input_audio` for the other kinds)."""

    def __init__(self, message: str, code: str = "input") -> None:
        super().__init__(message)
        self.code = code


class TelegramFiles(Protocol):
    async def fetch(self, file_id: str) -> tuple[bytes, str]:
        """The file's bytes and a file name."""


class BotFiles:
    """Fetches users' files through the Bot API (getFile + download, ≤ 20 MB)."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def fetch(self, file_id: str) -> tuple[bytes, str]:
        try:
            info = await self.bot.get_file(file_id)
            assert info.file_path is not None
            buffer = await self.bot.download_file(info.file_path)
        except TelegramAPIError as error:  # Telegram's own words (no URL in them)
            raise MediaFetchError(f"{type(error).__name__}: {scrub(error.message)}") from error
        except Exception as error:  # any other failure: the file is unavailable
            # Not the exception's text: a failed download's names the file URL, which holds
            # the bot token, and this message is stored on the job and shown in /debug.
            raise MediaFetchError(
                f"the file could not be fetched ({type(error).__name__})"
            ) from error
        assert buffer is not None
        return buffer.read(), info.file_path.rsplit("/", 1)[-1]


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
