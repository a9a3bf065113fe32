"""Top-ups: a payment row from intent to credit, each credit a ledger posting made once.

Every way money arrives — a Stars `successful_payment`, a YooKassa payment fetched after its
notification, an admin's approval of a manual transfer, a reconciliation that finds a missed
one — ends in `PaymentService.credit`, keyed by the provider's id (`<method>:<external id>`):
a redelivered update, a replayed notification or a second approval changes nothing. The
inviter's referral bonus rides in the same transaction as the invited user's first top-up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from trt.billing.ledger import BONUS, Ledger
from trt.config import PaymentsSettings
from trt.db.database import Database
from trt.db.models import LedgerPosting, Payment, Referral, User, utcnow
from trt.faults import failpoint
from trt.telemetry.events import Event, telemetry

SOURCES = {"stars": "topup:stars", "yookassa": "topup:yookassa", "manual": "topup:manual"}
PENDING, SUCCEEDED, CANCELED, REJECTED = "pending", "succeeded", "canceled", "rejected"
REFUNDING, REFUNDED = "refunding", "refunded"
INVOICE_PREFIX = "tp:"  # a Stars invoice's payload: "tp:<payment id>"


class PaymentError(Exception):
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

    @property
    def invoice_payload(self) -> str:
        return INVOICE_PREFIX + self.id


@dataclass(frozen=True, slots=True)
class Credit:
    """The outcome of `credit`: `created` is False when this money had been credited already."""

    payment: PaymentView
    created: bool
    referral_inviter: int | None = None  # credited with the referral bonus just now
    referral_bonus_kop: int = 0


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
    )


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
        cid: str | None = None,
    ) -> PaymentView:
        assert method in SOURCES, method
        assert amount_kop > 0
        now = utcnow()
        row = Payment(
            id=uuid.uuid4().hex,
            user_id=user_id,
            chat_id=chat_id,
            lang=lang,
            method=method,
            status=PENDING,
            amount_kop=amount_kop,
            stars=stars,
            receipt_file_id=receipt_file_id,
            cid=cid,
            created_at=now,
            updated_at=now,
        )
        async with self.database.unit_of_work() as session:
            await self.ledger.ensure_user(session, user_id)
            session.add(row)
        telemetry.emit(
            Event.PAYMENT_CREATED,
            cid=cid,
            user_id=user_id,
            payment_id=row.id,
            method=method,
            amount_kop=amount_kop,
        )
        return _view(row)

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
                source=SOURCES[row.method],
                amount_kop=row.amount_kop,
                kind="topup",
                idempotency_key=f"{row.method}:{external_id}",
                memo=memo,
                cid=cid or row.cid,
            )
            inviter, bonus = None, 0
            event_cid = cid or row.cid
            if posted.created:
                row.status = SUCCEEDED
                row.external_id = external_id
                row.updated_at = utcnow()
                inviter, bonus = await self._referral_bonus(session, row.user_id, cid)
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
        return Credit(view, posted.created, inviter, bonus)

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

    async def start_refund(self, payment_id: str, *, cid: str | None = None) -> PaymentView:
        """Take the credit back from the wallet before asking Telegram to refund the Stars.

        Refused (`PaymentError`) unless the payment succeeded by Stars and the user still has
        the money available (`InsufficientFundsError` from the ledger: it was spent).
        """
        async with self.database.unit_of_work() as session:
            row = await session.get(Payment, payment_id, with_for_update=True)
            if row is None or row.method != "stars" or row.external_id is None:
                raise PaymentError("unknown_payment")
            if row.status == REFUNDING:
                # An earlier refund took the credit back but never heard Telegram's answer
                # (a crash): ask Telegram again; the reversal's key keeps it to one.
                return _view(row)
            if row.status != SUCCEEDED:
                raise PaymentError("not_refundable")
            wallet = await self.ledger.wallet(session, row.user_id)
            source = await self.ledger.account(session, SOURCES["stars"])
            await self.ledger.transfer(
                session,
                kind="refund_topup",
                idempotency_key=f"refund:stars:{row.external_id}",
                debit=wallet,
                credit=source,
                amount_kop=row.amount_kop,
                memo=f"Stars ⭐ {row.stars}",
                cid=cid,
            )
            row.status = REFUNDING
            row.updated_at = utcnow()
            return _view(row)

    async def finish_refund(self, payment_id: str, *, ok: bool, cid: str | None = None) -> None:
        """After Telegram's answer: refunded, or the credit restored when Telegram refused."""
        async with self.database.unit_of_work() as session:
            row = await session.get(Payment, payment_id, with_for_update=True)
            if row is None or row.status != REFUNDING:
                return
            if not ok:
                await self.ledger.credit_wallet(
                    session,
                    user_id=row.user_id,
                    source=SOURCES["stars"],
                    amount_kop=row.amount_kop,
                    kind="topup",
                    idempotency_key=f"refund-undone:stars:{row.external_id}",
                    memo=f"Stars ⭐ {row.stars}",
                    cid=cid,
                )
            row.status = REFUNDED if ok else SUCCEEDED
            row.updated_at = utcnow()

    # -- helpers -------------------------------------------------------------------------------
    async def _copy_for(self, session: AsyncSession, row: Payment, external_id: str) -> Payment:
        existing = await session.scalar(
            select(Payment).where(Payment.method == row.method, Payment.external_id == external_id)
        )
        if existing is not None:
            return existing
        now = utcnow()
        copy = Payment(
            id=uuid.uuid4().hex,
            user_id=row.user_id,
            chat_id=row.chat_id,
            lang=row.lang,
            method=row.method,
            status=PENDING,
            amount_kop=row.amount_kop,
            stars=row.stars,
            cid=row.cid,
            detail=f"second charge of {row.id}",
            created_at=now,
            updated_at=now,
        )
        session.add(copy)
        await session.flush()
        return copy

    async def _referral_bonus(
        self, session: AsyncSession, invited_id: int, cid: str | None
    ) -> tuple[int | None, int]:
        """The inviter's bonus on the invited user's first top-up (once per invited user)."""
        amount = self.settings.referral_bonus_rub * 100
        if amount <= 0:
            return None, 0
        inviter = await session.scalar(
            update(Referral)
            .where(Referral.invited_id == invited_id, Referral.credited_at.is_(None))
            .values(credited_at=utcnow())
            .returning(Referral.inviter_id)
        )
        if inviter is None:
            return None, 0
        await self.ledger.credit_wallet(
            session,
            user_id=int(inviter),
            source=BONUS,
            amount_kop=amount,
            kind="bonus",
            idempotency_key=f"referral:{invited_id}",
            memo="referral",
            cid=cid,
        )
        return int(inviter), amount
