"""Telegram Stars: invoices, reconciliation against `getStarTransactions`, admin refunds.

The credit for a Stars payment is keyed by Telegram's charge id, so the `successful_payment`
handler and the reconciliation can both see the same payment and it is credited once. The
reconciliation runs on the ACTIVE instance and finds payments whose update never arrived
(Telegram's list is chronological: a cursor walks it once per process, then only what is new).
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import StrEnum
from typing import ClassVar

from trt.catalog.pricing import format_money
from trt.config import PaymentsSettings, StarsPackage
from trt.faults import failpoint
from trt.i18n import t
from trt.logs import get_logger
from trt.payments.providers import ProviderContext
from trt.payments.service import Credit, PaymentError, PaymentService, PaymentView, payment_id_of
from trt.telegram.api import BotApi, BotApiError, StarTransaction
from trt.telegram.sender import Markup, RetryLater, Sender, Undeliverable
from trt.telemetry.events import Event, new_cid, telemetry

log = get_logger(__name__)
PAGE = 100


class RefundOutcome(StrEnum):
    """A provider's answer to a refund: only the first two decide money."""

    REFUNDED_NOW = "refunded"
    REFUSED = "refused"
    UNCLEAR = "unclear"  # a timeout, a 5xx, pending: asked again later


REFUNDED_NOW, REFUSED, UNCLEAR = (
    RefundOutcome.REFUNDED_NOW,
    RefundOutcome.REFUSED,
    RefundOutcome.UNCLEAR,
)


def stars_memo(stars: int | None) -> str:
    return f"Telegram Stars ⭐ {stars}"


async def notify(sender: Sender, chat_id: int, text: str, markup: Markup | None = None) -> bool:
    """Tell a user about their money; a notice that cannot go out is logged, never raised.

    False when it may go out later (Telegram asked to wait or failed), True when it went out or
    never can (the user blocked the bot).
    """
    try:
        await sender.text(chat_id, text, markup=markup)
    except RetryLater as error:
        log.warning("payment_notice_not_sent", chat_id=chat_id, reason=str(error)[:200])
        return False
    except Undeliverable as error:
        log.warning("payment_notice_not_sent", chat_id=chat_id, reason=str(error)[:200])
    return True


async def settle_refund(
    payments: PaymentService, sender: Sender, payment: PaymentView, outcome: str, cid: str | None
) -> str:
    """Act on a provider's answer to a refund (Stars or YooKassa): a definite one decides the
    REFUNDING payment (refunded and the user told, or the credit restored); an unclear one
    leaves it REFUNDING for the next check. Returns the outcome."""
    failpoint("refund.answered")
    if outcome == UNCLEAR:
        return UNCLEAR
    if not await payments.finish_refund(payment.id, ok=outcome != REFUSED, cid=cid):
        return outcome  # decided by another attempt a moment ago
    if outcome == REFUSED:
        return REFUSED
    telemetry.emit(
        Event.PAYMENT_REFUNDED,
        cid=cid,
        user_id=payment.user_id,
        payment_id=payment.id,
        method=payment.method,
        amount_kop=payment.amount_kop,
    )
    # Each provider says in its own words where the money went (`pay.refunded_<method>`).
    key = f"pay.refunded_{payment.method}"
    await notify(
        sender, payment.chat_id, t(payment.lang, key, amount=format_money(payment.amount_kop))
    )
    return outcome


async def credited_text(payments: PaymentService, credit: Credit, lang: str) -> str:
    balance = await payments.available(credit.payment.user_id)
    return t(
        lang,
        "pay.credited",
        amount=format_money(credit.payment.amount_kop),
        balance=format_money(balance),
    )


