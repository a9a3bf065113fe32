"""Top-ups: a payment row from intent to credit, each credit a ledger posting made once.

Every way money arrives — a Stars `successful_payment`, a YooKassa payment fetched after its
notification, an admin's approval of a manual transfer, a reconciliation that finds a missed
one — ends in `PaymentService.credit`, keyed by the provider's id (`<method>:<external id>`):
a redelivered update, a replayed notification or a second approval changes nothing. The
inviter's referral bonus is paid on the invited user's spending (`payments.referrals`) and taken
back with a refund of their top-up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from trt.billing.ledger import Ledger
from trt.config import PaymentsSettings
from trt.db.database import Database
from trt.db.models import LedgerPosting, Payment, User, utcnow
from trt.errors import TrtError
from trt.faults import failpoint
from trt.payments.referrals import Referrals
from trt.telemetry.events import Event, telemetry

MANUAL = "manual"  # a bank transfer an admin approved: no provider can send it back


class PaymentStatus(StrEnum):
    PENDING = "pending"  # created; the user has not paid (yet)
    SUCCEEDED = "succeeded"  # credited once
    CANCELED = "canceled"  # the provider says it will not be paid
    REJECTED = "rejected"  # a manual receipt an admin refused
    REFUNDING = "refunding"  # the credit reversed; the provider's answer not yet definite
    REFUNDED = "refunded"  # the money went back


PENDING, SUCCEEDED, CANCELED = (
    PaymentStatus.PENDING,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.CANCELED,
)
REJECTED, REFUNDING = PaymentStatus.REJECTED, PaymentStatus.REFUNDING
REFUNDED = PaymentStatus.REFUNDED
INVOICE_PREFIX = "tp:"  # a Stars invoice's payload: "tp:<payment id>"
MANUAL_NAMESPACE = uuid.UUID("0b7f3c58-4f1e-4a8e-9a55-6d2e1c7b9f31")  # receipts' payment ids


class PaymentError(TrtError):
    """A payment cannot take this step; `reason` is a locale key under `pay.`."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class PaymentView:
    id: str
    user_id: int
    chat_id: int
    lang: str
    method: str
    status: str
    amount_kop: int
    stars: int | None
    external_id: str | None
    confirmation_url: str | None
    receipt_file_id: str | None
    created_at: datetime
    receipt_contact: str | None = None  # the 54-ФЗ receipt's customer (YooKassa)

    @property
    def invoice_payload(self) -> str:
        return INVOICE_PREFIX + self.id


@dataclass(frozen=True, slots=True)
class Credit:
    """The outcome of `credit`: `created` is False when this money had been credited already."""

    payment: PaymentView
    created: bool


def _view(row: Payment) -> PaymentView:
    return PaymentView(
        row.id,
        row.user_id,
        row.chat_id,
        row.lang,
        row.method,
        row.status,
        row.amount_kop,
        row.stars,
        row.external_id,
        row.confirmation_url,
        row.receipt_file_id,
        row.created_at,
        row.receipt_contact,
    )


def _pending(payment_id: str, **fields: Any) -> Payment:
    """A new payment row, pending."""
    now = utcnow()
    return Payment(id=payment_id, status=PENDING, created_at=now, updated_at=now, **fields)


