"""Creating jobs (the confirm button) and reading them (status, history).

Creating a job is one transaction: the job row, the hold (or a free-quota slot), keyed by the
confirmation's draft key, so a double tap or a redelivered update finds the same job. Handlers
call this and return; the engine does the slow work.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from trt.billing.ledger import Ledger
from trt.catalog.rules import telegram_reference
from trt.catalog.schema import ModelSpec
from trt.config import EngineSettings
from trt.db.database import Database, core
from trt.db.models import FreeUsage, Job, JobResult, User, utcnow
from trt.errors import TrtError
from trt.jobs.state import ACTIVE, JobStatus
from trt.jobs.transitions import JobTransitions, today_utc
from trt.media import result_file_name
from trt.pipeline import UnifiedModelPipeline
from trt.telemetry.events import Event, new_cid, telemetry

_ACTIVE = [s.value for s in ACTIVE]
# What a confirm asks every time, built once (the limits, the draft's job).
LOCK_USER = select(User.id).where(User.id == bindparam("user")).with_for_update()
# The user's active jobs and everyone's, in one read.
INSERT_JOB = insert(Job)
ACTIVE_COUNTS = (
    select(func.count().filter(Job.user_id == bindparam("user")), func.count())
    .select_from(Job)
    .where(Job.status.in_(_ACTIVE))
)
VIEW_COLUMNS = (
    Job.id,
    Job.user_id,
    Job.model_slug,
    Job.status,
    Job.price_kop,
    Job.is_free,
    Job.params,
    Job.output_kind,
    Job.created_at,
    Job.error_code,
    Job.kie_task_id,
    Job.cid,
    Job.prompt_original,
)
BY_DRAFT = select(*VIEW_COLUMNS).where(Job.draft_key == bindparam("draft"))


class JobLimitError(TrtError):
    """Too many active jobs: `scope` is "user" or "global"."""

    def __init__(self, scope: str, count: int) -> None:
        self.scope = scope
        self.count = count
        super().__init__(f"{scope} limit reached ({count} active)")


class JobValidationError(TrtError):
    """The job cannot be made as asked: the pipeline's `messages` (in the user's language,
    from the catalogue's checks), or `disabled` (an operator switched the model off)."""

    def __init__(self, messages: list[str], *, disabled: bool = False) -> None:
        self.messages = messages
        self.disabled = disabled
        super().__init__("; ".join(messages) or "the model is switched off")


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as screens and tests read it (never the ORM row)."""

    id: str
    user_id: int
    model_slug: str
    status: JobStatus
    price_kop: int
    is_free: bool
    params: dict[str, Any]
    output_kind: str
    created_at: datetime
    error_code: str | None
    kie_task_id: str | None
    cid: str | None
    prompt_original: str | None = None  # what the user typed, when the assistant's text went

    @classmethod
    def of(cls, job: Job | Row[Any]) -> JobView:
        """From the ORM row or a row of `VIEW_COLUMNS`."""
        return cls(
            job.id,
            job.user_id,
            job.model_slug,
            JobStatus(job.status),
            job.price_kop,
            job.is_free,
            dict(job.params),
            job.output_kind,
            job.created_at,
            job.error_code,
            job.kie_task_id,
            job.cid,
            job.prompt_original,
        )


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A result file as kept: its bytes or Telegram file id (neither: too big, a link)."""

    data: bytes | None
    file_id: str | None
    mime_type: str
    filename: str
    url: str
    size_bytes: int

    @property
    def sendable(self) -> bool:
        return self.data is not None or self.file_id is not None


@dataclass(frozen=True, slots=True)
class Created:
    job: JobView
    created: bool  # False: this draft key already had a job (a double tap, a replay)


def deadline_for(model: ModelSpec, settings: EngineSettings) -> timedelta:
    """How long a job may take before it is timed out and refunded (catalogue × factor)."""
    seconds = model.typical_duration_s * settings.deadline_factor
    return timedelta(seconds=min(max(seconds, settings.deadline_min_s), settings.deadline_max_s))


