"""The one owner of a job's state and of the money a job moves.

Every status change is a compare-and-set through `JobTransitions.move`, checked against
`TRANSITIONS` (a move the state machine does not allow is a bug and raises). The money a job
moves is written here and nowhere else, each time in the same transaction as the move it
belongs to:

- confirm: the hold placed (`reserve`), or a free run taken from today's quota;
- success: the hold captured (`succeed`);
- failure or timeout: the hold released and a free run given back (`fail`);
- a captured price given back, whoever decides it (a result nobody can receive:
  `undeliverable`; an admin: `refund_captured`), under one idempotency key per job
  (`refund_key`), so a job is refunded at most once whichever path comes first.

Writers: the engine (its lease-owned moves), the outbox relay (delivered, undeliverable), the
job service (confirm), admin operations (a refund by hand). KIE's callbacks only record and wake
(`record_callback`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    and_,
    bindparam,
    case,
    delete,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate, Update
from sqlalchemy.sql.elements import ClauseElement

from trt.billing.ledger import REVENUE, Ledger, hold_id_for
from trt.catalog.schema import Family
from trt.db.database import (
    Database,
    Derived,
    constants_in,
    core,
    insert_after,
    row_values,
)
from trt.db.models import (
    FreeUsage,
    HoldResolution,
    Job,
    JobResult,
    KieCallback,
    Outbox,
    utcnow,
)
from trt.jobs.state import ACTIVE, TRANSITIONS, JobStatus, sources_of
from trt.kie.callbacks import callback_task_id
from trt.kie.client import parse_callback
from trt.logs import get_logger
from trt.telemetry.events import Event, telemetry

log = get_logger(__name__)
Fence = Callable[[], ColumnElement[bool]]
FINISHING = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT})
UNDELIVERED = "the result could not be delivered"
# The callback receiver's statements, built once.
CALLBACK_JOB = select(
    Job.id, Job.cid, Job.family, Job.kie_task_id, Job.callback_payload, Job.status
).where(Job.callback_token == bindparam("token"))
INSERT_CALLBACK = insert(KieCallback).values(
    job_id=bindparam("of_job"),
    task_id=bindparam("task"),
    payload=bindparam("body"),
    received_at=bindparam("at"),
)
# The job's columns a callback may set, each bound as v_<column>.
CALLBACK_SETS = ("callback_payload", "next_run_at")
MOVE_SHAPES = 256  # cached move statements (a handful of shapes per epoch in practice)
INSERT_OUTBOX = insert(Outbox)  # with a row's fields as parameters: compiled once
# A job's "running" note no sender has taken yet, settled as skipped: its ending makes it moot
# (the relay would skip it anyway, a send and a transaction later); one being sent goes out.
SKIP_NOTE = (
    update(Outbox)
    .where(
        Outbox.job_id == bindparam("of_job"),
        Outbox.kind == "running",
        Outbox.sent_at.is_(None),
        (Outbox.lease_until.is_(None)) | (Outbox.lease_until < bindparam("now")),
    )
    .values(sent_at=bindparam("now"), outcome="skipped", lease_until=None)
)


def _ending_with(move: ReturningUpdate[tuple[str]]) -> Insert:
    """Postgres: a job's ending move, its message and its note's skip as one statement; the
    message is written and the note skipped only when the job moved, and the message's id
    returned then (docs/performance.md, item 31)."""
    return insert_after(move, Outbox, Outbox.JOB_FIELDS, along=(SKIP_NOTE,)).returning(Outbox.id)


def _is_sql(value: Any) -> bool:
    """A SQL expression (`case(...)`, a column such as `Job.finished_at`), not a value."""
    return isinstance(value, ClauseElement) or hasattr(value, "__clause_element__")


def refund_key(job_id: str) -> str:
    """The one idempotency key of giving a job's captured price back."""
    return f"refund:{job_id}"


def today_utc() -> str:
    """The free quota's day (UTC), as stored."""
    return datetime.now(UTC).strftime("%Y-%m-%d")