def _emit_created(view: PaymentView, cid: str | None) -> None:
    telemetry.emit(
        Event.PAYMENT_CREATED,
        cid=cid,
        user_id=view.user_id,
        payment_id=view.id,
        method=view.method,
        amount_kop=view.amount_kop,
    )


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching what starts with `text` (its wildcards taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def source_of(method: str) -> str:
    """The ledger account a method's top-ups come from."""
    return f"topup:{method}"


def _attempt_key(base: str, attempt: int) -> str:
    """The ledger key of a refund attempt (the first keeps the key older versions wrote)."""
    return base if attempt == 1 else f"{base}:{attempt}"


def _refund_memo(row: Payment) -> str:
    return f"Stars ⭐ {row.stars}" if row.method == "stars" else "ЮKassa"


def payment_id_of(payload: str) -> str | None:
    """The payment id of a Stars invoice payload, None when the payload is not ours."""
    if not payload.startswith(INVOICE_PREFIX):
        return None
    candidate = payload[len(INVOICE_PREFIX) :]
    return candidate if len(candidate) == 32 and candidate.isalnum() else None


class PaymentService:
    def __init__(self, database: Database, settings: PaymentsSettings) -> None:
        self.database = database
        self.settings = settings
        self.ledger = Ledger(is_sqlite=database.is_sqlite)
        self.referrals = Referrals(settings, self.ledger)

    # -- intents -------------------------------------------------------------------------------
    async def create(
        self,
        *,
        user_id: int,
        chat_id: int,
        lang: str,
        method: str,
        amount_kop: int,
        stars: int | None = None,
        receipt_file_id: str | None = None,
        receipt_contact: str | None = None,
        cid: str | None = None,
    ) -> PaymentView:
        assert method.isidentifier(), method
        assert amount_kop > 0
        row = _pending(
            uuid.uuid4().hex,
            user_id=user_id,
            chat_id=chat_id,
            lang=lang,
            method=method,
            amount_kop=amount_kop,
            stars=stars,
            receipt_file_id=receipt_file_id,
            receipt_contact=receipt_contact,
            cid=cid,
        )
        async with self.database.unit_of_work() as session:
            await self.ledger.ensure_user(session, user_id)
            session.add(row)
            view = _view(row)
        _emit_created(view, cid)
        return view

    async def create_manual(
        self,
        *,
        user_id: int,
        chat_id: int,
        lang: str,
        amount_kop: int,
        receipt_file_id: str,
        receipt_unique_id: str,
        request_key: str,
        cid: str | None = None,
    ) -> tuple[PaymentView, bool]:
        """A manual transfer's payment for one receipt; (payment, created now).

        `request_key` names the user's message (chat + message id): handled again after a
        crash, it finds the same payment (False). `PaymentError("manual_duplicate")`: this
        receipt (Telegram's file_unique_id) was sent before; `"manual_pending"`: an earlier
        receipt of the user's still waits for an admin. Nothing is written then.
        """
        assert amount_kop > 0
        payment_id = uuid.uuid5(MANUAL_NAMESPACE, request_key).hex
        async with self.database.unit_of_work() as session:
            existing = await session.get(Payment, payment_id)
            if existing is not None:
                return _view(existing), False
            await self.ledger.ensure_user(session, user_id)
            # The user's row serialises two receipts of one user (two instances, a double tap).
            await session.execute(select(User.id).where(User.id == user_id).with_for_update())
            same = await session.scalar(
                select(Payment.id).where(Payment.receipt_unique_id == receipt_unique_id)
            )
            if same is not None:
                raise PaymentError("manual_duplicate")
            waiting = await session.scalar(
                select(Payment.id).where(
                    Payment.user_id == user_id,
                    Payment.method == MANUAL,
                    Payment.status == PENDING,
                )
            )
            if waiting is not None:
                raise PaymentError("manual_pending")
            row = _pending(
                payment_id,
                user_id=user_id,
                chat_id=chat_id,
                lang=lang,
                method=MANUAL,
                amount_kop=amount_kop,
                receipt_file_id=receipt_file_id,
                receipt_unique_id=receipt_unique_id,
                cid=cid,
            )
            session.add(row)
            view = _view(row)
        _emit_created(view, cid)
        return view, True

    async def get(self, payment_id: str) -> PaymentView | None:
        async with self.database.unit_of_work(readonly=True) as session:
            row = await session.get(Payment, payment_id)
            return _view(row) if row is not None else None

    async def by_external(self, method: str, external_id: str) -> PaymentView | None:
        async with self.database.unit_of_work(readonly=True) as session:
            row = await session.scalar(
                select(Payment).where(Payment.method == method, Payment.external_id == external_id)
            )
            return _view(row) if row is not None else None

    async def set_external(
        self, payment_id: str, external_id: str, confirmation_url: str | None = None
    ) -> None:
        async with self.database.unit_of_work() as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == payment_id)
                .values(
                    external_id=external_id,
                    confirmation_url=confirmation_url,
                    updated_at=utcnow(),
                )
            )

    async def pending(self, method: str, *, older_than_s: float = 0.0) -> list[PaymentView]:
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        async with self.database.unit_of_work(readonly=True) as session:
            rows = await session.scalars(
                select(Payment)
                .where(
                    Payment.method == method,
                    Payment.status == PENDING,
                    Payment.created_at <= cutoff,
                )
                .order_by(Payment.created_at)
                .limit(200)
            )
            return [_view(row) for row in rows]

    async def available(self, user_id: int) -> int:
        """Kopecks the user can spend now (for the screens that show the balance)."""
        async with self.database.unit_of_work(readonly=True) as session:
            return (await self.ledger.balance(session, user_id)).available_kop

    async def is_credited(self, method: str, external_id: str) -> bool:
        async with self.database.unit_of_work(readonly=True) as session:
            found = await session.scalar(
                select(LedgerPosting.id).where(
                    LedgerPosting.idempotency_key == f"{method}:{external_id}"
                )
            )
        return found is not None

    async def told(self, payment_id: str) -> bool:
        """Whether the user was told of this payment's credit."""
        async with self.database.unit_of_work(readonly=True) as session:
            at = await session.scalar(select(Payment.notified_at).where(Payment.id == payment_id))
        return at is not None

    async def mark_told(self, payment_id: str) -> None:
        async with self.database.unit_of_work() as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == payment_id, Payment.notified_at.is_(None))
                .values(notified_at=utcnow())
            )

    # -- the receipt contact ---------------------------------------------------------------------
    async def receipt_contact(self, user_id: int) -> str | None:
        """Where the user's 54-ФЗ receipts go (`email:…` / `phone:…`), None if never given."""
        async with self.database.unit_of_work(readonly=True) as session:
            return await session.scalar(select(User.receipt_contact).where(User.id == user_id))

    async def set_receipt_contact(self, user_id: int, contact: str) -> None:
        async with self.database.unit_of_work() as session:
            await self.ledger.ensure_user(session, user_id)
            await session.execute(
                update(User).where(User.id == user_id).values(receipt_contact=contact)
            )

    # -- checks --------------------------------------------------------------------------------
    async def check_stars_checkout(
        self, payload: str, *, user_id: int, currency: str, total_amount: int
    ) -> PaymentView:
        """The payment a Stars pre-checkout pays; `PaymentError` says why it must be refused."""
        payment_id = payment_id_of(payload)
        payment = await self.get(payment_id) if payment_id else None
        if payment is None or payment.method != "stars" or payment.user_id != user_id:
            raise PaymentError("invalid_invoice")
        if currency != "XTR" or total_amount != payment.stars:
            raise PaymentError("invalid_invoice")
        if payment.status != PENDING:
            raise PaymentError("already_paid")
        async with self.database.unit_of_work(readonly=True) as session:
            blocked = await session.scalar(select(User.is_blocked).where(User.id == user_id))
        if blocked:
            raise PaymentError("blocked")
        return payment

    # -- money ---------------------------------------------------------------------------------
    async def credit(
        self,
        payment_id: str,
        *,
        external_id: str,
        memo: str,
        cid: str | None = None,
        reconciled: bool = False,
    ) -> Credit:
        """Credit the payment's amount once per `external_id`; mark it succeeded."""
        async with self.database.unit_of_work() as session:
            row = await session.get(Payment, payment_id, with_for_update=True)
            if row is None:
                raise PaymentError("unknown_payment")
            if row.status == REJECTED:
                # An admin rejected it (a manual transfer): a racing approval credits nothing.
                raise PaymentError("already_decided")
            if row.status == SUCCEEDED and row.external_id not in (None, external_id):
                # The same invoice paid again (a second charge): real money, its own row.
                row = await self._copy_for(session, row, external_id)
            posted = await self.ledger.credit_wallet(
                session,
                user_id=row.user_id,
                source=source_of(row.method),
                amount_kop=row.amount_kop,
                kind="topup",
                idempotency_key=f"{row.method}:{external_id}",
                memo=memo,
                cid=cid or row.cid,
            )
            event_cid = cid or row.cid
            if posted.created:
                row.status = SUCCEEDED
                row.external_id = external_id
                row.updated_at = utcnow()
            view = _view(row)
            failpoint("payment.uncommitted")
        failpoint("payment.credited")
        if posted.created:
            telemetry.emit(
                Event.PAYMENT_CREDITED,
                cid=event_cid,
                user_id=view.user_id,
                payment_id=view.id,
                method=view.method,
                amount_kop=view.amount_kop,
                external_id=external_id,
                reconciled=reconciled,
            )
        return Credit(view, posted.created)

    async def close(self, payment_id: str, status: str, *, detail: str = "") -> PaymentView | None:
        """Move a pending payment to canceled / rejected; None when it was not pending."""
        assert status in (CANCELED, REJECTED)
        async with self.database.unit_of_work() as session:
            moved = await session.scalar(
                update(Payment)
                .where(Payment.id == payment_id, Payment.status == PENDING)
                .values(status=status, detail=detail[:255], updated_at=utcnow())
                .returning(Payment.id)
            )
            row = await session.get(Payment, payment_id) if moved else None
            return _view(row) if row is not None else None

    async def decide(self, payment_id: str, admin_id: int) -> None:
        async with self.database.unit_of_work() as session:
            await session.execute(
                update(Payment).where(Payment.id == payment_id).values(decided_by=admin_id)
            )

    async def start_refund(
        self, payment_id: str, *, method: str | None = None, cid: str | None = None
    ) -> PaymentView:
        """Take the credit back from the wallet before asking the provider to refund.

        Refused (`PaymentError`) unless the payment succeeded through a provider (`method`'s
        when given: a provider refunds only its own payments) and the user still has the money
        available (`InsufficientFundsError` from the ledger: it was spent). A payment already
        REFUNDING (an earlier attempt whose outcome is not known yet) is returned as it is: its
        reversal stands, the provider is only asked again.
        """
        async with self.database.unit_of_work() as session:
            row = await session.get(Payment, payment_id, with_for_update=True)
            foreign = row is not None and method is not None and row.method != method
            if row is None or row.method == MANUAL or foreign or row.external_id is None:
                raise PaymentError("unknown_payment")
            if row.status == REFUNDING:
                return _view(row)
            if row.status != SUCCEEDED:
                raise PaymentError("not_refundable")
            attempt = await self._refund_attempt(session, row.method, row.external_id)
            wallet = await self.ledger.wallet(session, row.user_id)
            source = await self.ledger.account(session, source_of(row.method))
            await self.ledger.transfer(
                session,
                kind="refund_topup",
                # Each attempt its own key: after a refused attempt gave the credit back, the
                # next one must take it again (a replayed key would debit nothing).
                idempotency_key=_attempt_key(f"refund:{row.method}:{row.external_id}", attempt),
                debit=wallet,
                credit=source,
                amount_kop=row.amount_kop,
                memo=_refund_memo(row),
                cid=cid,
            )
            row.status = REFUNDING
            row.updated_at = utcnow()
            return _view(row)

    async def finish_refund(self, payment_id: str, *, ok: bool, cid: str | None = None) -> bool:
        """After Telegram's definite answer: refunded, or the credit restored when Telegram
        refused. Call it only on a definite answer (an unclear one leaves REFUNDING). False
        when the payment was not REFUNDING (decided already)."""
        async with self.database.unit_of_work() as session:
            row = await session.get(Payment, payment_id, with_for_update=True)
            if row is None or row.status != REFUNDING or row.external_id is None:
                return False
            if not ok:
                attempt = await self._refund_attempt(session, row.method, row.external_id)
                await self.ledger.credit_wallet(
                    session,
                    user_id=row.user_id,
                    source=source_of(row.method),
                    amount_kop=row.amount_kop,
                    kind="topup",
                    idempotency_key=_attempt_key(
                        f"refund-undone:{row.method}:{row.external_id}", attempt
                    ),
                    memo=_refund_memo(row),
                    cid=cid,
                )
            else:
                await self.referrals.reverse(session, row.user_id, cid)
            row.status = REFUNDED if ok else SUCCEEDED
            row.updated_at = utcnow()
            return True

    async def refund_attempt(self, payment_id: str) -> int:
        """The number of the payment's refund attempt in progress (1 for the first): a
        provider's idempotence key built from it asks about the same refund after a crash,
        and a new attempt after a refused one makes a new refund."""
        async with self.database.unit_of_work(readonly=True) as session:
            row = await session.get(Payment, payment_id)
            if row is None or row.external_id is None:
                raise PaymentError("unknown_payment")
            return await self._refund_attempt(session, row.method, row.external_id)

    async def refunding(self, method: str = "stars") -> list[PaymentView]:
        """Refunds whose outcome is not known yet (the provider did not answer clearly)."""
        async with self.database.unit_of_work(readonly=True) as session:
            rows = await session.scalars(
                select(Payment)
                .where(Payment.method == method, Payment.status == REFUNDING)
                .order_by(Payment.updated_at)
                .limit(100)
            )
            return [_view(row) for row in rows]

    async def _refund_attempt(self, session: AsyncSession, method: str, charge_id: str) -> int:
        """The number of the refund attempt in progress: one more than the refused ones (each
        refused attempt left its `refund-undone` posting in the ledger)."""
        undone = await session.scalar(
            select(func.count())
            .select_from(LedgerPosting)
            .where(
                LedgerPosting.idempotency_key.like(
                    _like_prefix(f"refund-undone:{method}:{charge_id}"), escape="\\"
                )
            )
        )
        return int(undone or 0) + 1

    # -- helpers -------------------------------------------------------------------------------
    async def _copy_for(self, session: AsyncSession, row: Payment, external_id: str) -> Payment:
        existing = await session.scalar(
            select(Payment).where(Payment.method == row.method, Payment.external_id == external_id)
        )
        if existing is not None:
            return existing
        copy = _pending(
            uuid.uuid4().hex,
            user_id=row.user_id,
            chat_id=row.chat_id,
            lang=row.lang,
            method=row.method,
            amount_kop=row.amount_kop,
            stars=row.stars,
            cid=row.cid,
            detail=f"second charge of {row.id}",
        )
        session.add(copy)
        await session.flush()
        return copy
