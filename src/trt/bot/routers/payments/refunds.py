"""An admin's refund of a provider's payment (/refund and the panel's button)."""

from __future__ import annotations

from aiogram.filters import CommandObject
from aiogram.types import (
    Message,
)

from trt.billing.ledger import InsufficientFundsError
from trt.catalog.pricing import format_money
from trt.i18n import t
from trt.payments.providers import Providers
from trt.payments.service import PaymentError, PaymentService
from trt.telemetry.events import Reason, reject


# -- admin: refund a Stars or YooKassa payment ----------------------------------------------
async def on_refund_command(
    message: Message,
    command: CommandObject,
    lang: str,
    providers: Providers,
    payments: PaymentService,
    cid: str | None = None,
) -> None:
    """`/refund <payment id>` (admins: registered on the admin router, behind its guard): the
    credit reversed, then the money sent back by the payment's provider."""
    payment_id = (command.args or "").strip()
    if not payment_id:
        await message.answer(t(lang, "pay.refund_usage"))
        return
    await message.answer(await refund_payment(payment_id, lang, providers, payments, cid))


async def refund_payment(
    payment_id: str,
    lang: str,
    providers: Providers,
    payments: PaymentService,
    cid: str | None,
) -> str:
    """Refund by the payment's provider; what to tell the admin."""
    found = await payments.get(payment_id) if len(payment_id) <= 64 else None
    provider = providers.get(found.method) if found is not None else None
    try:
        if provider is None:  # not a payment, or one no provider can send back (manual)
            raise PaymentError("unknown_payment")
        payment = await provider.refund(payment_id, cid=cid)
    except PaymentError as refused:
        reject(Reason.VALIDATION_FAILED, f"refund refused: {refused.reason}")
        return t(lang, f"pay.refund_{refused.reason}")
    except InsufficientFundsError as short:
        reject(Reason.INSUFFICIENT_FUNDS, "the user has spent the payment")
        return t(
            lang,
            "pay.refund_spent",
            available=format_money(short.available_kop),
            amount=format_money(short.needed_kop),
        )
    return t(lang, "pay.refund_done", amount=format_money(payment.amount_kop), payment=payment.id)
