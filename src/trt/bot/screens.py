"""Showing a screen in answer to a tap: edit the message in place, or send a new one."""

from __future__ import annotations

import asyncio
import html
import re

from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramServerError
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from trt.logs import get_logger
from trt.telemetry.events import Event, get_chat_id, get_user_id, telemetry

log = get_logger(__name__)
EDIT_ATTEMPTS = 2  # then the screen goes out as a new message
EDIT_RETRY_S = 0.2


def rendered(callback: CallbackQuery, text: str) -> None:
    """UI_RENDER for what a tap shows; the screen's name is its first line as a person reads it."""
    screen = html.unescape(re.sub(r"<[^>]+>", "", text.split("\n", 1)[0]))[:60]
    telemetry.emit(
        Event.UI_RENDER,
        user_id=get_user_id(callback),
        chat_id=get_chat_id(callback),
        screen=screen,
    )


def shows_already(message: Message, text: str, markup: InlineKeyboardMarkup | None) -> bool:
    """Whether `message` (as the tap delivered it) already shows `text` (HTML) and `markup`.

    The plain text and the keyboard are compared (a change of formatting alone is not one TRT's
    screens make)."""
    plain = html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
    return (message.text or "").strip() == plain and same_markup(message.reply_markup, markup)


def same_markup(a: InlineKeyboardMarkup | None, b: InlineKeyboardMarkup | None) -> bool:
    """Keyboards equal as Telegram sees them (not as Python objects: an update's carries the
    bot it arrived with)."""
    dump_a = a.model_dump(exclude_none=True) if a is not None else None
    dump_b = b.model_dump(exclude_none=True) if b is not None else None
    return dump_a == dump_b


async def show(callback: CallbackQuery, text: str, markup: InlineKeyboardMarkup) -> None:
    """Replace the tapped message with the screen; a new message when it cannot be edited."""
    rendered(callback, text)
    message = callback.message
    if isinstance(message, Message) and message.text is not None:
        if shows_already(message, text, markup):
            return  # an edit to the same screen is a request Telegram refuses
        for attempt in range(EDIT_ATTEMPTS):
            try:
                await message.edit_text(text, reply_markup=markup)
                return
            except TelegramBadRequest as error:
                if "message is not modified" in error.message:
                    return
                break  # not editable: a new message instead
            except (TelegramServerError, TelegramNetworkError) as error:
                # A passing failure of Telegram's (an edit is safe to repeat); the tap was
                # answered already, the screen still has to come.
                log.warning("screen_edit_retried", attempt=attempt + 1, error=str(error)[:200])
                await asyncio.sleep(EDIT_RETRY_S * (attempt + 1))
    if callback.from_user is not None and callback.bot is not None:
        await callback.bot.send_message(callback.from_user.id, text, reply_markup=markup)
