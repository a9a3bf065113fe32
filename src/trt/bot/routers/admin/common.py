"""What every admin screen shares: the callback data, the guard (AdminOnly), buttons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
)

from trt.i18n import t
from trt.telemetry.events import Reason, reject

MAX_ADJUST_KOP = 100_000_000  # 1 000 000 ₽ in one adjustment: anything more is a typo
PERIODS = (1, 7, 30)
ADMIN_COMMANDS = (
    "admin",
    "stats",
    "user",
    "adjust",
    "block",
    "unblock",
    "model",
    "price",
    "markup",
    "rate",
    "jobs",
    "refund_job",
    "broadcast",
    "trace",
    "refund",
)
SEGMENTS: dict[str, dict[str, Any]] = {
    "all": {"kind": "all"},
    "ru": {"kind": "lang", "lang": "ru"},
    "en": {"kind": "lang", "lang": "en"},
    "a7": {"kind": "active", "days": 7},
    "a30": {"kind": "active", "days": 30},
    "paid": {"kind": "paid"},
}


class BroadcastFlow(StatesGroup):
    text = State()


class Admin(CallbackData, prefix="ad"):
    """A panel button: section (stats, users, catalog, jobs, block, unblock) and its argument."""

    section: str
    arg: str = ""


class AdminOnly(BaseMiddleware):
    """Refuse anyone not in ADMIN_IDS before an admin handler runs: ACCESS_DENIED, no change."""

    def __init__(self, admin_ids: frozenset[int]) -> None:
        self.admin_ids = admin_ids

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        if user is not None and user.id in self.admin_ids:
            return await handler(event, data)
        lang = str(data.get("lang", "ru"))
        reject(Reason.ACCESS_DENIED, "an admin action by a non-admin")
        if isinstance(event, CallbackQuery):
            await event.answer(t(lang, "errors.denied"), show_alert=True)
        elif isinstance(event, Message):
            await event.answer(t(lang, "fallback.text_hint"))
        return None


def _button(text: str, section: str, arg: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=Admin(section=section, arg=arg).pack())


def panel_markup(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(t(lang, "admin.stats"), "stats", "1"),
                _button(t(lang, "admin.users"), "users"),
            ],
            [_button(t(lang, "admin.catalog"), "catalog"), _button(t(lang, "admin.jobs"), "jobs")],
        ]
    )


def _back(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[_button(t(lang, "menu.back"), "panel")]])