class JobService:
    def __init__(
        self,
        database: Database,
        pipeline: UnifiedModelPipeline,
        settings: EngineSettings,
        *,
        free_daily_quota: int,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.wake = wake  # the engine's: a new job is due at once
        self.database = database
        self.pipeline = pipeline
        self.settings = settings
        self.free_daily_quota = free_daily_quota
        self.ledger = Ledger(is_sqlite=database.is_sqlite)
        self.transitions = JobTransitions(self.ledger)

    async def create(
        self,
        *,
        user_id: int,
        chat_id: int,
        lang: str,
        model_slug: str,
        params: dict[str, Any],
        draft_key: str,
        status_message_id: int | None = None,
        cid: str | None = None,
        prompt_original: str | None = None,
    ) -> Created:
        """The job for this draft: created now (hold placed) or found (nothing charged again).

        Raises `InsufficientFundsError`, `JobLimitError` or `JobValidationError`; nothing is
        written then.
        """
        existing = await self.by_draft(draft_key)
        if existing is not None:
            return Created(existing, False)
        cid = cid or new_cid()  # a job made outside an update (admin, tools) is traceable too
        model = self.pipeline.resolve_model(model_slug)
        if not self.pipeline.is_enabled(model):
            raise JobValidationError([], disabled=True)
        complete = self.pipeline.apply_defaults(self.pipeline.get_schema(model.slug), params)
        checked = self.pipeline.validate(model.slug, complete, lang)
        if not checked.ok:
            raise JobValidationError([e.message for e in checked.errors])
        quote = self.pipeline.quote(model.slug, checked.params)
        try:
            async with self.database.unit_of_work() as session:
                await self._check_limits(session, user_id)
                job_id = uuid.uuid4().hex
                is_free = model.free and await self.transitions.take_free_slot(
                    session,
                    user_id,
                    quota=self.free_daily_quota,
                    is_sqlite=self.database.is_sqlite,
                )
                price = 0 if is_free else quote.amount_kop
                deadline = deadline_for(model, self.settings)
                hold_id = await self.transitions.reserve(
                    session,
                    job_id=job_id,
                    user_id=user_id,
                    price_kop=price,
                    # The hold outlives the job's deadline; the sweeper is the backstop.
                    ttl_s=deadline.total_seconds() * 2 + 3600,
                    cid=cid,
                )
                now = utcnow()
                # Core, not the ORM's unit of work: the row is written, never read back here.
                await (await core(session)).execute(
                    INSERT_JOB,
                    {
                        "id": job_id,
                        "draft_key": draft_key,
                        "user_id": user_id,
                        "chat_id": chat_id,
                        "lang": lang,
                        "model_slug": model.slug,
                        "family": model.family.value,
                        "kie_model": model.kie_id,
                        "output_kind": model.output.value,
                        "params": checked.params,
                        "price_kop": price,
                        "is_free": is_free,
                        "free_day": today_utc() if is_free else None,
                        "hold_id": hold_id,
                        "status": JobStatus.CONFIRMED.value,
                        "callback_token": secrets.token_urlsafe(24),
                        "next_run_at": now,
                        "deadline_at": now + deadline,
                        "status_message_id": status_message_id,
                        "cid": cid,
                        "prompt_original": prompt_original,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
        except IntegrityError:
            # The same draft confirmed concurrently: the other transaction won.
            found = await self.by_draft(draft_key)
            if found is None:
                raise
            return Created(found, False)
        telemetry.emit(
            Event.JOB_CREATED,
            cid=cid,
            user_id=user_id,
            job_id=job_id,
            model=model.slug,
            price_kop=price,
            free=is_free,
        )
        if hold_id is not None:
            telemetry.emit(
                Event.HOLD_PLACED, cid=cid, user_id=user_id, job_id=job_id, amount_kop=price
            )
        if self.wake is not None:
            self.wake.set()
        # The row as inserted, from the values written (no read back).
        view = JobView(
            job_id,
            user_id,
            model.slug,
            JobStatus.CONFIRMED,
            price,
            is_free,
            dict(checked.params),
            model.output.value,
            now,
            None,
            None,
            cid,
            prompt_original,
        )
        return Created(view, True)

    async def _check_limits(self, session: AsyncSession, user_id: int) -> None:
        # The user's row is locked first: two confirms of one user on two instances count one
        # after the other, so neither can pass the limit on a count the other is about to
        # change (SQLite has one writer anyway). A user who is new here gets the row first.
        connection = await core(session)
        if await connection.scalar(LOCK_USER, {"user": user_id}) is None:
            await self.ledger.ensure_user(session, user_id)
            await connection.execute(LOCK_USER, {"user": user_id})
        mine, everyone = (await connection.execute(ACTIVE_COUNTS, {"user": user_id})).one()
        if int(mine or 0) >= self.settings.max_active_per_user:
            raise JobLimitError("user", int(mine or 0))
        if int(everyone or 0) >= self.settings.max_in_flight:
            raise JobLimitError("global", int(everyone or 0))

    async def free_left(self, user_id: int) -> int:
        async with self.database.unit_of_work(readonly=True) as session:
            used = await session.scalar(
                select(FreeUsage.used).where(
                    FreeUsage.user_id == user_id, FreeUsage.day == today_utc()
                )
            )
        return max(0, self.free_daily_quota - int(used or 0))

    async def get(self, job_id: str) -> JobView | None:
        async with self.database.unit_of_work(readonly=True) as session:
            job = await session.get(Job, job_id)
            return None if job is None else JobView.of(job)

    async def by_draft(self, draft_key: str) -> JobView | None:
        rows = await self.database.read(BY_DRAFT, {"draft": draft_key})
        return JobView.of(rows[0]) if rows else None

    async def result_files(self, job_id: str) -> list[StoredResult]:
        """A job's results, in order, as they can be sent again."""
        async with self.database.unit_of_work(readonly=True) as session:
            rows = await session.scalars(
                select(JobResult).where(JobResult.job_id == job_id).order_by(JobResult.position)
            )
            return [
                StoredResult(
                    None if r.telegram_file_id else r.data,
                    r.telegram_file_id,
                    r.mime_type,
                    result_file_name(job_id, r.position, r.mime_type),
                    r.url,
                    r.size_bytes,
                )
                for r in rows
            ]

    async def result_inputs(self, job_id: str) -> list[str]:
        """A job's results as inputs for another model: the Telegram file (with its length,
        for video and audio) where it was delivered as one, else KIE's result URL."""
        async with self.database.unit_of_work(readonly=True) as session:
            rows = await session.scalars(
                select(JobResult).where(JobResult.job_id == job_id).order_by(JobResult.position)
            )
            return [
                telegram_reference(r.telegram_file_id, r.duration_s)
                if r.telegram_file_id
                else r.url
                for r in rows
                if r.telegram_file_id or r.url.startswith("https://")
            ]

    async def history(self, user_id: int, *, offset: int = 0, limit: int = 10) -> list[JobView]:
        async with self.database.unit_of_work(readonly=True) as session:
            rows = await session.scalars(
                select(Job)
                .where(Job.user_id == user_id)
                .order_by(Job.created_at.desc(), Job.id)
                .offset(offset)
                .limit(limit)
            )
            return [JobView.of(job) for job in rows]
