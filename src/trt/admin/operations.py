"""What the operator's panel reads and does: stats with a chart, users, jobs.

Reads are plain queries over the same tables the bot writes (so the figures are the database's
truth); every change goes through the ledger or a conditional UPDATE and writes an audit entry
in the same transaction.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import func, or_, select, update

from trt.admin.settings import audit
from trt.billing.ledger import ADJUSTMENTS, REVENUE, Balance, Ledger
from trt.db.database import Database
from trt.db.models import (
    Hold,
    HoldResolution,
    Job,
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
    Payment,
    User,
    utcnow,
)
from trt.jobs.state import ACTIVE, JobStatus
from trt.jobs.transitions import JobTransitions
from trt.users import UserService, parse_id

FAILED_STATES = (JobStatus.FAILED.value, JobStatus.TIMED_OUT.value)
DONE_STATES = (JobStatus.SUCCEEDED.value, JobStatus.DELIVERED.value)


@dataclass
class Stats:
    days: int
    users_total: int = 0
    users_new: int = 0
    users_active: int = 0
    jobs_by_status: Counter[str] = field(default_factory=Counter)
    jobs_by_model: Counter[str] = field(default_factory=Counter)
    revenue_kop: int = 0
    refunds: int = 0
    refunded_kop: int = 0
    topups: dict[str, tuple[int, int]] = field(default_factory=dict)  # method → (count, kop)
    failure_rate_by_model: dict[str, float] = field(default_factory=dict)
    failures_by_code: Counter[str] = field(default_factory=Counter)
    average_result_s: float | None = None


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    revenue_kop: int
    jobs: int


@dataclass(frozen=True, slots=True)
class UserCard:
    user_id: int
    username: str | None
    language: str
    is_blocked: bool
    created_at: datetime
    balance: Balance
    jobs: list[tuple[str, str, str, int, str | None]]  # id, model, status, price, cid
    payments: list[tuple[str, str, str, int]]  # id, method, status, amount


class Operations:
    def __init__(self, database: Database, users: UserService | None = None) -> None:
        self.database = database
        self.users = users  # its cache of who is blocked is told of a change
        self.ledger = Ledger(is_sqlite=database.is_sqlite)
        self.transitions = JobTransitions(self.ledger)  # a job's refund is decided there

    # -- stats -------------------------------------------------------------------------------
    async def stats(self, days: int, *, now: datetime | None = None) -> Stats:
        now = now or utcnow()
        since = now - timedelta(days=days)
        stats = Stats(days)
        async with self.database.unit_of_work(readonly=True) as session:
            stats.users_total = int(await session.scalar(select(func.count(User.id))) or 0)
            stats.users_new = int(
                await session.scalar(select(func.count(User.id)).where(User.created_at >= since))
                or 0
            )
            stats.users_active = int(
                await session.scalar(select(func.count(User.id)).where(User.last_seen_at >= since))
                or 0
            )
            jobs = (
                await session.execute(
                    select(
                        Job.model_slug, Job.status, Job.error_code, Job.created_at, Job.finished_at
                    ).where(Job.created_at >= since)
                )
            ).all()
            revenue = await session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_kop), 0))
                .join(LedgerPosting, LedgerPosting.id == LedgerEntry.posting_id)
                .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                .where(LedgerAccount.code == REVENUE, LedgerPosting.created_at >= since)
            )
            stats.revenue_kop = int(revenue or 0)
            released = (
                await session.execute(
                    select(func.count(), func.coalesce(func.sum(Hold.amount_kop), 0))
                    .select_from(HoldResolution)
                    .join(Hold, Hold.id == HoldResolution.hold_id)
                    .where(
                        HoldResolution.outcome.in_(("released", "expired")),
                        HoldResolution.created_at >= since,
                    )
                )
            ).one()
            refunded = (
                await session.execute(
                    select(func.count(), func.coalesce(func.sum(LedgerEntry.amount_kop), 0))
                    .select_from(LedgerEntry)
                    .join(LedgerPosting, LedgerPosting.id == LedgerEntry.posting_id)
                    .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                    .where(
                        LedgerPosting.kind == "refund",
                        LedgerAccount.user_id.is_not(None),
                        LedgerPosting.created_at >= since,
                    )
                )
            ).one()
            stats.refunds = int(released[0]) + int(refunded[0])
            stats.refunded_kop = int(released[1]) + int(refunded[1])
            for method, count, amount in (
                await session.execute(
                    select(
                        Payment.method, func.count(), func.coalesce(func.sum(Payment.amount_kop), 0)
                    )
                    .where(Payment.status == "succeeded", Payment.updated_at >= since)
                    .group_by(Payment.method)
                )
            ).all():
                stats.topups[str(method)] = (int(count), int(amount))
        finished: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        durations = []
        for model, status, error_code, created_at, finished_at in jobs:
            stats.jobs_by_status[status] += 1
            stats.jobs_by_model[model] += 1
            if status in FAILED_STATES or status in DONE_STATES:
                finished[model] += 1
            if status in FAILED_STATES:
                failed[model] += 1
                stats.failures_by_code[error_code or "?"] += 1
            if status in DONE_STATES and finished_at is not None:
                durations.append((finished_at - created_at).total_seconds())
        stats.failure_rate_by_model = {m: failed[m] / finished[m] for m in finished if failed[m]}
        stats.average_result_s = sum(durations) / len(durations) if durations else None
        return stats

    async def daily(self, days: int = 30, *, now: datetime | None = None) -> list[Day]:
        """Revenue and generations per day (UTC) for the chart, oldest first, every day present."""
        now = now or utcnow()
        first = (now - timedelta(days=days - 1)).date()
        revenue: dict[date, int] = defaultdict(int)
        jobs: dict[date, int] = defaultdict(int)
        since = datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)
        async with self.database.unit_of_work(readonly=True) as session:
            for at, amount in (
                await session.execute(
                    select(LedgerPosting.created_at, LedgerEntry.amount_kop)
                    .join(LedgerEntry, LedgerEntry.posting_id == LedgerPosting.id)
                    .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                    .where(LedgerAccount.code == REVENUE, LedgerPosting.created_at >= since)
                )
            ).all():
                revenue[at.date()] += int(amount)
            for (at,) in (
                await session.execute(select(Job.created_at).where(Job.created_at >= since))
            ).all():
                jobs[at.date()] += 1
        return [
            Day(
                first + timedelta(days=i),
                revenue[first + timedelta(days=i)],
                jobs[first + timedelta(days=i)],
            )
            for i in range(days)
        ]

    # -- users -------------------------------------------------------------------------------
    async def find_user(self, query: str) -> int | None:
        query = query.strip()
        async with self.database.unit_of_work(readonly=True) as session:
            if query.lstrip("-").isdigit():
                user_id = parse_id(query)
                if user_id is None:
                    return None
                found = await session.scalar(select(User.id).where(User.id == user_id))
            else:
                name = query.removeprefix("@").lower()
                found = await session.scalar(
                    select(User.id).where(func.lower(User.username) == name)
                )
        return int(found) if found is not None else None

    async def user_card(self, user_id: int) -> UserCard | None:
        async with self.database.unit_of_work(readonly=True) as session:
            user = await session.get(User, user_id)
            if user is None:
                return None
            balance = await self.ledger.balance(session, user_id)
            jobs = (
                await session.execute(
                    select(Job.id, Job.model_slug, Job.status, Job.price_kop, Job.cid)
                    .where(Job.user_id == user_id)
                    .order_by(Job.created_at.desc())
                    .limit(5)
                )
            ).all()
            payments = (
                await session.execute(
                    select(Payment.id, Payment.method, Payment.status, Payment.amount_kop)
                    .where(Payment.user_id == user_id)
                    .order_by(Payment.created_at.desc())
                    .limit(5)
                )
            ).all()
            return UserCard(
                user.id,
                user.username,
                user.language,
                user.is_blocked,
                user.created_at,
                balance,
                [(j[0], j[1], j[2], int(j[3]), j[4]) for j in jobs],
                [(p[0], p[1], p[2], int(p[3])) for p in payments],
            )

    async def adjust(
        self,
        user_id: int,
        amount_kop: int,
        *,
        reason: str,
        admin_id: int,
        key: str,
        cid: str | None,
    ) -> Balance:
        """Credit (amount > 0) or debit (< 0) a wallet through the ledger, with the reason.

        `key` names the admin's request (the command's chat and message id): the same request
        handled again — a redelivered update after a crash — moves nothing the second time.
        A debit beyond the available balance raises `InsufficientFundsError`; nothing moves.
        """
        assert amount_kop != 0
        key = f"adjust:{key}:{user_id}"
        async with self.database.unit_of_work() as session:
            before = await self.ledger.balance(session, user_id)
            wallet = await self.ledger.wallet(session, user_id)
            source = await self.ledger.account(session, ADJUSTMENTS)
            debit, credit = (source, wallet) if amount_kop > 0 else (wallet, source)
            posted = await self.ledger.transfer(
                session,
                kind="adjust",
                idempotency_key=key,
                debit=debit,
                credit=credit,
                amount_kop=abs(amount_kop),
                memo=reason[:200],
                cid=cid,
            )
            after = await self.ledger.balance(session, user_id)
            if not posted.created:
                return after  # this request was carried out before: audited then
            await audit(
                session,
                admin_id=admin_id,
                action="adjust",
                target=f"user:{user_id}",
                before={"posted_kop": before.posted_kop},
                after={"posted_kop": after.posted_kop, "reason": reason[:200]},
                cid=cid,
            )
        return after

    async def set_blocked(
        self, user_id: int, blocked: bool, *, admin_id: int, cid: str | None
    ) -> bool | None:
        """Block or unblock; the previous value, None for an unknown user."""
        async with self.database.unit_of_work() as session:
            user = await session.get(User, user_id, with_for_update=True)
            if user is None:
                return None
            before = user.is_blocked
            user.is_blocked = blocked
            await audit(
                session,
                admin_id=admin_id,
                action="block" if blocked else "unblock",
                target=f"user:{user_id}",
                before=before,
                after=blocked,
                cid=cid,
            )
        if self.users is not None:
            self.users.forget(user_id)
        return before

    # -- jobs --------------------------------------------------------------------------------
    async def troubled_jobs(
        self, *, limit: int = 10
    ) -> list[tuple[str, str, str, str | None, str | None]]:
        """Stuck (active past their deadline) and recently failed jobs: id, model, status,
        error code, cid."""
        now = utcnow()
        async with self.database.unit_of_work(readonly=True) as session:
            rows = (
                await session.execute(
                    select(Job.id, Job.model_slug, Job.status, Job.error_code, Job.cid)
                    .where(
                        or_(
                            Job.status.in_(FAILED_STATES),
                            (Job.status.in_([s.value for s in ACTIVE]) & (Job.deadline_at < now)),
                        )
                    )
                    .order_by(Job.updated_at.desc())
                    .limit(limit)
                )
            ).all()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def refund_job(self, job_id: str, *, admin_id: int, cid: str | None) -> int | None:
        """Give a charged job's price back by hand, once; the kopecks, 0 if already refunded,
        None when the job was never charged (unknown, free, or its hold was released)."""
        async with self.database.unit_of_work() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None:
                return None
            # The job's owner of money decides: the same key as an undelivered result's.
            captured = await self.transitions.refund_captured(
                session, job, memo=job.model_slug, cid=cid
            )
            if not captured:
                return captured  # None: never charged; 0: given back already
            await session.execute(
                update(Job).where(Job.id == job.id).values(error_message="refunded by an admin")
            )
            await audit(
                session,
                admin_id=admin_id,
                action="refund_job",
                target=f"job:{job.id}",
                before={"captured_kop": int(captured)},
                after={"refunded_kop": int(captured)},
                cid=cid,
            )
        return int(captured)


# -- the chart -----------------------------------------------------------------------------
CHART_SIZE = (900, 420)
MARGIN = (60, 30, 20, 50)  # left, top, right, bottom


def chart_png(days: list[Day], title: str) -> bytes:
    """Revenue per day as bars and generations per day as a line, one PNG (Pillow only)."""
    width, height = CHART_SIZE
    left, top, right, bottom = MARGIN
    image = Image.new("RGB", CHART_SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    plot_w, plot_h = width - left - right, height - top - bottom
    draw.text((left, 8), title, fill="black", font=font)
    draw.line((left, top, left, top + plot_h, left + plot_w, top + plot_h), fill="black")
    top_revenue = max((d.revenue_kop for d in days), default=0) or 1
    top_jobs = max((d.jobs for d in days), default=0) or 1
    step = plot_w / max(len(days), 1)
    points = []
    for index, day in enumerate(days):
        x0 = left + index * step + step * 0.15
        x1 = left + (index + 1) * step - step * 0.15
        bar = plot_h * day.revenue_kop / top_revenue
        if bar > 0:
            draw.rectangle((x0, top + plot_h - bar, x1, top + plot_h), fill=(90, 150, 230))
        points.append((left + (index + 0.5) * step, top + plot_h - plot_h * day.jobs / top_jobs))
        if index % 5 == 0 or index == len(days) - 1:
            draw.text((x0, top + plot_h + 6), day.day.strftime("%d.%m"), fill="black", font=font)
    if len(points) > 1:
        draw.line(points, fill=(230, 120, 40), width=3)
    draw.text(
        (4, top), f"{top_revenue / 100:.0f} ₽".replace("₽", "RUB"), fill=(40, 90, 180), font=font
    )
    draw.text((width - right - 140, top), f"max {top_jobs} jobs/day", fill=(200, 90, 20), font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
