"""Telegram Stars: the packages, the invoice, pre-checkout and successful_payment."""

from __future__ import annotations

import html

from aiogram.types import (
    CallbackQuery,
    Message,
    PreCheckoutQuery,
)

from trt.bot.callbacks import (
    StarsBuy,
)
from trt.bot.keyboards import main_menu
from trt.bot.screens import rendered, show
from trt.i18n import normalize_lang, t
from trt.logs import get_logger
from trt.payments.service import PaymentError, PaymentService
from trt.payments.stars import StarsPayments, tell_credited
from trt.telemetry.events import Event, Reason, reject, telemetry

log = get_logger(__name__)


# -- Stars ----------------------------------------------------------------------------------
async def on_stars_buy(
    callback: CallbackQuery,
    callback_data: StarsBuy,
    lang: str,
    stars: StarsPayments,
    cid: str | None = None,
) -> None:
    package = stars.package(callback_data.index)
    if package is None:
        reject(Reason.VALIDATION_FAILED, f"no Stars package #{callback_data.index}")
        await show(callback, t(lang, "flow.stale"), main_menu(lang))
        return
    message = callback.message
    chat_id = message.chat.id if message is not None else callback.from_user.id
    rendered(callback, f"invoice ⭐ {package.stars}")
    await stars.send_invoice(
        user_id=callback.from_user.id, chat_id=chat_id, lang=lang, package=package, cid=cid
    )


async def on_pre_checkout(
    query: PreCheckoutQuery, payments: PaymentService, cid: str | None = None
) -> None:
    lang = normalize_lang(query.from_user.language_code)
    try:
        await payments.check_stars_checkout(
            query.invoice_payload,
            user_id=query.from_user.id,
            currency=query.currency,
            total_amount=query.total_amount,
        )
    except PaymentError as refused:
        telemetry.emit(
            Event.PAYMENT_REJECTED,
            cid=cid,
            user_id=query.from_user.id,
            method="stars",
            reason_code=Reason.VALIDATION_FAILED.value,
            reason_detail=f"pre-checkout refused: {refused.reason}",
        )
        await query.answer(ok=False, error_message=t(lang, f"pay.{refused.reason}"))
        return
    await query.answer(ok=True)


async def on_successful_payment(
    message: Message,
    lang: str,
    stars: StarsPayments,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    paid = message.successful_payment
    assert paid is not None
    assert message.from_user is not None
    try:
        credit = await stars.complete(
            payload=paid.invoice_payload,
            charge_id=paid.telegram_payment_charge_id,
            total_amount=paid.total_amount,
            user_id=message.from_user.id,
            cid=cid,
        )
    except PaymentError as error:
        await message.answer(
            t(lang, f"pay.{error.reason}", charge=html.escape(paid.telegram_payment_charge_id))
        )
        return
    if not credit.created:
        log.info("successful_payment_repeated", payment_id=credit.payment.id)
    await tell_credited(payments, stars.sender, credit, markup=main_menu(lang))
