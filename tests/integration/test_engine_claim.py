"""The engine's claim: one lease UPDATE that also starts new jobs (docs/performance.md, item 22)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update

from trt.billing.wallets import WalletService
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import Rates
from trt.config import EngineSettings
from trt.db.database import Database
from trt.db.models import Job, utcnow
from trt.jobs.engine import JobEngine
from trt.jobs.service import JobService
from trt.jobs.state import JobStatus
from trt.kie.client import KieClient
from trt.pipeline import UnifiedModelPipeline

PIPELINE = UnifiedModelPipeline(default_catalog(), Rates(Decimal(95), Decimal(2)))
SETTINGS = EngineSettings(max_active_per_user=10, max_in_flight=10)


async def three_confirmed_jobs(database: Database) -> list[str]:
    """Three jobs of one paying user, CONFIRMED, as the confirm button makes them."""
    jobs = JobService(database, PIPELINE, SETTINGS, free_daily_quota=0)
    await WalletService(database).credit(7, 100_000, source="topup:test", idempotency_key="t:7")
    ids = []
    for n in range(3):
        created = await jobs.create(
            user_id=7,
            chat_id=7,
            lang="ru",
            model_slug="nb2",
            params={"prompt": f"fox {n}"},
            draft_key=uuid.uuid4().hex,
        )
        ids.append(created.job.id)
    return ids


def engine_of(database: Database) -> JobEngine:
    kie = KieClient("key", "http://127.0.0.1:9", "http://127.0.0.1:9")  # never called here
    return JobEngine(database, PIPELINE, kie, SETTINGS, owner="me", public_base_url=None)


async def test_a_claim_starts_new_jobs_in_its_lease_and_leaves_the_rest_as_they_were(
    database: Database,
) -> None:
    ids = await three_confirmed_jobs(database)
    fresh, late, lost = ids
    async with database.transaction() as connection:
        # One past its deadline before any worker took it; one a dead worker left in
        # SUBMITTING (its createTask may have reached KIE).
        await connection.execute(
            update(Job).where(Job.id == late).values(deadline_at=utcnow() - timedelta(seconds=1))
        )
        await connection.execute(
            update(Job).where(Job.id == lost).values(status=JobStatus.SUBMITTING.value, attempts=1)
        )
    engine = engine_of(database)

    assert sorted(await engine.claim(10)) == sorted(ids)

    async with database.transaction(readonly=True) as connection:
        rows = {
            row.id: row
            for row in await connection.execute(
                select(Job.id, Job.status, Job.attempts, Job.lease_owner)
            )
        }
    assert (rows[fresh].status, rows[fresh].attempts) == (JobStatus.SUBMITTING.value, 1)
    assert (rows[late].status, rows[late].attempts) == (JobStatus.CONFIRMED.value, 0)
    assert (rows[lost].status, rows[lost].attempts) == (JobStatus.SUBMITTING.value, 1)
    assert {row.lease_owner for row in rows.values()} == {"me"}
    # Only the job this claim moved is submitted by its step; the lost one is reconciled.
    assert engine._started == {fresh}


async def test_jobs_already_at_kie_are_claimed_before_new_ones_due_earlier(
    database: Database,
) -> None:
    """A burst of confirms must not queue the jobs KIE already works on (their callbacks and
    polls) behind its own submits: started jobs first, each group by due time."""
    ids = await three_confirmed_jobs(database)
    new_early, new_late, at_kie = ids
    now = utcnow()
    async with database.transaction() as connection:
        for job_id, due in ((new_early, now - timedelta(seconds=30)), (new_late, now)):
            await connection.execute(update(Job).where(Job.id == job_id).values(next_run_at=due))
        # Its callback came after the first new job was due.
        await connection.execute(
            update(Job)
            .where(Job.id == at_kie)
            .values(
                status=JobStatus.SUBMITTED.value,
                kie_task_id="task-1",
                attempts=1,
                next_run_at=now - timedelta(seconds=10),
            )
        )
    engine = engine_of(database)

    assert await engine.claim(1) == [at_kie]
    assert await engine.claim(1) == [new_early]
    assert await engine.claim(1) == [new_late]
    assert await engine.claim(1) == []
