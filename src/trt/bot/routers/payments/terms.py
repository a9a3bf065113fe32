"""/terms and «📄 Условия»."""

from __future__ import annotations

import html

from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
)

from trt.bot.keyboards import main_menu
from trt.bot.routers.payments.common import _back
from trt.bot.screens import show
from trt.config import Config
from trt.i18n import t


# -- terms ----------------------------------------------------------------------------------
def _terms(config: Config, lang: str) -> str:
    return t(lang, "terms.text", support=html.escape(config.telegram.support_contact))


async def on_terms(callback: CallbackQuery, lang: str, config: Config) -> None:
    markup = InlineKeyboardMarkup(inline_keyboard=[_back(lang)])
    await show(callback, _terms(config, lang), markup)


async def on_terms_command(message: Message, lang: str, config: Config) -> None:
    await message.answer(_terms(config, lang), reply_markup=main_menu(lang))
