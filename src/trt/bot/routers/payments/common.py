"""What the top-up screens share: the FSM states and the buttons."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    InlineKeyboardButton,
)

from trt.bot.callbacks import (
    Menu,
)
from trt.i18n import t


class TopUpFlow(StatesGroup):
    receipt = State()  # a manual transfer: waiting for the receipt photo
    promo = State()  # waiting for a promo code
    contact = State()  # waiting for the e-mail or phone of 54-ФЗ receipts


def _button(text: str, callback_data: str) -> list[InlineKeyboardButton]:
    return [InlineKeyboardButton(text=text, callback_data=callback_data)]


def _back(lang: str, screen: str = "topup") -> list[InlineKeyboardButton]:
    return _button(t(lang, "menu.back"), Menu(screen=screen).pack())