async def tell_credited(
    payments: PaymentService,
    sender: Sender,
    credit: Credit,
    *,
    prefix: str = "",
    markup: Markup | None = None,
) -> None:
    """Tell the user their top-up arrived: once per payment, also across a crash.

    Every path that credits calls this whether its credit was new or a repeat: a process killed
    after the credit's commit and before the notice tells the user the next time the same
    payment is seen (the redelivered update, YooKassa's repeated notification), and a true
    duplicate finds the notice already sent and stays silent.
    """
    view = credit.payment
    if await payments.told(view.id):
        return
    text = prefix + await credited_text(payments, credit, view.lang)
    if await notify(sender, view.chat_id, text, markup):
        await payments.mark_told(view.id)


class RefundSteps:
    """The refund of a payment, the same for every provider: the credit reversed first
    (`start_refund`), then the provider asked (`_settle_refund`, the provider's own), and a
    refund without a definite answer asked about again by `resume_refunds` until decided."""

    method: ClassVar[str]
    payments: PaymentService

    async def _settle_refund(self, payment: PaymentView, cid: str | None) -> str:
        raise NotImplementedError

    async def refund(self, payment_id: str, *, cid: str | None = None) -> PaymentView:
        """Refund a payment: the credit reversed, then the money sent back.

        `PaymentError` (not a refundable payment; the provider refused, the credit restored;
        `refund_pending`: no definite answer, the refund stays open and is asked about again)
        or `InsufficientFundsError` (the user has spent it, nothing changed).
        """
        payment = await self.payments.start_refund(payment_id, method=self.method, cid=cid)
        failpoint("refund.reversed")
        outcome = await self._settle_refund(payment, cid)
        if outcome == REFUSED:
            raise PaymentError("refund_failed")
        if outcome == UNCLEAR:
            raise PaymentError("refund_pending")
        return payment

    async def resume_refunds(self) -> int:
        """Ask again about every refund whose outcome was unclear; how many were settled."""
        settled = 0
        for payment in await self.payments.refunding(self.method):
            # A check of its own, traceable under its own cid (the admin's action is long over).
            if await self._settle_refund(payment, new_cid()) != UNCLEAR:
                settled += 1
        return settled


