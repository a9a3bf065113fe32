"""A job's ending: its move, its message and its note's skip land together or not at all (one
statement on Postgres, docs/performance.md item 31)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select, update

from trt.billing.ledger import Ledger, check_invariants
from trt.billing.wallets import WalletService
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import Rates
from trt.config import EngineSettings
from trt.db.database import Database
from trt.db.models import HoldResolution, Job, Outbox
from trt.jobs.service import JobService
from trt.jobs.state import JobStatus
from trt.jobs.transitions import INSERT_OUTBOX, JobTransitions
from trt.pipeline import UnifiedModelPipeline


async def running_job(database: Database) -> Job:
    """A paid job KIE is generating, leased by "me", its "running" note not sent yet."""
    pipeline = UnifiedModelPipeline(default_catalog(), Rates(Decimal(95), Decimal(2)))
    settings = EngineSettings(max_active_per_user=10, max_in_flight=10)
    jobs = JobService(database, pipeline, settings, free_daily_quota=0)
    await WalletService(database).credit(7, 100_000, source="topup:test", idempotency_key="t:7")
    created = await jobs.create(
        user_id=7,
        chat_id=7,
        lang="ru",
        model_slug="nb2",
        params={"prompt": "fox"},
        draft_key=uuid.uuid4().hex,
    )
    async with database.unit_of_work() as session:
        await session.execute(
            update(Job)
            .where(Job.id == created.job.id)
            .values(status=JobStatus.RUNNING.value, lease_owner="me", kie_task_id="t1")
        )
        job = await session.get(Job, created.job.id)
        assert job is not None
        await session.execute(
            INSERT_OUTBOX, Outbox.fields_for_job(job, "running", {"notice": "running"})
        )
    return job


async def outbox(database: Database) -> dict[str, str | None]:
    async with database.transaction(readonly=True) as connection:
        rows = await connection.execute(select(Outbox.kind, Outbox.outcome))
        return {str(row.kind): row.outcome for row in rows}


async def succeeds(database: Database, transitions: JobTransitions, job: Job, owner: str) -> bool:
    """The job's success with its result message, as `owner` would end it."""
    ending = Outbox.fields_for_job(job, "result", {"notice": "result"})
    async with database.unit_of_work() as session:
        return await transitions.succeed(
            session, job, owner=owner, memo="m", ending=ending, result_urls=["u"]
        )


async def test_an_ending_that_is_not_ours_writes_no_message_and_skips_no_note(
    database: Database,
) -> None:
    job = await running_job(database)
    transitions = JobTransitions(Ledger(is_sqlite=database.is_sqlite))
    assert not await succeeds(database, transitions, job, "someone else")
    assert await outbox(database) == {"running": None}
    async with database.unit_of_work(readonly=True) as session:
        stored = await session.get(Job, job.id)
        assert stored is not None
        assert stored.status == JobStatus.RUNNING.value
        assert await session.scalar(select(HoldResolution.hold_id)) is None


async def test_an_ending_moves_writes_its_message_and_skips_the_note_together(
    database: Database,
) -> None:
    job = await running_job(database)
    transitions = JobTransitions(Ledger(is_sqlite=database.is_sqlite))
    assert await succeeds(database, transitions, job, "me")
    assert await outbox(database) == {"running": "skipped", "result": None}
    async with database.unit_of_work(readonly=True) as session:
        stored = await session.get(Job, job.id)
        assert stored is not None
        assert (stored.status, stored.result_urls) == (JobStatus.SUCCEEDED.value, ["u"])
        assert await session.scalar(select(HoldResolution.outcome)) == "captured"
        assert await check_invariants(session) == []
    # A failure's ending of the same job now finds it settled: nothing more is written.
    failure = Outbox.fields_for_job(job, "failure", {"notice": "failed"})
    async with database.unit_of_work() as session:
        assert not await transitions.fail(
            session, job, JobStatus.FAILED, owner="me", code="x", detail="y", ending=failure
        )
    assert await outbox(database) == {"running": "skipped", "result": None}