class IllegalTransitionError(AssertionError):
    """A move `TRANSITIONS` does not allow: a bug in the caller, never a user's doing."""


class JobTransitions:
    def __init__(self, ledger: Ledger, *, fence: Fence | None = None) -> None:
        self.ledger = ledger
        # The leader's fence (trt.leadership): a stale leader moves nothing it was not
        # already sending (the relay's writes after a send pass `fenced=False`).
        self.fence = fence or true
        self._moves: dict[tuple[Any, ...], ReturningUpdate[tuple[str]]] = {}  # by shape
        self._ending: Derived[ReturningUpdate[tuple[str]], Insert] = Derived(_ending_with)

    # -- state ------------------------------------------------------------------------------
    async def move(
        self,
        session: AsyncSession,
        job: Job,
        to: JobStatus,
        *,
        owner: str | None = None,
        sources: tuple[JobStatus, ...] | None = None,
        keep_lease: bool = False,
        fenced: bool = True,
        where: tuple[ColumnElement[bool], ...] = (),
        **values: Any,
    ) -> bool:
        """Compare-and-set `job` to `to` if it is in one of `sources` (by default every state
        that may move to `to`), still leased by `owner` when given, and the leader's."""
        statement, params = self.move_statement(
            job,
            to,
            owner=owner,
            sources=sources,
            keep_lease=keep_lease,
            fenced=fenced,
            where=where,
            **values,
        )
        moved = await (await core(session)).execute(statement, params)
        return moved.scalar_one_or_none() is not None

    def move_statement(
        self,
        job: Job,
        to: JobStatus,
        *,
        owner: str | None = None,
        sources: tuple[JobStatus, ...] | None = None,
        keep_lease: bool = False,
        fenced: bool = True,
        where: tuple[ColumnElement[bool], ...] = (),
        shape: str | None = None,
        **values: Any,
    ) -> tuple[ReturningUpdate[tuple[str]], dict[str, Any]]:
        """`move`'s compare-and-set as a statement and its parameters, not run: for a caller
        that runs it with more in the same statement (`insert_after`). It returns the job's
        id when the job moved. `shape`: the caller's name for a move whose extra conditions
        and SQL values are the same every time (module constants, their parameters given by
        the caller): built once under that name, as every move without them is."""
        sources = sources or sources_of(to)
        illegal = [s.value for s in sources if to not in TRANSITIONS[s]]
        if illegal:
            raise IllegalTransitionError(f"{illegal} → {to.value} is not a job transition")
        now = utcnow()
        if not keep_lease:
            values.update(lease_owner=None, lease_until=None)
        if to in FINISHING:
            values.setdefault("finished_at", now)
        fence = self.fence() if fenced else None
        # Named after no column: a WITH-part may share the statement (`row_parameters`).
        params: dict[str, Any] = {"moving": job.id, "now": now, "to": to.value}
        if owner is not None:
            params["owner"] = owner
        bound = {f"v_{k}": v for k, v in values.items() if not _is_sql(v)}
        params.update(bound)
        if shape is None and (where or len(bound) < len(values)):
            # Extra conditions or SQL among the values: built for this move alone.
            statement = self._move_statement(sources, owner is not None, fence, values, where)
        else:
            # Built once per shape and reused with new values: building and keying an UPDATE
            # costs more CPU than running it (docs/performance.md). The fence by identity (a
            # clause's == builds SQL); the statement cached keeps it alive, so its id names
            # no other clause while the entry is there.
            key = (shape, sources, owner is not None, id(fence), tuple(sorted(values)))
            cached = self._moves.get(key)
            if cached is None:
                if len(self._moves) >= MOVE_SHAPES:
                    self._moves.clear()  # an epoch change leaves old shapes behind
                cached = self._move_statement(sources, owner is not None, fence, values, where)
                self._moves[key] = cached
            statement = cached
        return statement, params

    @staticmethod
    def _move_statement(
        sources: tuple[JobStatus, ...],
        owned: bool,
        fence: ColumnElement[bool] | None,
        values: dict[str, Any],
        where: tuple[ColumnElement[bool], ...],
    ) -> ReturningUpdate[tuple[str]]:
        """The compare-and-set UPDATE of a move: values bound by name (`v_<column>`), the
        job as `moving`, the lease holder as `owner`, the time as `now`, the status as `to`
        (SQL expressions among `values` are built in)."""
        conditions = [
            Job.id == bindparam("moving"),
            constants_in(Job.status, [s.value for s in sources]),
            *where,
        ]
        if owned:
            conditions.append(Job.lease_owner == bindparam("owner"))
        if fence is not None:
            conditions.append(fence)
        sets: dict[str, Any] = {
            key: value if _is_sql(value) else bindparam(f"v_{key}") for key, value in values.items()
        }
        return (
            update(Job)
            .where(*conditions)
            .values(status=bindparam("to"), updated_at=bindparam("now"), **sets)
            .returning(Job.id)
        )

    @staticmethod
    def start_on_lease(now: datetime) -> dict[str, Any]:
        """The SET that starts, in the engine's lease UPDATE itself, the CONFIRMED jobs among
        those leased whose deadline is ahead (→ SUBMITTING, one attempt more): one statement
        for the claim, none per job. A CONFIRMED job past its deadline stays as it is (its step
        times it out); every other job keeps its state. Each CASE reads the row as it was."""
        assert JobStatus.SUBMITTING in TRANSITIONS[JobStatus.CONFIRMED]
        starting = and_(Job.status == JobStatus.CONFIRMED.value, Job.deadline_at > now)
        return {
            "status": case((starting, JobStatus.SUBMITTING.value), else_=Job.status),
            "attempts": case((starting, Job.attempts + 1), else_=Job.attempts),
            "updated_at": case((starting, now), else_=Job.updated_at),
        }

    # -- money with the move ------------------------------------------------------------------
    async def reserve(
        self,
        session: AsyncSession,
        *,
        job_id: str,
        user_id: int,
        price_kop: int,
        ttl_s: float,
        cid: str | None,
    ) -> str | None:
        """The hold of a job being confirmed (None for a free one); `InsufficientFundsError`."""
        if price_kop <= 0:
            return None
        return await self.ledger.place_hold(
            session,
            user_id=user_id,
            amount_kop=price_kop,
            hold_id=hold_id_for(job_id),
            reason=f"job:{job_id}",
            ttl_s=ttl_s,
            cid=cid,
        )

    async def take_free_slot(
        self, session: AsyncSession, user_id: int, *, quota: int, is_sqlite: bool
    ) -> bool:
        """One free run from today's quota, in one conditional write; False when used up."""
        if quota <= 0:
            return False
        day = today_utc()
        insert = sqlite_insert if is_sqlite else pg_insert
        await (await core(session)).execute(
            insert(FreeUsage)
            .values(user_id=user_id, day=day, used=0)
            .on_conflict_do_nothing(index_elements=[FreeUsage.user_id, FreeUsage.day])
        )
        taken = await (await core(session)).execute(
            update(FreeUsage)
            .where(FreeUsage.user_id == user_id, FreeUsage.day == day, FreeUsage.used < quota)
            .values(used=FreeUsage.used + 1)
            .returning(FreeUsage.used)
        )
        return taken.scalar_one_or_none() is not None

    async def succeed(
        self,
        session: AsyncSession,
        job: Job,
        *,
        owner: str,
        memo: str,
        ending: dict[str, Any],
        **values: Any,
    ) -> bool:
        """→ SUCCEEDED with the hold captured and the ending's message written (`ending`: its
        outbox row's fields, `_end`); False when the job was not ours to move."""
        if not await self._end(session, job, JobStatus.SUCCEEDED, ending, owner=owner, **values):
            return False
        if job.hold_id is not None:
            await self.ledger.capture(session, job.hold_id, memo=memo, cid=job.cid)
        return True

    async def fail(
        self,
        session: AsyncSession,
        job: Job,
        to: JobStatus,
        *,
        owner: str,
        code: str,
        detail: str,
        ending: dict[str, Any],
    ) -> bool:
        """→ FAILED / TIMED_OUT with the hold released (a free run given back), the files an
        earlier attempt stored dropped and the ending's message written (`ending`, `_end`);
        False when the job was not ours to move."""
        assert to in (JobStatus.FAILED, JobStatus.TIMED_OUT), to
        if not await self._end(
            session, job, to, ending, owner=owner, error_code=code[:32], error_message=detail[:512]
        ):
            return False
        if job.hold_id is not None:
            await self.ledger.release(session, job.hold_id, expired=to is JobStatus.TIMED_OUT)
        if job.is_free:
            await self._return_free_slot(session, job)
        await (await core(session)).execute(delete(JobResult).where(JobResult.job_id == job.id))
        return True

    async def _end(
        self,
        session: AsyncSession,
        job: Job,
        to: JobStatus,
        ending: dict[str, Any],
        **move: Any,
    ) -> bool:
        """The ending's move and, only when the job moved, its message to the user (`ending`:
        the outbox row's fields) with the job's "running" note settled as skipped. On Postgres
        one statement (`_ending_with`), on SQLite three in the caller's transaction."""
        connection = await core(session)
        if connection.dialect.name == "sqlite":  # no data-modifying WITH
            if not await self.move(session, job, to, **move):
                return False
            await connection.execute(INSERT_OUTBOX, ending)
            await connection.execute(SKIP_NOTE, {"of_job": job.id, "now": utcnow()})
            return True
        statement, params = self.move_statement(job, to, **move)
        written = await connection.execute(
            self._ending(statement), {**params, **row_values(ending), "of_job": job.id}
        )
        return written.first() is not None

    async def delivered(self, session: AsyncSession, job: Job) -> bool:
        """SUCCEEDED → DELIVERED (after a send: unfenced, the send happened either way)."""
        return await self.move(session, job, JobStatus.DELIVERED, keep_lease=True, fenced=False)

    def delivered_statement(self, job: Job) -> tuple[ReturningUpdate[tuple[str]], dict[str, Any]]:
        """`delivered` as a statement and its parameters, not run (`move_statement`)."""
        return self.move_statement(job, JobStatus.DELIVERED, keep_lease=True, fenced=False)

    async def undeliverable(self, session: AsyncSession, job: Job, *, memo: str) -> bool:
        """SUCCEEDED → FAILED: a result nobody can receive, its captured price given back.
        False when it was settled already (a repeat of this decision)."""
        if not await self.move(
            session,
            job,
            JobStatus.FAILED,
            sources=(JobStatus.SUCCEEDED,),
            keep_lease=True,
            fenced=False,
            finished_at=Job.finished_at,  # it finished when it succeeded
            error_code="delivery",
            error_message=UNDELIVERED,
        ):
            return False
        if job.price_kop > 0:
            await self._refund(session, job, job.price_kop, memo=memo, cid=job.cid)
        return True

    async def refund_captured(
        self, session: AsyncSession, job: Job, *, memo: str, cid: str | None
    ) -> int | None:
        """Give a charged job's captured price back (an admin's decision): the kopecks, 0 when
        it was given back already (by an admin or as an undelivered result), None when the job
        was never charged (free, or its hold was released)."""
        if job.hold_id is None:
            return None
        captured = await session.scalar(
            select(HoldResolution.captured_kop).where(
                HoldResolution.hold_id == job.hold_id, HoldResolution.outcome == "captured"
            )
        )
        if not captured:
            return None
        created = await self._refund(session, job, int(captured), memo=memo, cid=cid)
        return int(captured) if created else 0

    async def expire_orphan_holds(self, session: AsyncSession) -> int:
        """Release holds past their expiry whose job is no longer active (the sweeper's
        backstop: a job's own transitions resolve its hold)."""
        expired = 0
        for hold_id in await self.ledger.open_holds_due(session):
            active = await session.scalar(
                select(Job.id).where(
                    Job.hold_id == hold_id, Job.status.in_([s.value for s in ACTIVE])
                )
            )
            if active is None:
                await self.ledger.release(session, hold_id, expired=True)
                expired += 1
        return expired

    async def _refund(
        self, session: AsyncSession, job: Job, amount_kop: int, *, memo: str, cid: str | None
    ) -> bool:
        revenue = await self.ledger.account(session, REVENUE)
        wallet = await self.ledger.wallet(session, job.user_id)
        posted = await self.ledger.transfer(
            session,
            kind="refund",
            idempotency_key=refund_key(job.id),
            debit=revenue,
            credit=wallet,
            amount_kop=amount_kop,
            memo=memo,
            cid=cid,
        )
        return posted.created

    async def _return_free_slot(self, session: AsyncSession, job: Job) -> None:
        await (await core(session)).execute(
            update(FreeUsage)
            .where(
                FreeUsage.user_id == job.user_id,
                # The slot goes back to the day it was taken (a job failing after midnight
                # must not give the user an extra run today).
                FreeUsage.day == (job.free_day or today_utc()),
                FreeUsage.used > 0,
            )
            .values(used=FreeUsage.used - 1)
        )


