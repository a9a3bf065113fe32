"""The outbox relay: sends what job transactions decided to tell users, at least once.

A row is written in the same transaction as the job transition it reports (progress, result,
failure with the refund). The relay leases due rows, sends them through the one `Sender`, and
marks them sent — for a result, in the same transaction as the job's move to DELIVERED. A
crash between "sent" and "marked" can repeat a message; it can never repeat a charge.

Two decisions (docs/architecture.md): a user who blocked the bot gets no message, and the
result still counts as delivered — it was generated and paid, it stays in the history, and
retrying a block forever helps nobody. A result Telegram refuses for good is sent as links to
the files; only when even that fails is the payment refunded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import ColumnElement, Executable, bindparam, exists, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate

from trt.billing.ledger import Ledger
from trt.concurrency import LeasedLoop
from trt.db.database import Database, Derived, core
from trt.db.models import Job, JobResult, Outbox, utcnow
from trt.faults import failpoint
from trt.jobs.policy import outbox_gives_up, outbox_retry_s
from trt.jobs.state import JobStatus
from trt.jobs.transitions import JobTransitions
from trt.logs import get_logger
from trt.media import result_file_name
from trt.telegram.sender import Markup, OutgoingFile, RetryLater, Sender, Undeliverable, send_kind
from trt.telemetry.events import Event, Reason, telemetry

log = get_logger(__name__)
PACING_SLACK_S = 0.05
CRASH_RETRY_S = 1.0  # a send that crashed (say, its database connection was cut) runs again
RUNNING_STATES = frozenset({JobStatus.SUBMITTED.value, JobStatus.RUNNING.value})

# The statements every message takes, built once (building one costs more than running it;
# a parameter may not be named after a column the statement sets).
MARK_SENT = (
    update(Outbox)
    .where(Outbox.id == bindparam("row_id"), Outbox.sent_at.is_(None))
    .values(
        sent_at=bindparam("marked_at"),
        outcome=bindparam("how"),
        telegram_message_id=bindparam("message_id"),
        lease_until=None,
    )
    .returning(Outbox.id)
)
RESULT_SENT = (
    update(JobResult)
    .where(JobResult.job_id == bindparam("of_job"), JobResult.position == bindparam("at"))
    .values(
        telegram_file_id=bindparam("file_id"),
        sent_as=bindparam("sent_kind"),
        duration_s=bindparam("seconds"),
        data=bindparam("keep"),
    )
)

# The same two as WITH-parts of Postgres's one-statement record of a one-file result
# (`_deliver_result`). Every parameter of that statement is named after no column of the
# tables it updates (the move's are moving, now, to, v_…): SQLAlchemy adds a parameter named
# after a column to an UPDATE's SET, a WITH-part's too.
RESULT_SENT_PART = RESULT_SENT.cte("result_sent")
MARKED_PART = MARK_SENT.cte("marked")


# `recorded_alone`'s statement, built once per move statement (the move's is cached).
_RECORDED: Derived[ReturningUpdate[tuple[str]], Executable] = Derived(
    lambda delivered: delivered.where(exists(select(MARKED_PART))).add_cte(
        RESULT_SENT_PART, MARKED_PART
    )
)


def recorded_alone(
    transitions: JobTransitions, job: Job, file: dict[str, Any], mark: dict[str, Any]
) -> tuple[Executable, dict[str, Any]]:
    """A one-file result's record after its send as one statement for Postgres: the file's
    Telegram id (RESULT_SENT's parameters), the row's mark (MARK_SENT's) and, only if this
    mark was the one, the job delivered."""
    delivered, params = transitions.delivered_statement(job)
    return _RECORDED(delivered), {**params, **file, **mark}


# (lang, job id, model slug): the buttons under a result or a failure notice
Keyboards = Callable[[str, str, str], Markup | None]


class Notices(Protocol):
    """The words of a notice, from its row's data (`trt.bot.notices.Notices`): jobs/ writes
    what happened, the presentation says it."""

    def text(self, lang: str, slug: str, payload: dict[str, Any]) -> str: ...

    def links(self, lang: str, slug: str, size_bytes: int, urls: list[str]) -> str: ...


class OutboxRelay:
    def __init__(
        self,
        database: Database,
        sender: Sender,
        *,
        owner: str,
        notices: Notices,
        result_keyboard: Keyboards,
        failure_keyboard: Keyboards,
        lease_s: float = 60.0,
        idle_poll_s: float = 0.5,
        retry_s: float = 5.0,
        concurrency: int = 8,
        wake: asyncio.Event | None = None,
        fence: Callable[[], ColumnElement[bool]] | None = None,
    ) -> None:
        self.database = database
        self.sender = sender
        self.owner = owner
        self.notices = notices
        self.result_keyboard = result_keyboard
        self.failure_keyboard = failure_keyboard
        self.lease_s = lease_s
        self.idle_poll_s = idle_poll_s
        self.retry_s = retry_s
        self.concurrency = concurrency
        self.wake = wake or asyncio.Event()
        # The leader's fence (trt.leadership) on claims: a stale leader takes no new rows. The
        # writes after a send are compare-and-set on the job and stay unfenced, so a send that
        # went out is always recorded and a refund decided is never lost.
        self.fence = fence or true
        self.transitions = JobTransitions(Ledger(is_sqlite=database.is_sqlite))
        # claimed, as the lease's UPDATE returned them, with their jobs (and a result's files)
        self._leased: dict[int, tuple[Outbox, Job | None, list[JobResult] | None]] = {}
        self.loop: LeasedLoop[int] = LeasedLoop(
            claim=self.claim,
            handle=self.deliver,
            release=lambda ids, after_s: self.release(ids, after_s=after_s),
            # Called in LeasedLoop's except block: the traceback is logged.
            on_crash=lambda row_id: log.exception(  # noqa: LOG004
                "outbox_delivery_crashed", outbox_id=row_id
            ),
            slots=lambda: self.concurrency,
            wake=self.wake,
            idle_s=lambda: self.idle_poll_s,
            crash_retry_s=CRASH_RETRY_S,
            name="outbox",
        )

    async def run(self, stop: asyncio.Event, *, drain_s: float = 0.0) -> None:
        """Send due rows until `stop`; then let sends in progress finish for `drain_s` (a row
        whose send the stop cut is due again at once for the next run, not after the lease)."""
        await self.loop.run(stop, drain_s=drain_s)

    async def run_once(self) -> int:
        """Claim rows for the free sending slots; each slot takes the next row when done."""
        return await self.loop.run_once()

    async def drain(self) -> None:
        await self.loop.drain()

    async def claim(self, limit: int) -> list[int]:
        """Lease up to `limit` due rows and read them with their jobs (one transaction: the
        send that follows starts from what the lease returned, not from another read)."""
        now = utcnow()
        async with self.database.unit_of_work() as session:
            ids = list(
                await session.scalars(
                    select(Outbox.id)
                    .where(
                        Outbox.sent_at.is_(None),
                        Outbox.next_attempt_at <= now,
                        (Outbox.lease_until.is_(None)) | (Outbox.lease_until < now),
                        self.fence(),
                    )
                    .order_by(Outbox.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                return []
            rows = list(
                await session.scalars(
                    update(Outbox)
                    .where(self.database.among(Outbox.id, ids), self.fence())
                    .values(lease_until=now + timedelta(seconds=self.lease_s))
                    .returning(Outbox),
                    execution_options={"synchronize_session": False},
                )
            )
            job_ids = {row.job_id for row in rows}
            jobs = {
                job.id: job
                for job in await session.scalars(
                    select(Job).where(self.database.among(Job.id, job_ids))
                )
            }
            # A result's files too: its send starts from them (no read of its own).
            results: dict[str, list[JobResult]] = {
                row.job_id: [] for row in rows if row.kind == "result"
            }
            if results:
                for result in await session.scalars(
                    select(JobResult)
                    .where(self.database.among(JobResult.job_id, results))
                    .order_by(JobResult.job_id, JobResult.position)
                ):
                    results[result.job_id].append(result)
        for row in rows:
            self._leased[row.id] = (row, jobs.get(row.job_id), results.get(row.job_id))
        return [row.id for row in rows]

    async def reclaim(self) -> int:
        """Free the unsent rows a previous leader held leases on; how many (call on becoming
        the leader, before this relay claims anything: every lease then is someone else's).

        A row whose send the dead leader had begun may go out twice — the relay's promise is
        at least once — but no user waits `lease_s` for a message because its sender died."""
        freed = await self.database.best_effort(
            update(Outbox)
            .where(Outbox.sent_at.is_(None), Outbox.lease_until.is_not(None), self.fence())
            .values(lease_until=None),
            what="outbox_leases_reclaimed",
        )
        if freed:
            log.warning("outbox_leases_reclaimed", count=freed)
        return freed or 0

    async def release(self, row_ids: set[int], *, after_s: float = 0.0) -> None:
        """Shorten the leases of unsent `row_ids` so they are tried again in `after_s`.

        Best effort: with the database still away the lease's expiry is the backstop."""
        if not row_ids:
            return
        for row_id in row_ids:
            self._leased.pop(row_id, None)
        await self.database.best_effort(
            update(Outbox)
            .where(self.database.among(Outbox.id, row_ids), Outbox.sent_at.is_(None))
            .values(lease_until=utcnow() + timedelta(seconds=after_s)),
            what="outbox_lease_release",
        )

    async def deliver(self, row_id: int) -> None:
        leased = self._leased.pop(row_id, None)
        results = None
        if leased is None:  # not claimed by this loop (a test, a tool): read it
            async with self.database.unit_of_work(readonly=True) as session:
                row = await session.get(Outbox, row_id)
                job = None if row is None else await session.get(Job, row.job_id)
        else:
            row, job, results = leased
        if row is None or job is None or row.sent_at is not None:
            return
        with structlog.contextvars.bound_contextvars(cid=row.cid or job.cid, job_id=job.id):
            await self._deliver(row, job, results)

    async def _deliver(self, row: Outbox, job: Job, results: list[JobResult] | None) -> None:
        wait = self.sender.wait_s(row.chat_id)
        if wait > PACING_SLACK_S:
            # The chat's next slot is later: give the row back rather than hold a worker.
            await self._postpone(row, wait)
            return
        try:
            if row.kind == "result":
                await self._deliver_result(row, job, results)
                return
            markup = (
                self.failure_keyboard(job.lang, job.id, job.model_slug)
                if row.kind == "failure"
                else None
            )
            if row.kind == "running" and job.status not in RUNNING_STATES:
                # The job finished before its progress note went out: the result says it all.
                await self._mark(row, "skipped")
                return
            # No chat action before the note: Telegram clears one when a message from the bot
            # arrives, so "sending photo…" would vanish as the note lands (Bot API,
            # sendChatAction).
            sent = await self.sender.text(
                row.chat_id,
                self.notices.text(job.lang, job.model_slug, row.payload),
                markup=markup,
                edit_message_id=row.payload.get("edit_message_id"),
            )
            await self._mark(row, "sent", sent.message_id)
        except RetryLater as later:
            await self._retry(row, job, later)
        except Undeliverable as refused:
            await self._mark(row, "blocked" if refused.blocked else "refused")
            if row.kind == "result":
                # Blocked: delivered (see the module's decisions). Refused even as links: the
                # user cannot get it, so the payment comes back.
                await self._settle_result(job, row, delivered=refused.blocked)
            log.info("outbox_undeliverable", outbox_id=row.id, job_id=job.id, reason=refused.reason)

    async def _deliver_result(self, row: Outbox, job: Job, results: list[JobResult] | None) -> None:
        if results is None:
            async with self.database.unit_of_work(readonly=True) as session:
                results = list(
                    await session.scalars(
                        select(JobResult)
                        .where(JobResult.job_id == job.id)
                        .order_by(JobResult.position)
                    )
                )
        items = [
            OutgoingFile(
                r.data if r.telegram_file_id is None else None,
                r.telegram_file_id,
                r.mime_type,
                result_file_name(job.id, r.position, r.mime_type),
            )
            for r in results
        ]
        caption = self.notices.text(job.lang, job.model_slug, row.payload)
        markup = self.result_keyboard(job.lang, job.id, job.model_slug)
        if any(send_kind(item, job.output_kind) == "link" for item in items):
            await self._send_links(row, job, results, markup)
            return
        try:
            sent = await self.sender.files(row.chat_id, items, job.output_kind, caption, markup)
        except Undeliverable as refused:
            if refused.blocked:
                raise
            log.warning("result_refused_sending_links", job_id=job.id, reason=refused.reason)
            await self._send_links(row, job, results, markup)
            return
        failpoint("outbox.sent")

        durations = sent.durations or (None,) * len(sent.file_ids)
        files = [
            {
                "of_job": job.id,
                "at": result.position,
                "file_id": file_id,
                "sent_kind": kind,
                "seconds": seconds,
                "keep": None if file_id else result.data,
            }
            for result, file_id, kind, seconds in zip(
                results, sent.file_ids, sent.sent_as, durations, strict=False
            )
        ]

        async def record() -> None:
            if not self.database.is_sqlite and len(files) == 1:
                # One statement (docs/performance.md, item 26): the file's Telegram id, the
                # row's mark and, only if this mark was the one, the job delivered.
                await self.database.write(
                    *recorded_alone(
                        self.transitions,
                        job,
                        files[0],
                        self._mark_values(row, "sent", sent.message_id),
                    )
                )
                return
            async with self.database.unit_of_work() as session:
                for file in files:
                    await (await core(session)).execute(RESULT_SENT, file)
                if await self._mark_in(session, row, "sent", sent.message_id):
                    await self._job_delivered(session, job)

        await self.database.retrying(record, what="result_sent")
        log.info("job_delivered", job_id=job.id, message_id=sent.message_id)
        telemetry.emit(Event.DELIVERED, cid=job.cid, job_id=job.id, outcome="sent")

    async def _send_links(
        self, row: Outbox, job: Job, results: list[JobResult], markup: Markup | None
    ) -> None:
        text = self.notices.links(
            job.lang,
            job.model_slug,
            max((r.size_bytes for r in results), default=0),
            [r.url for r in results],
        )
        sent = await self.sender.text(row.chat_id, text, markup=markup)

        async def record() -> None:
            async with self.database.unit_of_work() as session:
                if await self._mark_in(session, row, "link", sent.message_id):
                    await self._job_delivered(session, job)

        await self.database.retrying(record, what="result_sent")
        log.info("job_delivered", job_id=job.id, message_id=sent.message_id, sent_as="link")
        telemetry.emit(Event.DELIVERED, cid=job.cid, job_id=job.id, outcome="link")

    async def _job_delivered(self, session: AsyncSession, job: Job) -> None:
        await self.transitions.delivered(session, job)

    async def _settle_result(self, job: Job, row: Outbox, *, delivered: bool) -> None:
        """A result nobody can receive: delivered (blocked) or refunded (given up)."""
        if delivered:
            async with self.database.unit_of_work() as session:
                await self._job_delivered(session, job)
            telemetry.emit(Event.DELIVERED, cid=job.cid, job_id=job.id, outcome="blocked")
            return
        async with self.database.unit_of_work() as session:
            memo = str(row.payload.get("model") or job.model_slug)
            if not await self.transitions.undeliverable(session, job, memo=memo):
                return  # settled already (a repeat of this decision)
            # The user is told in the same transaction as the refund (a text may get through
            # where the file did not; if not, it is retried like any message).
            notice = {"notice": "undelivered", "refund_kop": job.price_kop}
            session.add(Outbox.for_job(job, "failure", notice))
        telemetry.emit(
            Event.JOB_FAILED,
            cid=job.cid,
            job_id=job.id,
            reason_code=Reason.DOWNSTREAM_ERROR.value,
            reason_detail="the result could not be delivered; refunded",
            amount_kop=job.price_kop,
        )

    async def _retry(self, row: Outbox, job: Job, later: RetryLater) -> None:
        attempts = row.attempts + 1
        if outbox_gives_up(attempts):
            await self._mark(row, "gave_up")
            if row.kind == "result":
                await self._settle_result(job, row, delivered=False)
            log.error("outbox_gave_up", outbox_id=row.id, job_id=job.id, reason=later.reason)
            return
        delay = outbox_retry_s(attempts, later.reason, later.after_s, self.retry_s)
        await self.database.write(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.sent_at.is_(None))
            .values(
                attempts=attempts,
                lease_until=None,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
            )
        )
        log.info("outbox_retry", outbox_id=row.id, after_s=delay, reason=later.reason)

    async def _postpone(self, row: Outbox, delay_s: float) -> None:
        await self.database.write(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.sent_at.is_(None))
            .values(lease_until=None, next_attempt_at=utcnow() + timedelta(seconds=delay_s))
        )

    async def _mark(self, row: Outbox, outcome: str, message_id: int | None = None) -> None:
        async def mark() -> None:
            await self.database.write(MARK_SENT, self._mark_values(row, outcome, message_id))

        # After a send the mark is the only record of it: a cut connection must not turn it
        # into a repeated message.
        await self.database.retrying(mark, what="outbox_mark")

    async def _mark_in(
        self, session: AsyncSession, row: Outbox, outcome: str, message_id: int | None = None
    ) -> bool:
        marked = await (await core(session)).execute(
            MARK_SENT, self._mark_values(row, outcome, message_id)
        )
        return marked.scalar_one_or_none() is not None

    @staticmethod
    def _mark_values(row: Outbox, outcome: str, message_id: int | None) -> dict[str, Any]:
        return {
            "row_id": row.id,
            "marked_at": utcnow(),
            "how": outcome,
            "message_id": message_id,
        }
