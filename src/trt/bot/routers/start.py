"""/start, /help and the main menu."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message

from trt.bot.callbacks import Menu
from trt.bot.keyboards import back_to_menu, main_menu
from trt.bot.screens import show
from trt.config import Config
from trt.i18n import t


def build() -> Router:
    """A fresh router (a router can belong to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.message.register(on_start, CommandStart())
    router.message.register(on_help, Command("help"))
    router.callback_query.register(on_menu, Menu.filter(F.screen.in_({"main", "help"})))
    return router


async def on_start(message: Message, lang: str) -> None:
    name = message.from_user.first_name if message.from_user else ""
    await message.answer(
        t(lang, "start.greeting", name=html.escape(name)), reply_markup=main_menu(lang)
    )


async def on_help(message: Message, lang: str, config: Config) -> None:
    await message.answer(
        t(lang, "help.text", support=config.telegram.support_contact),
        reply_markup=back_to_menu(lang),
    )


async def on_menu(callback: CallbackQuery, callback_data: Menu, lang: str, config: Config) -> None:
    if callback_data.screen == "help":
        text = t(lang, "help.text", support=config.telegram.support_contact)
        await show(callback, text, back_to_menu(lang))
    else:
        await show(callback, t(lang, "start.menu"), main_menu(lang))
