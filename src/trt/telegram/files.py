"""Users' files from the Bot API: getFile, then the download (≤ 20 MB)."""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from trt.errors import MediaFetchError
from trt.logs import scrub


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
