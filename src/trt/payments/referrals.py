"""The referral bonus: paid for a friend who really pays, taken back when that money goes back.

A bonus on the first top-up alone could be farmed (top up, collect, refund; or many fake
friends). So the inviter is paid once the invited user has both a top-up that stands and
captured spending of at least `REFERRAL_MIN_SPEND_RUB` on generations, at most
`REFERRAL_MAX_PER_INVITER` times per inviter; a refund of the invited user's top-up takes the
bonus back (as much of it as the inviter still has). Both are ledger postings with their own
keys (`referral:<invited>`, `referral-reversed:<invited>`), so each happens at most once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from trt.billing.ledger import BONUS, Ledger
from trt.config import PaymentsSettings
from trt.db.database import core
from trt.db.models import LedgerEntry, LedgerPosting, Payment, Referral, utcnow

STANDING_TOPUPS = ("succeeded",)  # a refunded or refunding top-up does not count


@dataclass(frozen=True, slots=True)
class ReferralBonus:
    inviter_id: int
    amount_kop: int


# Asked at every capture (whether the spender was invited and the bonus is still unpaid): built
# once.
UNPAID_INVITER = select(Referral.inviter_id).where(
    Referral.invited_id == bindparam("invited"), Referral.credited_at.is_(None)
)


class Referrals:
    def __init__(self, settings: PaymentsSettings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger

    async def on_spend(
        self, session: AsyncSession, invited_id: int, cid: str | None
    ) -> ReferralBonus | None:
        """Pay the inviter's bonus if `invited_id` has just qualified (in the caller's
        transaction, after a capture); None when nothing was paid."""
        amount = self.settings.referral_bonus_rub * 100
        if amount <= 0:
            return None
        inviter = await (await core(session)).scalar(UNPAID_INVITER, {"invited": invited_id})
        if inviter is None:
            return None
        if not await self._qualifies(session, invited_id):
            return None
        paid_already = await session.scalar(
            select(func.count())
            .select_from(Referral)
            .where(Referral.inviter_id == inviter, Referral.credited_at.is_not(None))
        )
        if int(paid_already or 0) >= self.settings.referral_max_per_inviter:
            return None
        claimed = await session.scalar(
            update(Referral)
            .where(Referral.invited_id == invited_id, Referral.credited_at.is_(None))
            .values(credited_at=utcnow())
            .returning(Referral.inviter_id)
        )
        if claimed is None:
            return None  # paid by a concurrent capture
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
        return ReferralBonus(int(inviter), amount)

    async def reverse(self, session: AsyncSession, invited_id: int, cid: str | None) -> int:
        """Take back the bonus paid for `invited_id` (a top-up of theirs was refunded): as much
        as the inviter still has available; the kopecks taken back."""
        referral = await session.get(Referral, invited_id, with_for_update=True)
        if referral is None or referral.credited_at is None or referral.reversed_at is not None:
            return 0
        paid = await session.scalar(
            select(LedgerEntry.amount_kop)
            .join(LedgerPosting, LedgerPosting.id == LedgerEntry.posting_id)
            .where(
                LedgerPosting.idempotency_key == f"referral:{invited_id}",
                LedgerEntry.amount_kop > 0,
            )
        )
        referral.reversed_at = utcnow()
        available = (await self.ledger.balance(session, referral.inviter_id)).available_kop
        amount = min(int(paid or 0), max(available, 0))
        if amount <= 0:
            return 0
        await self.ledger.transfer(
            session,
            kind="bonus_reversed",
            idempotency_key=f"referral-reversed:{invited_id}",
            debit=await self.ledger.wallet(session, referral.inviter_id),
            credit=await self.ledger.account(session, BONUS),
            amount_kop=amount,
            memo="referral",
            cid=cid,
        )
        return amount

    async def _qualifies(self, session: AsyncSession, invited_id: int) -> bool:
        topped_up = await session.scalar(
            select(Payment.id)
            .where(Payment.user_id == invited_id, Payment.status.in_(STANDING_TOPUPS))
            .limit(1)
        )
        if topped_up is None:
            return False
        spent = await self._spent_kop(session, invited_id)
        return spent >= self.settings.referral_min_spend_rub * 100

    async def _spent_kop(self, session: AsyncSession, user_id: int) -> int:
        """Kopecks the user's captured generations moved to revenue (less job refunds)."""
        wallet = await self.ledger.wallet(session, user_id)
        moved = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount_kop), 0))
            .join(LedgerPosting, LedgerPosting.id == LedgerEntry.posting_id)
            .where(
                LedgerEntry.account_id == wallet,
                LedgerPosting.kind.in_(("capture", "refund")),
            )
        )
        return -int(moved or 0)
