"""The one sender: every message TRT's workers send to users goes through here.

It paces messages per chat (Telegram: about one per second), turns Telegram's answers into
three outcomes the caller acts on — sent, `RetryLater` (429 with `retry_after`, 5xx, network),
`Undeliverable` (blocked, deleted chat, a file Telegram refuses) — and picks how to send a
result by its kind and size: photo, video, audio, document, a media group, or a link.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardMarkup,
    InputMediaAudio,
    InputMediaDocument,
    InputMediaLivePhoto,
    InputMediaPhoto,
    InputMediaVideo,
    Message,
)

from trt.errors import TrtError
from trt.media import image_size

T = TypeVar("T")
# What a message carries as buttons; callers outside telegram/ and bot/ name it by this alias.
Markup: TypeAlias = InlineKeyboardMarkup
PHOTO_MAX_BYTES = 10 * 1024 * 1024
UPLOAD_MAX_BYTES = 50 * 1024 * 1024
PHOTO_MAX_SIDES = 10_000
PHOTO_MAX_RATIO = 20
CAPTION_MAX = 1024
PRUNE_AT = 10_000  # chats remembered for pacing before the idle ones are dropped


class RetryLater(TrtError):
    def __init__(self, after_s: float, reason: str) -> None:
        self.after_s = after_s
        self.reason = reason
        super().__init__(f"retry in {after_s:.0f} s: {reason}")


class Undeliverable(TrtError):
    """Telegram will not take this message, now or later (blocked, chat gone, bad file)."""

    def __init__(self, reason: str, *, blocked: bool = False) -> None:
        self.reason = reason
        self.blocked = blocked
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class OutgoingFile:
    data: bytes | None
    file_id: str | None  # a Telegram file id from an earlier send: no upload again
    mime_type: str
    filename: str


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: int
    file_ids: tuple[str | None, ...] = ()
    sent_as: tuple[str, ...] = ()
    durations: tuple[int | None, ...] = ()  # what Telegram measured of each video or audio


def photo_fits(data: bytes) -> bool:
    """Telegram's photo rules: ≤ 10 MB, width + height ≤ 10000, aspect ratio ≤ 20."""
    if len(data) > PHOTO_MAX_BYTES:
        return False
    size = image_size(data)
    if size is None:
        return False
    width, height = size
    fits_sides = width + height <= PHOTO_MAX_SIDES
    fits_ratio = max(width, height) <= PHOTO_MAX_RATIO * max(1, min(width, height))
    return bool(fits_sides and fits_ratio)


def send_kind(item: OutgoingFile, output: str) -> str:
    """photo | video | audio | document | link for one result file."""
    if item.file_id is None and (item.data is None or len(item.data) > UPLOAD_MAX_BYTES):
        return "link"  # too big to have been downloaded, or to upload
    if output == "image":
        if item.file_id is not None or (item.data is not None and photo_fits(item.data)):
            return "photo" if item.mime_type.startswith("image/") else "document"
        return "document"
    if output == "video":
        return "video" if item.mime_type in ("video/mp4", "video/quicktime") else "document"
    if output == "audio":
        return (
            "audio"
            if item.mime_type in ("audio/mpeg", "audio/mp4", "audio/x-m4a")
            else ("document")
        )
    return "document"


