"""The job engine: workers that move jobs from confirmation to a stored result or a refund.

Each worker claims due jobs with a lease (`FOR UPDATE SKIP LOCKED` on Postgres, the database
lock on SQLite), so several processes sharing one database advance each job exactly once; a
crashed worker's jobs are taken over when its lease lapses. Every transition is a
compare-and-set, and the money effect (capture or release) and the user's message (an outbox
row) commit in the same transaction as the state change. Retries of KIE calls live here and
only here, with capped exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    Insert,
    bindparam,
    case,
    delete,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate

from trt.billing.ledger import Ledger
from trt.catalog.rules import is_telegram_file
from trt.catalog.schema import Family
from trt.concurrency import LeasedLoop, MemoryBudget
from trt.config import EngineSettings
from trt.db.database import (
    Database,
    Derived,
    constants_in,
    core,
    insert_after,
    row_values,
)
from trt.db.models import Job, JobResult, KieCallback, Outbox, User, UtcDateTime, utcnow
from trt.errors import MediaFetchError
from trt.faults import failpoint
from trt.i18n import normalize_lang
from trt.jobs.media import TelegramFiles, upload_media
from trt.jobs.policy import backoff_s, poll_delay_s
from trt.jobs.state import ACTIVE, JobStatus
from trt.jobs.transitions import INSERT_OUTBOX, JobTransitions
from trt.kie.client import KieClient, TaskStatus, echoed_callback_url, parse_callback
from trt.kie.errors import KieError, kind_of
from trt.logs import get_logger, scrub
from trt.payments.referrals import ReferralBonus, Referrals
from trt.pipeline import UnifiedModelPipeline
from trt.telemetry.events import Event, Reason, telemetry

log = get_logger(__name__)
Fence = Callable[[], ColumnElement[bool]]
SWEEP_INTERVAL_S = 60.0
CALLBACKS_KEEP_DAYS = 14  # received KIE callbacks are kept this long, for support
CRASH_RETRY_S = 1.0  # a step that crashed (say, its database connection was cut) runs again
DOWNLOAD_ATTEMPTS = 3  # a result whose download fails this often is refunded
# Result files in memory at once, counted at the download cap (the budget's worst case): a file
# holds the size its server announces (the cap when it announces none) while it downloads, and
# its own size until it is stored (`KieClient.download_held`).
PARALLEL_DOWNLOADS = 4
# The "generating…" note is due this long after KIE took the task: a job that ends sooner
# shows its result alone (its ending settles the note as skipped), not an edit the result
# overtakes a moment later.
PROGRESS_NOTE_AFTER_S = 1.0
UNSENT = {"telegram_file_id": None, "sent_as": None, "duration_s": None}  # a fresh result
# Due jobs are claimed started ones first, then new ones, each by due time: a burst of confirms
# no longer queues the callbacks and polls of the jobs already at KIE behind their own submits
# (which made every job wait for the whole burst, sent "generating…" notes a result then had to
# wait a second behind, and kept KIE's finished results waiting; docs/performance.md, item 36).
# A new job still waits only for what is due: a polled job is due again only at its next poll.
# The sort covers the due jobs alone, at most JOB_MAX_IN_FLIGHT (200 by default) active ones.
CLAIM_ORDER = (Job.status == JobStatus.CONFIRMED.value, Job.next_run_at)
# A task id is stored once (never over another's) ...
TASK_UNSET = (Job.kie_task_id.is_(None),)
# ... and the job is due at its first poll, or at once when a fast task's callback came before
# createTask's answer (parameters `first_poll_at` and `due_at`: named after no column).
FIRST_POLL_OR_NOW = case(
    (Job.callback_payload.is_(None), bindparam("first_poll_at", type_=UtcDateTime)),
    else_=bindparam("due_at", type_=UtcDateTime),
)


class JobEngine:
    def __init__(
        self,
        database: Database,
        pipeline: UnifiedModelPipeline,
        kie: KieClient,
        settings: EngineSettings,
        *,
        owner: str,
        public_base_url: str | None,
        wake: asyncio.Event | None = None,
        files: TelegramFiles | None = None,
        fence: Fence | None = None,
        referrals: Referrals | None = None,
        told: asyncio.Event | None = None,
    ) -> None:
        self.database = database
        # Set after a transaction that wrote outbox rows: the relay's wake (it sends them now,
        # not at its next idle poll).
        self.told = told or asyncio.Event()
        self.referrals = referrals  # the inviter's bonus, paid on the invited user's spending
        self.pipeline = pipeline
        self.kie = kie
        self.settings = settings
        self.owner = owner
        self.public_base_url = public_base_url
        self.wake = wake or asyncio.Event()
        self.files = files
        # ACTIVE-only writes carry the leader's fence (trt.leadership); none in tools and tests.
        self.fence: Fence = fence or true
        self.ledger = Ledger(is_sqlite=database.is_sqlite)
        # A result file, stored or replaced (a retried download), built once.
        stored = database.insert(JobResult)
        fields = ("url", "mime_type", "size_bytes", "data")
        self._store_result = stored.on_conflict_do_update(
            index_elements=[JobResult.job_id, JobResult.position],
            set_={**{name: stored.excluded[name] for name in fields}, **UNSENT},
        )
        self.transitions = JobTransitions(self.ledger, fence=self.fence)
        # The task id's move with its progress note (Postgres), built once per move statement.
        self._with_note: Derived[ReturningUpdate[tuple[str]], Insert] = Derived(
            lambda moved: insert_after(moved, Outbox, Outbox.JOB_FIELDS)
        )
        # A failing step must not stop the engine; the job is retried shortly (every
        # transition is idempotent), and if even the release fails, when the lease lapses.
        self.loop: LeasedLoop[str] = LeasedLoop(
            claim=self.claim,
            handle=self.step,
            release=lambda ids, after_s: self.release(ids, after_s=after_s),
            # Called in LeasedLoop's except block: the traceback is logged.
            on_crash=lambda job_id: log.exception("job_step_crashed", job_id=job_id),  # noqa: LOG004
            slots=lambda: self.settings.workers,
            wake=self.wake,
            idle_s=lambda: self.settings.idle_poll_s,
            crash_retry_s=CRASH_RETRY_S,
            name="job",
        )
        self._memory = MemoryBudget(PARALLEL_DOWNLOADS * kie.limits.max_download_bytes)
        self._leased: dict[str, Job] = {}  # claimed, as the lease's UPDATE returned them
        self._started: set[str] = set()  # claimed CONFIRMED and moved to SUBMITTING in the claim

    @property
    def callbacks_enabled(self) -> bool:
        return bool(self.public_base_url)

    def callback_url(self, token: str) -> str | None:
        if not self.public_base_url:
            return None
        return f"{self.public_base_url}/kie/callback/{token}"

    # -- the loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, drain_s: float = 0.0) -> None:
        """Claim and advance due jobs until `stop`; then let steps finish for `drain_s`. Steps
        cut short by the stop leave their jobs free at once for the next run (this process's
        restarted loop, or the next leader), not after the lease."""
        log.info("engine_started", owner=self.owner, workers=self.settings.workers)
        try:
            await self.loop.run(
                stop, drain_s=drain_s, tick=self.sweep, tick_every_s=SWEEP_INTERVAL_S
            )
        finally:
            log.info("engine_stopped", owner=self.owner)

    async def run_once(self) -> int:
        """Claim due jobs (as many as there are free workers) and advance each one step."""
        return await self.loop.run_once()

    async def drain(self) -> None:
        """Wait for the steps in progress (tests and benchmarks)."""
        await self.loop.drain()

    async def release(self, job_ids: set[str], *, after_s: float = 0.0) -> None:
        """Give this worker's leases on `job_ids` back, the jobs due again in `after_s`.

        Best effort: with the database still away the lease's expiry is the backstop."""
        if not job_ids:
            return
        for job_id in job_ids:
            self._leased.pop(job_id, None)
            self._started.discard(job_id)
        await self.database.best_effort(
            update(Job)
            .where(self.database.among(Job.id, job_ids), Job.lease_owner == self.owner)
            .values(
                lease_owner=None,
                lease_until=None,
                next_run_at=utcnow() + timedelta(seconds=after_s),
            ),
            what="job_lease_release",
        )

    async def reclaim(self) -> int:
        """Free the jobs another owner holds leases on; how many (call on becoming the leader).

        Only the leader runs the engine, and a new leader's predecessor is gone or fenced (its
        writes need the epoch it lost), so its leases protect nothing: waiting them out
        (`JOB_LEASE_S`) would only keep a dead instance's users waiting. A job it left in
        SUBMITTING is reconciled, never sent to KIE again."""
        freed = await self.database.best_effort(
            update(Job)
            .where(
                Job.lease_owner.is_not(None),
                Job.lease_owner != self.owner,
                Job.status.in_([s.value for s in ACTIVE]),
                self.fence(),
            )
            .values(lease_owner=None, lease_until=None),
            what="job_leases_reclaimed",
        )
        if freed:
            log.warning("job_leases_reclaimed", count=freed)
        return freed or 0

    async def sweep(self) -> int:
        """Expire holds past their expiry whose job is no longer active (the backstop).

        A job's own transitions resolve its hold; a hold still open after its job ended (or
        without a job) is a bug somewhere, and stopping beats keeping the money reserved.
        """
        expired = 0
        async with self.database.unit_of_work() as session:
            expired = await self.transitions.expire_orphan_holds(session)
        if expired:
            log.warning("holds_expired_by_sweeper", count=expired)
        await self.database.best_effort(
            delete(KieCallback).where(
                KieCallback.received_at < utcnow() - timedelta(days=CALLBACKS_KEEP_DAYS)
            ),
            what="kie_callbacks_prune",
        )
        return expired

    async def claim(self, limit: int) -> list[str]:
        """Lease up to `limit` due jobs to this worker and read them (one transaction: the
        step that follows starts from the row the lease returned, not from another read)."""
        now = utcnow()
        due = [s.value for s in (*ACTIVE,)]
        async with self.database.unit_of_work() as session:
            candidates = (
                select(Job.id, Job.status)
                .where(
                    constants_in(Job.status, due),
                    Job.next_run_at <= now,
                    (Job.lease_until.is_(None)) | (Job.lease_until < now),
                    self.fence(),
                )
                .order_by(*CLAIM_ORDER)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            found = {row.id: row.status for row in await session.execute(candidates)}
            if not found:
                return []
            # A new job moves to SUBMITTING in the lease's own UPDATE (no transaction, nor
            # statement, of its own); its step then calls createTask. Committed before the
            # call, as ever: a worker lost from here on leaves it SUBMITTING, reconciled, never
            # sent twice. The rows are locked since the SELECT (SQLite: the write lock), so the
            # status read there is the one the UPDATE moved from.
            leased = list(
                await session.scalars(
                    update(Job)
                    .where(self.database.among(Job.id, found), self.fence())
                    .values(
                        lease_owner=self.owner,
                        lease_until=now + timedelta(seconds=self.settings.lease_s),
                        **self.transitions.start_on_lease(now),
                    )
                    .returning(Job),
                    execution_options={"synchronize_session": False},
                )
            )
        started = [
            job.id
            for job in leased
            if found[job.id] == JobStatus.CONFIRMED.value
            and job.status == JobStatus.SUBMITTING.value
        ]
        for job in leased:
            self._leased[job.id] = job
        self._started.update(started)
        return [job.id for job in leased]

    # -- one step -----------------------------------------------------------------------------
    async def step(self, job_id: str) -> None:
        """Advance one leased job by what its state calls for."""
        job = self._leased.pop(job_id, None)
        started = job_id in self._started
        self._started.discard(job_id)
        if job is None:  # not claimed by this loop (a test, a tool): read it
            async with self.database.unit_of_work(readonly=True) as session:
                job = await session.get(Job, job_id)
        if job is None or job.lease_owner != self.owner:
            return
        # Every line logged while advancing the job (KIE calls included) carries its cid.
        with structlog.contextvars.bound_contextvars(cid=job.cid, job_id=job.id):
            await self._advance(job, started=started)

    async def _advance(self, job: Job, *, started: bool = False) -> None:
        status = JobStatus(job.status)
        if started or status is JobStatus.CONFIRMED:  # started: the claim moved it to SUBMITTING
            await self._submit(job, started=started)
        elif status is JobStatus.SUBMITTING:
            # Found leased-out in SUBMITTING: a worker died around createTask. The task may
            # exist; never send it twice (README §3.1).
            await self._reconcile_start(job, "worker lost during createTask")
        elif status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            await self._poll(job)
        elif status is JobStatus.RECONCILING:
            await self._reconcile(job)

    async def _move(
        self,
        session: AsyncSession,
        job: Job,
        to: JobStatus,
        *,
        keep_lease: bool = False,
        sources: tuple[JobStatus, ...] | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set `job` to `to` if it is still ours and in an allowed state."""
        return await self.transitions.move(
            session, job, to, owner=self.owner, keep_lease=keep_lease, sources=sources, **values
        )

    async def _later(
        self, job: Job, delay_s: float, *, status: JobStatus | None = None, **values: Any
    ) -> None:
        """Give the job back (lease released) to be picked up again in `delay_s`; with
        `status`, moved there too (a transition)."""
        if status is not None:
            async with self.database.unit_of_work() as session:
                await self._move(
                    session,
                    job,
                    status,
                    next_run_at=utcnow() + timedelta(seconds=delay_s),
                    **values,
                )
            return
        await self.database.write(
            update(Job)
            .where(Job.id == job.id, Job.lease_owner == self.owner, self.fence())
            .values(
                next_run_at=utcnow() + timedelta(seconds=delay_s),
                lease_owner=None,
                lease_until=None,
                updated_at=utcnow(),
                **values,
            )
        )

    # -- CONFIRMED → SUBMITTED ------------------------------------------------------------
    async def _submit(self, job: Job, *, started: bool = False) -> None:
        """createTask for a CONFIRMED job; `started`: the claim moved it to SUBMITTING."""
        if not started:
            if utcnow() >= job.deadline_at:
                await self._fail(
                    job,
                    JobStatus.TIMED_OUT,
                    kind_of("deadline").code,
                    "deadline before submission",
                )
                return
            async with self.database.unit_of_work() as session:
                if not await self._move(
                    session, job, JobStatus.SUBMITTING, keep_lease=True, attempts=job.attempts + 1
                ):
                    return
        try:
            params = await self._resolved_media(job)
        except MediaFetchError as error:
            await self._fail(job, JobStatus.FAILED, error.code, str(error))
            return
        except KieError as error:  # the upload failed before any task existed: retry safely
            await self._on_create_error(
                job, KieError(error.code, error.message, retry_after_s=error.retry_after_s)
            )
            return
        body = self.pipeline.build_kie_payload(
            job.model_slug, params, callback_url=self.callback_url(job.callback_token)
        )
        try:
            task_id = await self.kie.create(Family(job.family), body)
        except KieError as error:
            await self._on_create_error(job, error)
            return
        failpoint("job.created_at_kie")

        # KIE has the task and only this process knows its id: a cut connection must not
        # lose it (the job would end refunded with the work done at KIE).
        async def store_task_id() -> None:
            moved, params = self.transitions.move_statement(
                job,
                JobStatus.SUBMITTED,
                sources=(JobStatus.SUBMITTING, JobStatus.RECONCILING),
                where=TASK_UNSET,
                shape="task_id",
                kie_task_id=task_id,
                next_run_at=FIRST_POLL_OR_NOW,
            )
            now = utcnow()
            params.update(first_poll_at=now + timedelta(seconds=self._first_poll_s()), due_at=now)
            # The progress note goes with the move, only if the job moved.
            note = self._outbox_fields(
                job, "running", {"notice": "running"}, after_s=PROGRESS_NOTE_AFTER_S
            )
            if not self.database.is_sqlite:  # one statement (docs/performance.md, item 25)
                await self.database.write(self._with_note(moved), {**params, **row_values(note)})
                return
            async with self.database.transaction() as connection:
                if (await connection.execute(moved, params)).first() is not None:
                    await connection.execute(INSERT_OUTBOX, note)

        await self.database.retrying(store_task_id, what="store_task_id")
        self.told.set()
        telemetry.emit(
            Event.KIE_TASK_CREATED,
            cid=job.cid,
            job_id=job.id,
            task_id=task_id,
            model=job.kie_model,
            owner=self.owner,
        )

    async def _resolved_media(self, job: Job) -> dict[str, Any]:
        """The job's params with users' Telegram uploads moved to KIE (kept on the job)."""
        params = dict(job.params)
        model = self.pipeline.catalog.get(job.model_slug)
        if model is None or not any(
            is_telegram_file(v)
            for value in params.values()
            for v in (value if isinstance(value, list) else [value])
        ):
            return params
        if self.files is None:
            raise MediaFetchError("no Telegram file access configured")
        resolved = await upload_media(model, params, self.files, self.kie, job.id)
        await self.database.write(update(Job).where(Job.id == job.id).values(params=resolved))
        return resolved

    def _first_poll_s(self) -> float:
        # With callbacks, polling is only the safety net (README §5).
        return (15.0 if self.callbacks_enabled else 5.0) * self.settings.poll_scale

    def _kie_error(self, job: Job, error: KieError) -> None:
        telemetry.emit(
            Event.KIE_ERROR,
            cid=job.cid,
            job_id=job.id,
            code=error.code,
            reason_detail=error.message[:200],
        )

    async def _on_create_error(self, job: Job, error: KieError) -> None:
        self._kie_error(job, error)
        log.warning(
            "kie_create_failed",
            job_id=job.id,
            code=error.code,
            message=error.message,
            outcome_unknown=error.outcome_unknown,
        )
        if error.outcome_unknown:
            await self._reconcile_start(job, f"{error.code}: {error.message}")
        elif error.retryable and utcnow() < job.deadline_at:
            # Nothing was created (429, 455, refused connection): sending again is safe.
            await self._later(
                job, backoff_s(job.attempts, error.retry_after_s), status=JobStatus.CONFIRMED
            )
        else:
            await self._fail(job, JobStatus.FAILED, error.code, error.message)

    # -- RECONCILING: a create whose outcome is unknown ------------------------------------
    async def _reconcile_start(self, job: Job, why: str) -> None:
        if not self.callbacks_enabled:
            # Without callbacks nothing can ever name the task (KIE cannot be asked for it by
            # our reference): waiting out a window would only keep the user's money held.
            await self._fail(
                job, JobStatus.TIMED_OUT, "unconfirmed", f"{why}; no callback to adopt it from"
            )
            return
        until = min(job.deadline_at, utcnow() + timedelta(seconds=self.settings.reconcile_window_s))
        async with self.database.unit_of_work() as session:
            moved = await self._move(
                session,
                job,
                JobStatus.RECONCILING,
                sources=(JobStatus.SUBMITTING,),
                # A callback already on the job (it came while the job's worker was away)
                # resolves it now, not at the end of the window.
                next_run_at=case((Job.callback_payload.is_(None), until), else_=utcnow()),
                reconcile_until=until,
                error_message=scrub(why)[:512],
            )
        if moved:
            log.warning("job_reconciling", job_id=job.id, reason=why, until=until.isoformat())

    async def _reconcile(self, job: Job) -> None:
        task_id = self._callback_task_id(job)
        ours = await self._is_our_task(job, task_id) if task_id else False
        if ours is None and utcnow() < job.deadline_at:
            await self._later(job, backoff_s(job.attempts))  # KIE did not answer: ask again
            return
        if ours:
            async with self.database.unit_of_work() as session:
                await self._move(
                    session, job, JobStatus.SUBMITTED, kie_task_id=task_id, next_run_at=utcnow()
                )
            log.info("job_adopted_task", job_id=job.id, task_id=task_id)
            return
        until = job.reconcile_until or job.deadline_at
        if utcnow() < until:
            await self._later(job, (until - utcnow()).total_seconds())
            return
        # No callback within the window: the user pays nothing. A task that finishes later is
        # an orphan (KIE bills us; the callback receiver logs it).
        await self._fail(
            job, JobStatus.TIMED_OUT, "deadline", "no callback for a create with an unknown outcome"
        )

    def _callback_task_id(self, job: Job) -> str | None:
        if not job.callback_payload:
            return None
        return parse_callback(Family(job.family), job.callback_payload)[0]

    async def _is_our_task(self, job: Job, task_id: str) -> bool | None:
        """Whether KIE knows `task_id` as this job's task (asked, not taken from a callback);
        None when KIE could not be asked now.

        KIE echoes the createTask body in the record: its `callBackUrl` carries the job's
        token, so a task id from a forged or misrouted callback is never adopted."""
        try:
            status = await self.kie.status(Family(job.family), task_id)
        except KieError as error:
            log.warning("kie_adoption_unconfirmed", task_id=task_id, code=error.code)
            return None if error.retryable else False
        echoed = echoed_callback_url(status.raw)
        if echoed is not None and echoed != self.callback_url(job.callback_token):
            log.warning("kie_callback_foreign_task", task_id=task_id)
            return False
        return True

    # -- SUBMITTED / RUNNING: waiting for the result --------------------------------------
    async def _poll(self, job: Job) -> None:
        # A callback only made the job due: its outcome and result URLs are confirmed with
        # recordInfo before any money moves (KIE's own advice; the signature covers the task
        # id and the time, not the body).
        assert job.kie_task_id is not None
        try:
            telemetry.emit(Event.KIE_POLL, cid=job.cid, job_id=job.id, task_id=job.kie_task_id)
            status = await self.kie.status(Family(job.family), job.kie_task_id)
        except KieError as error:
            log.warning("kie_poll_failed", job_id=job.id, code=error.code)
            self._kie_error(job, error)
            if utcnow() >= job.deadline_at:
                await self._fail(job, JobStatus.TIMED_OUT, "deadline", error.message)
            else:
                await self._later(job, backoff_s(job.attempts, error.retry_after_s))
            return
        if status.state == "succeeded":
            await self._succeed(job, status)
        elif status.state == "failed":
            await self._fail(
                job, JobStatus.FAILED, status.error_code or "501", status.error_message or ""
            )
        elif utcnow() >= job.deadline_at:
            # That status query was the final check (README §5).
            await self._fail(job, JobStatus.TIMED_OUT, "deadline", "still running at deadline")
        else:
            elapsed = (utcnow() - job.created_at).total_seconds()
            delay = poll_delay_s(elapsed, self.settings.poll_scale)
            if self.callbacks_enabled:
                delay *= 3
            if job.status == JobStatus.SUBMITTED.value and status.state == "running":
                async with self.database.unit_of_work() as session:
                    await self._move(
                        session,
                        job,
                        JobStatus.RUNNING,
                        next_run_at=utcnow() + timedelta(seconds=delay),
                    )
            else:
                await self._later(job, delay)

    async def _store_results(self, job: Job, urls: tuple[str, ...]) -> int:
        """Download each result and store it on its own (one file in memory at a time)."""
        for position, url in enumerate(urls):
            # The file's bytes held in the budget until its row is written.
            async with self.kie.download_held(url, self._memory) as item:
                # A retried download replaces what an earlier attempt stored.
                await self.database.write(
                    self._store_result,
                    {
                        "job_id": job.id,
                        "position": position,
                        "url": item.url,
                        "mime_type": item.mime_type,
                        "size_bytes": item.size_bytes,
                        "data": item.data,  # None: too big to send, it goes as a link
                    },
                )
        return len(urls)

    async def _succeed(self, job: Job, status: TaskStatus) -> None:
        if not status.result_urls:
            await self._fail(job, JobStatus.FAILED, "501", "success without results")
            return
        try:
            files = await self._store_results(job, status.result_urls)
        except KieError as error:
            # A cut or failed download is tried again; only then refunded, never captured.
            attempts = job.download_attempts + 1
            log.warning("result_download_failed", attempt=attempts, reason=error.message)
            if attempts < DOWNLOAD_ATTEMPTS and utcnow() < job.deadline_at:
                delay = backoff_s(attempts) * self.settings.poll_scale
                await self._later(job, delay, download_attempts=attempts)
            else:
                await self._fail(job, JobStatus.FAILED, "download", error.message)
            return
        bonus = None
        # Data, not words: bot/notices.py says it in the user's language at send time.
        notice = {"notice": "result", "free": job.is_free, "model": self._title(job)}
        async with self.database.unit_of_work() as session:
            if not await self.transitions.succeed(
                session,
                job,
                owner=self.owner,
                memo=self._title(job),
                ending=self._outbox_fields(job, "result", notice),
                result_urls=list(status.result_urls),
            ):
                return
            if job.hold_id is not None:
                bonus = await self._referral_bonus(session, job)
            failpoint("job.captured")
        self.told.set()
        if bonus is not None:
            telemetry.emit(
                Event.BONUS_CREDITED,
                cid=job.cid,
                user_id=bonus.inviter_id,
                kind="referral",
                amount_kop=bonus.amount_kop,
            )
        telemetry.emit(
            Event.JOB_SUCCEEDED,
            cid=job.cid,
            job_id=job.id,
            task_id=job.kie_task_id,
            files=files,
            price_kop=job.price_kop,
        )
        if job.hold_id is not None:
            telemetry.emit(
                Event.HOLD_CAPTURED, cid=job.cid, job_id=job.id, amount_kop=job.price_kop
            )

    # -- endings with a refund --------------------------------------------------------------
    async def _fail(self, job: Job, to: JobStatus, code: str, detail: str) -> None:
        kind = kind_of(code)
        detail = scrub(detail)  # stored on the job and shown in /debug: no secret in it
        notice = {
            "notice": "failed",
            "reason": kind.code,  # kie_reasons.<code> in the locales
            "refund_kop": job.price_kop,
            "free": job.is_free,
        }
        async with self.database.unit_of_work() as session:
            if not await self.transitions.fail(
                session,
                job,
                to,
                owner=self.owner,
                code=code,
                detail=detail,
                ending=self._outbox_fields(job, "failure", notice),
            ):
                return
        self.told.set()
        failed = to is JobStatus.FAILED
        telemetry.emit(
            Event.JOB_FAILED if failed else Event.JOB_TIMED_OUT,
            cid=job.cid,
            job_id=job.id,
            reason_code=(Reason.DOWNSTREAM_ERROR if failed else Reason.DOWNSTREAM_TIMEOUT).value,
            reason_detail=f"{code}: {detail}"[:300],
            refunded_kop=job.price_kop,
        )
        if job.hold_id is not None:
            telemetry.emit(
                Event.HOLD_RELEASED, cid=job.cid, job_id=job.id, amount_kop=job.price_kop
            )

    async def _referral_bonus(self, session: AsyncSession, job: Job) -> ReferralBonus | None:
        """This capture may be what qualifies the user's inviter for the bonus: paid in the
        same transaction, the inviter told through the outbox."""
        if self.referrals is None:
            return None
        bonus = await self.referrals.on_spend(session, job.user_id, job.cid)
        if bonus is None:
            return None
        language = await session.scalar(select(User.language).where(User.id == bonus.inviter_id))
        notice = {
            "notice": "referral_bonus",
            "amount_kop": bonus.amount_kop,
            "lang": normalize_lang(language),  # the inviter's, not the job's
        }
        await (await core(session)).execute(
            INSERT_OUTBOX, Outbox.fields_for_job(job, "referral", notice, chat_id=bonus.inviter_id)
        )
        return bonus

    # -- helpers ------------------------------------------------------------------------------
    def _title(self, job: Job) -> str:
        model = self.pipeline.catalog.get(job.model_slug)
        return model.title.get(job.lang) if model else job.model_slug

    @staticmethod
    def _outbox_fields(
        job: Job, kind: str, payload: dict[str, Any], *, after_s: float = 0.0
    ) -> dict[str, Any]:
        """A message of the job's to its chat, as an outbox row's columns."""
        payload = {**payload, "edit_message_id": job.status_message_id}
        return Outbox.fields_for_job(job, kind, payload, after_s=after_s)