class StarsPayments(RefundSteps):
    method = "stars"

    def __init__(
        self, payments: PaymentService, api: BotApi, sender: Sender, settings: PaymentsSettings
    ) -> None:
        self.payments = payments
        self.api = api
        self.sender = sender
        self.settings = settings
        self._cursor = 0  # transactions already looked at (the list only grows)

    def package(self, index: int) -> StarsPackage | None:
        packages = self.settings.stars_packages
        return packages[index] if 0 <= index < len(packages) else None

    async def send_invoice(
        self, *, user_id: int, chat_id: int, lang: str, package: StarsPackage, cid: str | None
    ) -> PaymentView:
        payment = await self.payments.create(
            user_id=user_id,
            chat_id=chat_id,
            lang=lang,
            method="stars",
            amount_kop=package.rubles * 100,
            stars=package.stars,
            cid=cid,
        )
        amount = format_money(package.rubles * 100)
        await self.api.send_stars_invoice(
            chat_id,
            title=t(lang, "pay.stars_title", amount=amount),
            description=t(lang, "pay.stars_description", amount=amount, stars=package.stars),
            payload=payment.invoice_payload,
            label=t(lang, "pay.stars_label"),
            stars=package.stars,
        )
        return payment

    async def complete(
        self,
        *,
        payload: str,
        charge_id: str,
        total_amount: int,
        user_id: int,
        cid: str | None,
        reconciled: bool = False,
    ) -> Credit:
        """Credit a paid invoice once by its charge id (the handler and reconciliation)."""
        payment_id = payment_id_of(payload)
        payment = await self.payments.get(payment_id) if payment_id else None
        if payment is None or payment.user_id != user_id or payment.stars != total_amount:
            # Money arrived for an invoice that is not ours as it stands: never guess an
            # amount; support sees the charge id.
            telemetry.emit(
                Event.PAYMENT_REJECTED,
                cid=cid,
                user_id=user_id,
                method="stars",
                reason_code="VALIDATION_FAILED",
                reason_detail=f"paid invoice does not match (charge {charge_id})",
            )
            raise PaymentError("unmatched_payment")
        return await self.payments.credit(
            payment.id,
            external_id=charge_id,
            memo=stars_memo(payment.stars),
            cid=cid,
            reconciled=reconciled,
        )

    async def reconcile(self) -> int:
        """Credit every paid invoice Telegram lists that the ledger does not; how many."""
        credited = 0
        while True:
            transactions = await self.api.star_transactions(self._cursor, PAGE)
            for transaction in transactions:
                credited += await self._reconcile_one(transaction)
            self._cursor += len(transactions)
            if len(transactions) < PAGE:
                return credited

    async def _reconcile_one(self, transaction: StarTransaction) -> int:
        payload = transaction.invoice_payload
        user_id = transaction.user_id
        if not payload or user_id is None or payment_id_of(payload) is None:
            return 0  # a refund, a transfer, or not one of our invoices
        if await self.payments.is_credited("stars", transaction.id):
            return 0
        try:
            credit = await self.complete(
                payload=payload,
                charge_id=transaction.id,
                total_amount=transaction.amount,
                user_id=user_id,
                cid=None,
                reconciled=True,
            )
        except PaymentError as error:
            log.error("stars_reconcile_unmatched", charge_id=transaction.id, reason=error.reason)
            return 0
        prefix = t(credit.payment.lang, "pay.reconciled") + "\n"
        await tell_credited(self.payments, self.sender, credit, prefix=prefix)
        if not credit.created:
            return 0
        log.warning(
            "payment_reconciled",
            payment_id=credit.payment.id,
            charge_id=transaction.id,
            amount_kop=credit.payment.amount_kop,
        )
        return 1

    async def _settle_refund(self, payment: PaymentView, cid: str | None) -> str:
        """Ask Telegram to refund a REFUNDING payment and act on a definite answer only.

        A timeout or a 5xx may come after Telegram refunded: then the transaction list decides
        (a refund is listed under the charge's id); while nothing is certain the payment stays
        REFUNDING, the credit reversed, and nothing is paid twice either way."""
        assert payment.external_id is not None
        outcome = REFUNDED_NOW
        try:
            await self.api.refund_star_payment(payment.user_id, payment.external_id)
        except BotApiError as error:
            if error.transient:
                log.warning("stars_refund_unclear", payment_id=payment.id, error=error.message)
                listed = await self._refund_listed(payment.external_id)
                outcome = REFUNDED_NOW if listed else UNCLEAR
            elif "CHARGE_ALREADY_REFUNDED" not in error.message:
                log.warning("stars_refund_failed", payment_id=payment.id, error=str(error)[:200])
                outcome = REFUSED
        return await settle_refund(self.payments, self.sender, payment, outcome, cid)

    async def _refund_listed(self, charge_id: str) -> bool:
        """Whether Telegram lists a refund of `charge_id` (its id, with a receiver: outgoing).

        An unclear answer is no answer: False, and the refund is asked about again later."""
        offset = 0
        try:
            while True:
                transactions = await self.api.star_transactions(offset, PAGE)
                for transaction in transactions:
                    if transaction.id == charge_id and transaction.outgoing:
                        return True
                offset += len(transactions)
                if len(transactions) < PAGE:
                    return False
        except BotApiError as error:
            log.warning("stars_refund_check_failed", error=error.message)
            return False

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile now and then every `PAYMENTS_RECONCILE_S` until `stop` (ACTIVE only)."""
        while not stop.is_set():
            try:
                found = await self.reconcile()
                if found:
                    log.warning("stars_reconciliation_credited", count=found)
                settled = await self.resume_refunds()
                if settled:
                    log.warning("stars_refunds_settled", count=settled)
            except BotApiError as error:
                log.warning("stars_reconciliation_failed", error=str(error)[:200])
            except Exception:  # a bug here must not stop the ACTIVE work
                log.exception("stars_reconciliation_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.reconcile_interval_s)


async def build(context: ProviderContext) -> StarsPayments:
    """Always there: Stars need nothing but the bot."""
    return StarsPayments(context.payments, context.api, context.sender, context.settings)
