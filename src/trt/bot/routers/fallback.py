"""Last in the chain: whatever no other router took still gets an answer."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from trt.bot.keyboards import main_menu
from trt.bot.screens import show
from trt.i18n import t
from trt.telemetry.events import Reason, reject


def build() -> Router:
    """A fresh router; include it last, it takes everything."""
    router = Router(name=__name__)
    router.callback_query.register(on_unknown_callback, flags={"manual_answer": True})
    router.message.register(on_other_message)
    return router


async def on_unknown_callback(callback: CallbackQuery, lang: str) -> None:
    reject(Reason.UNKNOWN_CALLBACK, "no handler for this callback data")
    await callback.answer(t(lang, "fallback.stale"))
    await show(callback, t(lang, "start.menu"), main_menu(lang))


async def on_other_message(message: Message, lang: str) -> None:
    await message.answer(t(lang, "fallback.text_hint"))
