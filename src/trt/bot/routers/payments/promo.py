"""Promo codes: /promo and the code typed after «🎁 Промокод»."""

from __future__ import annotations

from aiogram.filters import CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    Message,
)

from trt.bot.keyboards import main_menu
from trt.bot.routers.payments.common import TopUpFlow
from trt.catalog.pricing import format_money
from trt.i18n import t
from trt.payments.bonuses import BonusService
from trt.payments.service import PaymentError, PaymentService
from trt.telemetry.events import Reason, reject


# -- promo codes ----------------------------------------------------------------------------
async def _redeem(
    message: Message,
    lang: str,
    code: str,
    bonuses: BonusService,
    payments: PaymentService,
    cid: str | None,
) -> None:
    assert message.from_user is not None
    try:
        amount = await bonuses.redeem(message.from_user.id, code, cid=cid)
    except PaymentError as refused:
        reject(Reason.VALIDATION_FAILED, f"promo code refused: {refused.reason}")
        await message.answer(t(lang, f"pay.{refused.reason}"))
        return
    balance = await payments.available(message.from_user.id)
    await message.answer(
        t(lang, "pay.promo_credited", amount=format_money(amount), balance=format_money(balance)),
        reply_markup=main_menu(lang),
    )


async def on_promo_command(
    message: Message,
    command: CommandObject,
    lang: str,
    state: FSMContext,
    bonuses: BonusService,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    code = (command.args or "").strip()
    if not code:
        await state.set_state(TopUpFlow.promo)
        await message.answer(t(lang, "pay.promo_ask"))
        return
    await _redeem(message, lang, code, bonuses, payments, cid)


async def on_promo_text(
    message: Message,
    lang: str,
    state: FSMContext,
    bonuses: BonusService,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    await state.clear()
    await _redeem(message, lang, message.text or "", bonuses, payments, cid)
