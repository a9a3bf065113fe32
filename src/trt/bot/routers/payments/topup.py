"""The payments router and the top-up screen: the methods (the registered providers first)."""

from __future__ import annotations

import html

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from trt.bot.callbacks import (
    CardBuy,
    ManualAmount,
    ManualVerdict,
    Menu,
    ReceiptContact,
    StarsBuy,
    TopUp,
)
from trt.bot.routers.payments.card import (
    _card_choose,
    on_card_buy,
    on_contact_other,
    on_contact_text,
    on_receipt_contact,
)
from trt.bot.routers.payments.common import TopUpFlow, _back, _button
from trt.bot.routers.payments.manual import (
    on_manual_amount,
    on_manual_verdict,
    on_receipt,
    on_receipt_other,
)
from trt.bot.routers.payments.promo import on_promo_command, on_promo_text
from trt.bot.routers.payments.stars import on_pre_checkout, on_stars_buy, on_successful_payment
from trt.bot.routers.payments.terms import on_terms, on_terms_command
from trt.bot.screens import show
from trt.catalog.pricing import format_money
from trt.config import Config
from trt.i18n import t
from trt.payments.bonuses import BonusService, referral_code
from trt.payments.providers import Providers
from trt.payments.service import PaymentService
from trt.telemetry.events import Reason, reject


def build() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_topup, Menu.filter(F.screen == "topup"))
    router.callback_query.register(on_terms, Menu.filter(F.screen == "terms"))
    router.message.register(on_terms_command, Command("terms"))
    router.callback_query.register(on_method, TopUp.filter())
    router.callback_query.register(on_stars_buy, StarsBuy.filter())
    router.callback_query.register(on_card_buy, CardBuy.filter())
    router.callback_query.register(on_receipt_contact, ReceiptContact.filter())
    router.callback_query.register(on_manual_amount, ManualAmount.filter())
    router.callback_query.register(
        on_manual_verdict, ManualVerdict.filter(), flags={"manual_answer": True}
    )
    router.pre_checkout_query.register(on_pre_checkout)
    router.message.register(on_successful_payment, F.successful_payment)
    router.message.register(on_promo_command, Command("promo"))
    router.message.register(on_receipt, TopUpFlow.receipt, F.photo | F.document)
    router.message.register(on_receipt_other, TopUpFlow.receipt)
    router.message.register(on_promo_text, TopUpFlow.promo, F.text)
    router.message.register(on_contact_text, TopUpFlow.contact, F.text)
    router.message.register(on_contact_other, TopUpFlow.contact)
    return router


async def topup_screen(
    payments: PaymentService, providers: Providers, config: Config, user_id: int, lang: str
) -> tuple[str, InlineKeyboardMarkup]:
    balance = await payments.available(user_id)
    settings = config.payments
    rows = [  # the registered providers first, each under its `pay.method_<method>`
        _button(t(lang, f"pay.method_{provider.method}"), TopUp(method=provider.method).pack())
        for provider in providers
    ]
    if settings.manual_transfer_details:
        rows.append(_button(t(lang, "pay.method_manual"), TopUp(method="manual").pack()))
    rows.append(_button(t(lang, "pay.method_promo"), TopUp(method="promo").pack()))
    if settings.referral_bonus_rub > 0:
        rows.append(_button(t(lang, "pay.method_invite"), TopUp(method="invite").pack()))
    rows.append(_button(t(lang, "pay.terms_button"), Menu(screen="terms").pack()))
    rows.append(_back(lang, "balance"))
    text = t(lang, "pay.choose", balance=format_money(balance))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


async def on_topup(
    callback: CallbackQuery,
    lang: str,
    state: FSMContext,
    payments: PaymentService,
    providers: Providers,
    config: Config,
) -> None:
    if await state.get_state() in (
        TopUpFlow.receipt.state,
        TopUpFlow.promo.state,
        TopUpFlow.contact.state,
    ):
        await state.clear()
    text, markup = await topup_screen(payments, providers, config, callback.from_user.id, lang)
    await show(callback, text, markup)


async def on_method(
    callback: CallbackQuery,
    callback_data: TopUp,
    lang: str,
    state: FSMContext,
    config: Config,
    bonuses: BonusService,
    bot: Bot,
    providers: Providers,
) -> None:
    settings = config.payments
    method = callback_data.method
    rows: list[list[InlineKeyboardButton]] = []
    if method == "stars" and providers.get("stars") is not None:
        for index, package in enumerate(settings.stars_packages):
            label = t(
                lang,
                "pay.stars_package",
                stars=package.stars,
                amount=format_money(package.rubles * 100),
            )
            rows.append(_button(label, StarsBuy(index=index).pack()))
        text = t(lang, "pay.stars_choose")
    elif (checkout := providers.hosted(method)) is not None:
        text, rows = await _card_choose(checkout, callback.from_user.id, lang)
    elif method == "manual" and settings.manual_transfer_details:
        for rub in settings.topup_amounts_rub:
            rows.append(_button(format_money(rub * 100), ManualAmount(rub=rub).pack()))
        text = t(lang, "pay.manual_choose")
    elif method == "promo":
        await state.set_state(TopUpFlow.promo)
        text = t(lang, "pay.promo_ask")
    elif method == "invite" and settings.referral_bonus_rub > 0:
        me = await bot.me()
        invited, paid = await bonuses.invited_count(callback.from_user.id)
        link = f"https://t.me/{me.username}?start=ref_{referral_code(callback.from_user.id)}"
        text = t(
            lang,
            "pay.invite",
            bonus=format_money(settings.referral_bonus_rub * 100),
            min_spend=format_money(settings.referral_min_spend_rub * 100),
            link=html.escape(link),
            invited=invited,
            paid=paid,
        )
    else:
        reject(Reason.STATE_MISMATCH, f"top-up method {method!r} is not offered")
        text = t(lang, "flow.stale")
    rows.append(_back(lang))
    await show(callback, text, InlineKeyboardMarkup(inline_keyboard=rows))