async def record_callback(database: Database, token: str, body: dict[str, Any]) -> str | None:
    """KIE's callback recorded and attached to its job, which is made due now (the engine
    confirms the outcome with recordInfo before any money moves); the job's id, or None when
    no job has this token (nothing is stored for it).

    Two round trips on Postgres: the job read on its own, then the callback's row and the
    job's update in one statement (docs/performance.md, item 23). The read takes no lock, as
    it never did: two callbacks of one job race only over which payload the job keeps, and
    the engine confirms either with recordInfo."""
    task_id = callback_task_id(body)[:128] or None
    found = await database.read(CALLBACK_JOB, {"token": token})
    if not found:
        log.warning(
            "kie_callback_orphan",
            reason_code="ACCESS_DENIED",
            reason_detail="unknown token",
            task_id=task_id,
        )
        return None
    job = found[0]
    recorded = {"of_job": job.id, "task": task_id, "body": body, "at": utcnow()}
    if job.kie_task_id and task_id and task_id != job.kie_task_id:
        log.warning("kie_callback_mismatch", job_id=job.id, task_id=task_id)
        await database.write(INSERT_CALLBACK, recorded)
        return str(job.id)
    _task, final = parse_callback(Family(job.family), body)
    keep_earlier = (
        job.callback_payload is not None
        and parse_callback(Family(job.family), job.callback_payload)[1] is not None
        and final is None
    )
    values: dict[str, Any] = {}
    if not keep_earlier:
        values["callback_payload"] = body
    if job.status in {s.value for s in ACTIVE}:
        values["next_run_at"] = utcnow()
    if not values:
        await database.write(INSERT_CALLBACK, recorded)
    elif database.is_sqlite:  # no data-modifying WITH: two statements, one transaction
        async with database.transaction() as connection:
            await connection.execute(INSERT_CALLBACK, recorded)
            await connection.execute(
                _callback_update(tuple(values), with_insert=False),
                {"of_job": job.id, **{f"v_{k}": v for k, v in values.items()}},
            )
    else:
        await database.write(
            _callback_update(tuple(values), with_insert=True),
            {**recorded, **{f"v_{k}": v for k, v in values.items()}},
        )
    telemetry.emit(
        Event.KIE_CALLBACK, cid=job.cid, job_id=job.id, task_id=task_id, final=final is not None
    )
    return str(job.id)


@functools.cache
def _callback_update(columns: tuple[str, ...], *, with_insert: bool) -> Update:
    """The job's update a callback makes (the `columns` of CALLBACK_SETS it sets, bound as
    v_<column>), on Postgres with the callback's INSERT in its WITH: one statement."""
    assert set(columns) <= set(CALLBACK_SETS)
    statement = (
        update(Job)
        .where(Job.id == bindparam("of_job"))
        .values({column: bindparam(f"v_{column}") for column in columns})
    )
    return statement.add_cte(INSERT_CALLBACK.cte("recorded")) if with_insert else statement
