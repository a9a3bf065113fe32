"""Balance and operations, top-up information, language, /cancel."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from trt.billing.wallets import WalletService
from trt.bot.callbacks import LangSet, Menu
from trt.bot.keyboards import main_menu
from trt.bot.screens import show
from trt.config import Config
from trt.i18n import LANGUAGES, Lang, t
from trt.pipeline import format_money
from trt.users import UserService

OPERATION_WORDS = {
    "topup": "balance.op_topup",
    "capture": "balance.op_capture",
    "refund": "balance.op_refund",
    "bonus": "balance.op_bonus",
    "adjust": "balance.op_adjust",
}


def build() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_balance, Menu.filter(F.screen == "balance"))
    router.callback_query.register(on_topup, Menu.filter(F.screen == "topup"))
    router.message.register(on_balance_command, Command("balance"))
    router.message.register(on_cancel, Command("cancel"))
    router.message.register(on_language, Command("language"))
    router.callback_query.register(on_language_set, LangSet.filter())
    return router


async def balance_screen(
    wallets: WalletService, user_id: int, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    balance = await wallets.balance(user_id)
    lines = []
    for line in await wallets.statement(user_id, limit=8):
        word = t(lang, OPERATION_WORDS.get(line.kind, "balance.op_adjust"))
        memo = f" — {html.escape(line.memo)}" if line.memo else ""
        sign = "+" if line.amount_kop > 0 else "−"
        lines.append(
            f"{line.at.strftime('%d.%m %H:%M')} {sign}{format_money(abs(line.amount_kop))}"
            f" {word}{memo}"
        )
    text = t(
        lang,
        "balance.text",
        available=format_money(balance.available_kop),
        held=format_money(balance.held_kop),
        operations="\n".join(lines) or t(lang, "balance.none"),
    )
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t(lang, "flow.top_up"), callback_data=Menu(screen="topup").pack()
                )
            ],
            [
                InlineKeyboardButton(
                    text=t(lang, "menu.home"), callback_data=Menu(screen="main").pack()
                )
            ],
        ]
    )
    return text, markup


async def on_balance(callback: CallbackQuery, lang: str, wallets: WalletService) -> None:
    text, markup = await balance_screen(wallets, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_balance_command(message: Message, lang: str, wallets: WalletService) -> None:
    assert message.from_user is not None
    text, markup = await balance_screen(wallets, message.from_user.id, lang)
    await message.answer(text, reply_markup=markup)


async def on_topup(callback: CallbackQuery, lang: str, config: Config) -> None:
    text = t(lang, "balance.topup", support=html.escape(config.telegram.support_contact))
    await show(
        callback,
        text,
        InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=t(lang, "menu.back"), callback_data=Menu(screen="balance").pack()
                    )
                ]
            ]
        ),
    )


async def on_cancel(message: Message, lang: str, state: FSMContext) -> None:
    await state.clear()
    await message.answer(t(lang, "flow.cancelled"), reply_markup=main_menu(lang))


async def on_language(message: Message) -> None:
    await message.answer(
        t("ru", "language.choose"),
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text="🇷🇺 Русский", callback_data=LangSet(lang="ru").pack()
                    ),
                    InlineKeyboardButton(
                        text="🇬🇧 English", callback_data=LangSet(lang="en").pack()
                    ),
                ]
            ]
        ),
    )


async def on_language_set(
    callback: CallbackQuery, callback_data: LangSet, users: UserService
) -> None:
    lang: Lang = "en" if callback_data.lang == "en" else "ru"
    assert lang in LANGUAGES
    await users.set_language(callback.from_user.id, lang)
    await show(callback, t(lang, "language.set") + "\n\n" + t(lang, "start.menu"), main_menu(lang))