class Sender:
    def __init__(self, bot: Bot, *, per_chat_interval_s: float = 1.0) -> None:
        self.bot = bot
        self.per_chat_interval_s = per_chat_interval_s
        self._next_slot: dict[int, float] = {}
        self._prune_at = PRUNE_AT

    def wait_s(self, chat_id: int) -> float:
        """How long until this chat may get its next message (0 when it may now)."""
        return max(0.0, self._next_slot.get(chat_id, 0.0) - time.monotonic())

    async def _pace(self, chat_id: int) -> None:
        now = time.monotonic()
        slot = max(self._next_slot.get(chat_id, 0.0), now)
        self._next_slot[chat_id] = slot + self.per_chat_interval_s
        if len(self._next_slot) > self._prune_at:
            # Only chats whose next slot is still ahead matter: the rest pace from zero anyway.
            self._next_slot = {chat: at for chat, at in self._next_slot.items() if at > now}
            self._prune_at = max(PRUNE_AT, 2 * len(self._next_slot))
        if slot > now:
            await asyncio.sleep(slot - now)

    async def text(
        self,
        chat_id: int,
        text: str,
        *,
        markup: InlineKeyboardMarkup | None = None,
        edit_message_id: int | None = None,
    ) -> Sent:
        """Edit `edit_message_id` when given (falling back to a new message), else send."""
        return await _guarded(self._text(chat_id, text, markup, edit_message_id))

    async def _text(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None,
        edit_message_id: int | None,
    ) -> Sent:
        if edit_message_id is not None:
            try:
                edited = await self.bot.edit_message_text(
                    text=text, chat_id=chat_id, message_id=edit_message_id, reply_markup=markup
                )
                assert isinstance(edited, Message)
                return Sent(edited.message_id)
            except TelegramBadRequest as error:
                if "message is not modified" in error.message:
                    return Sent(edit_message_id)
                if not _edit_impossible(error):
                    raise
        await self._pace(chat_id)
        message = await self.bot.send_message(chat_id, text, reply_markup=markup)
        return Sent(message.message_id)

    async def files(
        self,
        chat_id: int,
        items: list[OutgoingFile],
        output: str,
        caption: str,
        markup: InlineKeyboardMarkup | None,
    ) -> Sent:
        """Send result files: one message, or a media group plus a message with the buttons."""
        assert items, "nothing to send"
        kinds = [send_kind(item, output) for item in items]
        caption = caption[:CAPTION_MAX]
        if len(items) == 1 or any(k not in ("photo", "document") for k in kinds):
            return await _guarded(self._one_by_one(chat_id, items, kinds, caption, markup))
        return await _guarded(self._group(chat_id, items, kinds, caption, markup))

    async def _group(
        self,
        chat_id: int,
        items: list[OutgoingFile],
        kinds: list[str],
        caption: str,
        markup: InlineKeyboardMarkup | None,
    ) -> Sent:
        await self._pace(chat_id)
        media: list[
            InputMediaAudio
            | InputMediaDocument
            | InputMediaLivePhoto
            | InputMediaPhoto
            | InputMediaVideo
        ] = [
            InputMediaPhoto(media=_input(item), caption=caption if index == 0 else None)
            if kind == "photo"
            else InputMediaDocument(media=_input(item), caption=caption if index == 0 else None)
            for index, (item, kind) in enumerate(zip(items, kinds, strict=True))
        ]
        messages = await self.bot.send_media_group(chat_id, media=media[:10])
        file_ids = tuple(_file_id(m) for m in messages)
        last = messages[-1].message_id
        if markup is not None:
            await self._pace(chat_id)
            last = (await self.bot.send_message(chat_id, caption, reply_markup=markup)).message_id
        durations = tuple(_duration(m) for m in messages)
        return Sent(last, file_ids, tuple(kinds[: len(messages)]), durations)

    async def _one_by_one(
        self,
        chat_id: int,
        items: list[OutgoingFile],
        kinds: list[str],
        caption: str,
        markup: InlineKeyboardMarkup | None,
    ) -> Sent:
        file_ids: list[str | None] = []
        durations: list[int | None] = []
        last_id = 0
        for index, (item, kind) in enumerate(zip(items, kinds, strict=True)):
            last = index == len(items) - 1
            text = caption if last else None
            keyboard = markup if last else None
            await self._pace(chat_id)
            source = _input(item)
            if kind == "photo":
                message = await self.bot.send_photo(
                    chat_id, source, caption=text, reply_markup=keyboard
                )
            elif kind == "video":
                message = await self.bot.send_video(
                    chat_id, source, caption=text, reply_markup=keyboard
                )
            elif kind == "audio":
                message = await self.bot.send_audio(
                    chat_id, source, caption=text, reply_markup=keyboard
                )
            else:
                message = await self.bot.send_document(
                    chat_id, source, caption=text, reply_markup=keyboard
                )
            file_ids.append(_file_id(message))
            durations.append(_duration(message))
            last_id = message.message_id
        return Sent(last_id, tuple(file_ids), tuple(kinds), tuple(durations))


def _input(item: OutgoingFile) -> BufferedInputFile | str:
    if item.file_id is not None:
        return item.file_id
    assert item.data is not None
    return BufferedInputFile(item.data, filename=item.filename)


def _duration(message: Message) -> int | None:
    for media in (message.video, message.audio, message.voice):
        if media is not None:
            return media.duration
    return None


def _file_id(message: Message) -> str | None:
    if message.photo:
        return message.photo[-1].file_id
    for media in (message.video, message.audio, message.voice, message.document):
        if media is not None:
            return media.file_id
    return None


def _edit_impossible(error: TelegramBadRequest) -> bool:
    text = error.message.lower()
    return any(
        phrase in text
        for phrase in (
            "message to edit not found",
            "message can't be edited",
            "there is no text in the message",
        )
    )


async def _guarded(call: Awaitable[T]) -> T:
    """Telegram's exceptions → RetryLater / Undeliverable (the caller's two decisions)."""
    try:
        return await call
    except TelegramRetryAfter as exc:
        raise RetryLater(float(exc.retry_after), "flood control") from exc
    except TelegramForbiddenError as exc:
        raise Undeliverable(exc.message, blocked=True) from exc
    except TelegramEntityTooLarge as exc:
        raise Undeliverable("file too large") from exc
    except TelegramBadRequest as exc:
        raise Undeliverable(exc.message, blocked="chat not found" in exc.message) from exc
    except (TelegramServerError, TelegramNetworkError) as exc:
        raise RetryLater(5.0, exc.__class__.__name__) from exc
