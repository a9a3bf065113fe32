"""Balance and operations, top-up information, language, /cancel."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from trt.billing.wallets import WalletService
from trt.bot.callbacks import BalancePage, LangSet, Menu
from trt.bot.keyboards import main_menu
from trt.bot.routers.jobs import history_screen
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.i18n import LANGUAGES, Lang, t
from trt.jobs.service import JobService
from trt.pipeline import UnifiedModelPipeline
from trt.users import UserService

PAGE_SIZE = 8
QUOTED = frozenset({"capture", "refund"})  # their memo is the model's name
OPERATION_WORDS = {
    "topup": "balance.op_topup",
    "refund_topup": "balance.op_refund_topup",
    "capture": "balance.op_capture",
    "refund": "balance.op_refund",
    "bonus": "balance.op_bonus",
    "bonus_reversed": "balance.op_bonus_reversed",
    "adjust": "balance.op_adjust",
}


def build() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_balance, Menu.filter(F.screen == "balance"))
    router.callback_query.register(on_balance_page, BalancePage.filter())
    router.message.register(on_balance_command, Command("balance"))
    router.message.register(on_history_command, Command("history"))
    router.message.register(on_cancel, Command("cancel"))
    router.message.register(on_language, Command("language"))
    router.callback_query.register(on_language_set, LangSet.filter())
    return router


async def balance_screen(
    wallets: WalletService, user_id: int, lang: str, page: int = 0
) -> tuple[str, InlineKeyboardMarkup]:
    """The balance, money on hold, and the operations in plain words, a page at a time."""
    balance, statement = await wallets.overview(
        user_id, offset=page * PAGE_SIZE, limit=PAGE_SIZE + 1
    )
    lines = []
    for line in statement[:PAGE_SIZE]:
        word = t(lang, OPERATION_WORDS.get(line.kind, "balance.op_adjust"))
        if line.kind in QUOTED and line.memo:
            memo = f" «{html.escape(line.memo)}»"  # generation «Nano Banana 2»
        else:
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
    if page > 0:
        text += "\n" + t(lang, "balance.page", page=page + 1)
    rows = [
        [
            InlineKeyboardButton(
                text=t(lang, "flow.top_up"), callback_data=Menu(screen="topup").pack()
            )
        ]
    ]
    pager = []
    if page > 0:
        pager.append(
            InlineKeyboardButton(
                text=t(lang, "menu.prev"), callback_data=BalancePage(page=page - 1).pack()
            )
        )
    if len(statement) > PAGE_SIZE:
        pager.append(
            InlineKeyboardButton(
                text=t(lang, "menu.next"), callback_data=BalancePage(page=page + 1).pack()
            )
        )
    if pager:
        rows.append(pager)
    rows.append(
        [InlineKeyboardButton(text=t(lang, "menu.home"), callback_data=Menu(screen="main").pack())]
    )
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


async def on_balance_page(
    callback: CallbackQuery, callback_data: BalancePage, lang: str, wallets: WalletService
) -> None:
    page = max(0, min(callback_data.page, 1000))
    text, markup = await balance_screen(wallets, callback.from_user.id, lang, page)
    await show(callback, text, markup)


async def on_balance(callback: CallbackQuery, lang: str, wallets: WalletService) -> None:
    text, markup = await balance_screen(wallets, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_balance_command(message: Message, lang: str, wallets: WalletService) -> None:
    assert message.from_user is not None
    text, markup = await balance_screen(wallets, message.from_user.id, lang)
    await message.answer(text, reply_markup=markup)


async def on_history_command(
    message: Message, lang: str, jobs: JobService, pipeline: UnifiedModelPipeline
) -> None:
    """/history (in the command menu): the same screen as «🕘 История»."""
    assert message.from_user is not None
    text, markup = await history_screen(jobs, pipeline, message.from_user.id, lang, 0)
    await message.answer(text, reply_markup=markup)


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
