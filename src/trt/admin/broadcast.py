"""Broadcasts: one message to many users at a set rate, through the one sender.

The recipients are fixed when a broadcast starts (its segment, minus users who blocked the bot
or were blocked). The ACTIVE instance sends them one by one at `rate_per_s`, honouring
Telegram's 429 `retry_after` (everything waits), and records each recipient before and after
its send, so a broadcast resumes after a restart without writing to anyone twice:

- pending → sending (committed) → sent / failed / blocked (committed after Telegram answers);
- a graceful stop (SIGTERM, pause, cancel) finishes the send in flight first;
- a recipient found in `sending` after a crash (kill -9 between the send and its record) is
  marked `unknown` and not sent again: for a broadcast, one possible miss beats a duplicate.

A user whose chat answers 403 is marked `blocked_bot` and left out of later broadcasts until
they write to the bot again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, select, update

from trt.admin.settings import audit
from trt.concurrency import first
from trt.db.database import Database
from trt.db.models import Broadcast, BroadcastRecipient, Payment, User, utcnow
from trt.logs import get_logger
from trt.telegram.sender import Markup, RetryLater, Sender, Undeliverable
from trt.users import UserService

log = get_logger(__name__)


class BroadcastStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


DRAFT, RUNNING, PAUSED = BroadcastStatus.DRAFT, BroadcastStatus.RUNNING, BroadcastStatus.PAUSED
CANCELLED, DONE = BroadcastStatus.CANCELLED, BroadcastStatus.DONE
BATCH = 100
PROGRESS_EVERY_S = 2.0
STATUS_EVERY_S = 1.0  # how often a running broadcast looks for pause / cancel
IDLE_S = 1.0


@dataclass(frozen=True, slots=True)
class Progress:
    broadcast_id: int
    status: str
    total: int
    sent: int
    failed: int
    blocked: int
    unknown: int

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.blocked + self.unknown


Render = Callable[[Progress], tuple[str, Markup | None]]


def segment_filter(segment: dict[str, Any]) -> Any:
    """The users a segment means: all, by language, active in N days, or who have paid."""
    kind = segment.get("kind", "all")
    if kind == "lang":
        return User.language == str(segment.get("lang", "ru"))
    if kind == "active":
        days = max(1, min(int(segment.get("days", 7)), 365))
        return User.last_seen_at >= utcnow() - timedelta(days=days)
    if kind == "paid":
        return exists().where(Payment.user_id == User.id, Payment.status == "succeeded")
    return User.id.is_not(None)


class BroadcastService:
    def __init__(
        self,
        database: Database,
        sender: Sender,
        *,
        default_rate_per_s: float,
        render: Render | None = None,
        users: UserService | None = None,
    ) -> None:
        self.database = database
        self.users = users  # told when a user turns out to have blocked the bot
        self.sender = sender
        self.default_rate_per_s = default_rate_per_s
        self.render = render  # the admin's progress message (text, buttons) for a Progress
        self.wake = asyncio.Event()

    def _audience(self, segment: dict[str, Any]) -> Any:
        return and_(
            segment_filter(segment), User.blocked_bot.is_(False), User.is_blocked.is_(False)
        )

    async def audience(self, segment: dict[str, Any]) -> int:
        async with self.database.unit_of_work(readonly=True) as session:
            return int(
                await session.scalar(select(func.count(User.id)).where(self._audience(segment)))
                or 0
            )

    async def create(
        self, *, admin_id: int, text: str, segment: dict[str, Any], rate_per_s: float | None = None
    ) -> int:
        async with self.database.unit_of_work() as session:
            row = Broadcast(
                created_by=admin_id,
                text=text[:4096],
                segment=segment,
                status=DRAFT,
                rate_per_s=rate_per_s or self.default_rate_per_s,
                total=0,
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            return int(row.id)

    async def set_segment(self, broadcast_id: int, segment: dict[str, Any]) -> None:
        async with self.database.unit_of_work() as session:
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.status == DRAFT)
                .values(segment=segment)
            )

    async def start(
        self,
        broadcast_id: int,
        *,
        admin_id: int,
        progress_chat_id: int | None = None,
        progress_message_id: int | None = None,
        cid: str | None = None,
    ) -> int:
        """Fix the recipients and set it running (once: a draft only); how many recipients."""
        async with self.database.unit_of_work() as session:
            row = await session.get(Broadcast, broadcast_id, with_for_update=True)
            if row is None or row.status != DRAFT:
                return 0
            await session.execute(
                insert(BroadcastRecipient).from_select(
                    ["broadcast_id", "user_id", "status"],
                    select(literal(broadcast_id), User.id, literal("pending")).where(
                        self._audience(row.segment)
                    ),
                )
            )
            total = int(
                await session.scalar(
                    select(func.count()).where(BroadcastRecipient.broadcast_id == broadcast_id)
                )
                or 0
            )
            row.total = total
            row.status = RUNNING
            row.started_at = utcnow()
            row.progress_chat_id = progress_chat_id
            row.progress_message_id = progress_message_id
            await audit(
                session,
                admin_id=admin_id,
                action="broadcast",
                target=f"broadcast:{broadcast_id}",
                before=DRAFT,
                after={"status": RUNNING, "total": total, "segment": row.segment},
                cid=cid,
            )
        self.wake.set()
        return total

    async def set_status(
        self, broadcast_id: int, status: str, *, admin_id: int, cid: str | None = None
    ) -> str | None:
        """Pause, resume or cancel; the new status, None when that move is not allowed."""
        allowed: dict[str, tuple[str, ...]] = {
            PAUSED: (RUNNING,),
            RUNNING: (PAUSED,),
            CANCELLED: (RUNNING, PAUSED, DRAFT),
        }
        async with self.database.unit_of_work() as session:
            before = await session.scalar(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.status.in_(allowed[status]))
                .values(status=status)
                .returning(Broadcast.status)
            )
            if before is None:
                return None
            await audit(
                session,
                admin_id=admin_id,
                action="broadcast",
                target=f"broadcast:{broadcast_id}",
                after=status,
                cid=cid,
            )
        self.wake.set()
        return status

    async def progress(self, broadcast_id: int) -> Progress | None:
        async with self.database.unit_of_work(readonly=True) as session:
            row = await session.get(Broadcast, broadcast_id)
            if row is None:
                return None
            counts = dict(
                (
                    await session.execute(
                        select(BroadcastRecipient.status, func.count())
                        .where(BroadcastRecipient.broadcast_id == broadcast_id)
                        .group_by(BroadcastRecipient.status)
                    )
                ).all()
            )
        return Progress(
            broadcast_id,
            row.status,
            row.total,
            int(counts.get("sent", 0)),
            int(counts.get("failed", 0)),
            int(counts.get("blocked", 0)),
            int(counts.get("unknown", 0)),
        )

    # -- sending (ACTIVE instance) -----------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self._settle_interrupted()
        while not stop.is_set():
            broadcast = await self._next_running()
            if broadcast is None:
                self.wake.clear()
                await first(self.wake.wait(), stop.wait(), timeout_s=IDLE_S)
                continue
            try:
                await self._send_all(broadcast, stop)
            except Exception:  # a bug must not stop the ACTIVE work; the next loop retries
                log.exception("broadcast_crashed", broadcast_id=broadcast.id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_S)

    async def _settle_interrupted(self) -> None:
        """A crash between a send and its record leaves `sending`: never send those again."""
        async with self.database.unit_of_work() as session:
            moved = await session.execute(
                update(BroadcastRecipient)
                .where(BroadcastRecipient.status == "sending")
                .values(status="unknown", sent_at=utcnow())
                .returning(BroadcastRecipient.broadcast_id, BroadcastRecipient.user_id)
            )
            ambiguous = moved.all()
        if ambiguous:
            log.warning("broadcast_recipients_unknown", recipients=[list(r) for r in ambiguous])

    async def _next_running(self) -> Broadcast | None:
        async with self.database.unit_of_work(readonly=True) as session:
            return await session.scalar(
                select(Broadcast).where(Broadcast.status == RUNNING).order_by(Broadcast.id).limit(1)
            )

    async def _status(self, broadcast_id: int) -> str | None:
        async with self.database.unit_of_work(readonly=True) as session:
            return await session.scalar(
                select(Broadcast.status).where(Broadcast.id == broadcast_id)
            )

    async def _send_all(self, broadcast: Broadcast, stop: asyncio.Event) -> None:
        interval = 1.0 / max(broadcast.rate_per_s, 0.1)
        next_at = time.monotonic()
        checked_at = shown_at = time.monotonic()
        log.info("broadcast_sending", broadcast_id=broadcast.id, rate_per_s=broadcast.rate_per_s)
        while not stop.is_set():
            async with self.database.unit_of_work(readonly=True) as session:
                batch = list(
                    await session.scalars(
                        select(BroadcastRecipient.user_id)
                        .where(
                            BroadcastRecipient.broadcast_id == broadcast.id,
                            BroadcastRecipient.status == "pending",
                        )
                        .order_by(BroadcastRecipient.user_id)
                        .limit(BATCH)
                    )
                )
            if not batch:
                await self._finish(broadcast)
                return
            for user_id in batch:
                now = time.monotonic()
                if now - checked_at >= STATUS_EVERY_S:
                    checked_at = now
                    if await self._status(broadcast.id) != RUNNING:
                        await self._show(broadcast)
                        return
                if now - shown_at >= PROGRESS_EVERY_S:
                    shown_at = now
                    await self._show(broadcast)
                if stop.is_set():
                    return
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at = max(next_at + interval, time.monotonic() - interval)
                wait_s = await self._send_one(broadcast, user_id)
                if wait_s:
                    # 429: Telegram says when; nobody gets a message before then.
                    await asyncio.sleep(wait_s)
                    next_at = time.monotonic()

    async def _send_one(self, broadcast: Broadcast, user_id: int) -> float:
        """Send to one recipient; seconds to wait before any next send (a 429), else 0."""
        async with self.database.unit_of_work() as session:
            claimed = await session.scalar(
                update(BroadcastRecipient)
                .where(
                    BroadcastRecipient.broadcast_id == broadcast.id,
                    BroadcastRecipient.user_id == user_id,
                    BroadcastRecipient.status == "pending",
                )
                .values(status="sending")
                .returning(BroadcastRecipient.user_id)
            )
        if claimed is None:
            return 0.0
        outcome, wait_s = "sent", 0.0
        try:
            await self.sender.text(user_id, broadcast.text)
        except RetryLater as later:
            outcome, wait_s = "pending", max(later.after_s, 0.05)  # tried again after the wait
        except Undeliverable as refused:
            outcome = "blocked" if refused.blocked else "failed"
        async with self.database.unit_of_work() as session:
            await session.execute(
                update(BroadcastRecipient)
                .where(
                    BroadcastRecipient.broadcast_id == broadcast.id,
                    BroadcastRecipient.user_id == user_id,
                )
                .values(status=outcome, sent_at=utcnow() if outcome == "sent" else None)
            )
            if outcome == "blocked":
                await session.execute(
                    update(User).where(User.id == user_id).values(blocked_bot=True)
                )
        if outcome == "blocked" and self.users is not None:
            self.users.forget(user_id)  # their next message clears the mark again
        return wait_s

    async def _finish(self, broadcast: Broadcast) -> None:
        async with self.database.unit_of_work() as session:
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast.id, Broadcast.status == RUNNING)
                .values(status=DONE, finished_at=utcnow())
            )
        log.info("broadcast_done", broadcast_id=broadcast.id)
        await self._show(broadcast)

    async def _show(self, broadcast: Broadcast) -> None:
        """Edit the admin's progress message (cosmetic: a failure is logged, never raised)."""
        if broadcast.progress_chat_id is None or self.render is None:
            return
        progress = await self.progress(broadcast.id)
        if progress is None:
            return
        text, markup = self.render(progress)
        try:
            await self.sender.text(
                broadcast.progress_chat_id,
                text,
                markup=markup,
                edit_message_id=broadcast.progress_message_id,
            )
        except (RetryLater, Undeliverable) as error:
            log.info("broadcast_progress_not_shown", error=str(error)[:200])
