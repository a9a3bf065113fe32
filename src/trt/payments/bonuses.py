"""Bonuses: a welcome credit, referrals (`/start ref_<code>`), promo codes with limits and expiry.

Every credit goes through the ledger from the `bonus` account with its own idempotency key
(`welcome:<user>`, `referral:<invited>`, `promo:<code>:<user>`), so each happens at most once.
The referral bonus itself is paid on the invited user's spending (`payments.referrals`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from trt.billing.ledger import BONUS, Ledger
from trt.config import PaymentsSettings
from trt.db.database import Database
from trt.db.models import PromoCode, PromoRedemption, Referral, User, utcnow
from trt.payments.service import PaymentError
from trt.telemetry.events import Event, telemetry
from trt.users import MAX_ID

REFERRAL_PREFIX = "ref_"
_DIGITS = string.digits + string.ascii_lowercase
PROMO_ALPHABET = frozenset(string.ascii_uppercase + string.digits + "_-")


def referral_code(user_id: int) -> str:
    """The user's code for `/start ref_<code>`: the id in base 36 (short, no table needed)."""
    assert user_id > 0
    digits = []
    while user_id:
        user_id, rest = divmod(user_id, 36)
        digits.append(_DIGITS[rest])
    return "".join(reversed(digits))


def inviter_of(start_argument: str | None) -> int | None:
    """The inviter's id named by a `/start` argument, None when it is not a referral."""
    if not start_argument or not start_argument.startswith(REFERRAL_PREFIX):
        return None
    code = start_argument[len(REFERRAL_PREFIX) :].lower()
    if not code or len(code) > 13 or any(c not in _DIGITS for c in code):
        return None
    inviter = int(code, 36)
    return inviter if 0 < inviter < MAX_ID else None  # never a number too big for an id


def normalize_promo(code: str) -> str:
    return code.strip().upper()


@dataclass(frozen=True, slots=True)
class PromoView:
    code: str
    amount_kop: int
    max_uses: int
    uses: int
    expires_at: datetime | None


class BonusService:
    def __init__(self, database: Database, settings: PaymentsSettings) -> None:
        self.database = database
        self.settings = settings
        self.ledger = Ledger(is_sqlite=database.is_sqlite)
        self._insert = sqlite_insert if database.is_sqlite else pg_insert

    async def welcome(self, user_id: int, *, cid: str | None = None) -> int:
        """The welcome bonus for a new user (once); the kopecks credited, 0 if none."""
        amount = self.settings.welcome_bonus_rub * 100
        if amount <= 0:
            return 0
        created = await self._credit(user_id, amount, f"welcome:{user_id}", "welcome", cid)
        return amount if created else 0

    async def register_referral(self, invited_id: int, start_argument: str | None) -> int | None:
        """Remember who invited a new user; None (nothing stored) for a self- or bad referral."""
        inviter = inviter_of(start_argument)
        if inviter is None or inviter == invited_id:
            return None
        async with self.database.unit_of_work() as session:
            if await session.get(User, inviter) is None:
                return None
            stored = await session.scalar(
                self._insert(Referral)
                .values(invited_id=invited_id, inviter_id=inviter, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=[Referral.invited_id])
                .returning(Referral.inviter_id)
            )
        return int(stored) if stored is not None else None

    async def invited_count(self, inviter_id: int) -> tuple[int, int]:
        """(invited users, of them earned the bonus) for the referral screen."""
        async with self.database.unit_of_work(readonly=True) as session:
            rows = (
                await session.execute(
                    select(Referral.credited_at).where(Referral.inviter_id == inviter_id)
                )
            ).all()
        return len(rows), sum(1 for (credited,) in rows if credited is not None)

    async def create_promo(
        self, code: str, amount_kop: int, *, max_uses: int, expires_at: datetime | None
    ) -> PromoView:
        code = normalize_promo(code)
        if not 3 <= len(code) <= 32 or not set(code) <= PROMO_ALPHABET:
            raise ValueError("a promo code is 3–32 of A–Z, 0–9, _ and -")
        if amount_kop <= 0 or max_uses <= 0:
            raise ValueError("the amount and the number of uses must be positive")
        async with self.database.unit_of_work() as session:
            if await session.get(PromoCode, code) is not None:
                raise ValueError(f"promo code {code} exists")
            session.add(
                PromoCode(
                    code=code, amount_kop=amount_kop, max_uses=max_uses, expires_at=expires_at
                )
            )
        return PromoView(code, amount_kop, max_uses, 0, expires_at)

    async def promos(self) -> list[PromoView]:
        async with self.database.unit_of_work(readonly=True) as session:
            rows = await session.scalars(select(PromoCode).order_by(PromoCode.created_at))
            return [PromoView(r.code, r.amount_kop, r.max_uses, r.uses, r.expires_at) for r in rows]

    async def redeem(self, user_id: int, raw_code: str, *, cid: str | None = None) -> int:
        """Credit a promo code once per user; `PaymentError` with the reason otherwise."""
        code = normalize_promo(raw_code)
        if not code or len(code) > 32 or not set(code) <= PROMO_ALPHABET:
            raise PaymentError("promo_unknown")
        try:
            amount = await self._redeem(user_id, code, cid)
        except IntegrityError as error:  # the same user twice at once: the redemption row
            raise PaymentError("promo_used") from error
        telemetry.emit(
            Event.BONUS_CREDITED, cid=cid, user_id=user_id, kind="promo", amount_kop=amount
        )
        return amount

    async def _redeem(self, user_id: int, code: str, cid: str | None) -> int:
        async with self.database.unit_of_work() as session:
            promo = await session.get(PromoCode, code, with_for_update=True)
            if promo is None:
                raise PaymentError("promo_unknown")
            if promo.expires_at is not None and promo.expires_at <= utcnow():
                raise PaymentError("promo_expired")
            mine = await session.get(PromoRedemption, (code, user_id))
            if mine is not None:
                raise PaymentError("promo_used")
            # The use is counted by one conditional UPDATE: two redeemers of the last use
            # cannot both get it.
            counted = await session.scalar(
                update(PromoCode)
                .where(PromoCode.code == code, PromoCode.uses < PromoCode.max_uses)
                .values(uses=PromoCode.uses + 1)
                .returning(PromoCode.code)
            )
            if counted is None:
                raise PaymentError("promo_exhausted")
            session.add(PromoRedemption(code=code, user_id=user_id, redeemed_at=utcnow()))
            await self.ledger.credit_wallet(
                session,
                user_id=user_id,
                source=BONUS,
                amount_kop=promo.amount_kop,
                kind="bonus",
                idempotency_key=f"promo:{code}:{user_id}",
                memo=f"promo {code}",
                cid=cid,
            )
            return promo.amount_kop

    async def _credit(
        self, user_id: int, amount_kop: int, key: str, kind: str, cid: str | None
    ) -> bool:
        async with self.database.unit_of_work() as session:
            posted = await self.ledger.credit_wallet(
                session,
                user_id=user_id,
                source=BONUS,
                amount_kop=amount_kop,
                kind="bonus",
                idempotency_key=key,
                memo=kind,
                cid=cid,
            )
        if posted.created:
            telemetry.emit(
                Event.BONUS_CREDITED, cid=cid, user_id=user_id, kind=kind, amount_kop=amount_kop
            )
        return posted.created
