"""/start, /help and the main menu."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message

from trt.bot.callbacks import Menu
from trt.bot.keyboards import back_to_menu, main_menu
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.config import Config
from trt.i18n import t
from trt.payments.bonuses import BonusService
from trt.users import UserInfo


def build() -> Router:
    """A fresh router (a router can belong to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.message.register(on_start, CommandStart())
    router.message.register(on_help, Command("help"))
    router.callback_query.register(on_menu, Menu.filter(F.screen.in_({"main", "help"})))
    return router


async def on_start(
    message: Message,
    command: CommandObject,
    lang: str,
    bonuses: BonusService,
    user_info: UserInfo | None = None,
    cid: str | None = None,
) -> None:
    name = message.from_user.first_name if message.from_user else ""
    text = t(lang, "start.greeting", name=html.escape(name))
    if user_info is not None and user_info.is_new:
        # Only a user's very first update counts: an old user cannot become someone's
        # referral, and the welcome bonus is paid once (its ledger key says so anyway).
        await bonuses.register_referral(user_info.user_id, command.args)
        welcome = await bonuses.welcome(user_info.user_id, cid=cid)
        if welcome:
            text += "\n\n" + t(lang, "pay.welcome", amount=format_money(welcome))
    await message.answer(text, reply_markup=main_menu(lang))


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
