"""Real `trt run` processes: kill -9 at each step of a paid generation; three workers on one
Postgres. After each scenario every paid job ends delivered once or refunded once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.processes import TrtProcess, trt_env
from trt.billing.ledger import check_invariants
from trt.billing.wallets import WalletService
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import Rates
from trt.config import EngineSettings
from trt.db import migrate
from trt.db.database import Database
from trt.db.models import HoldResolution, Job
from trt.jobs.service import JobService
from trt.jobs.state import TERMINAL, JobStatus
from trt.pipeline import UnifiedModelPipeline
from trt.sandbox.demo import Sandbox, sandbox_env, start_sandbox
from trt.sandbox.telegram import FloodControl

pytestmark = pytest.mark.slow
PRICE = 760  # nb2 at 1K


@dataclass
class World:
    sandbox: Sandbox
    database: Database
    url: str
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        return trt_env(
            **sandbox_env(self.sandbox, self.url),
            KIE_CREATES_PER_10S="100000",
            KIE_RECORDS_PER_S="100000",
            HTTP_PORT="0",
            JOB_POLL_SCALE="0.02",
            JOB_IDLE_POLL_S="0.05",
            JOB_LEASE_S="2",
            JOB_DEADLINE_MIN_S="1",
            JOB_RECONCILE_WINDOW_S="1",
            JOB_MAX_ACTIVE_PER_USER="1000",
            JOB_MAX_IN_FLIGHT="100000",
            **extra,
        )

    async def start(self, **extra: str) -> TrtProcess:
        process = await TrtProcess.start("run", env=self.env(**extra), cwd=str(self.cwd))
        await process.wait_event("ready")
        return process

    def service(self) -> JobService:
        pipeline = UnifiedModelPipeline(default_catalog(), Rates(Decimal(95), Decimal(2)))
        return JobService(
            self.database,
            pipeline,
            EngineSettings(max_active_per_user=1000, max_in_flight=100000),
            free_daily_quota=0,
        )

    async def fund(self, user_id: int, amount: int) -> None:
        await WalletService(self.database).credit(
            user_id, amount, source="topup:test", idempotency_key=f"fund:{user_id}"
        )
        self.sandbox.telegram.ensure_user(user_id)

    async def create(self, user_id: int, prompt: str) -> str:
        created = await self.service().create(
            user_id=user_id,
            chat_id=user_id,
            lang="ru",
            model_slug="nb2",
            params={"prompt": prompt},
            draft_key=uuid.uuid4().hex,
        )
        return created.job.id

    async def statuses(self) -> dict[str, str]:
        async with self.database.unit_of_work(readonly=True) as session:
            return dict((await session.execute(select(Job.id, Job.status))).all())

    async def until(self, predicate: object, timeout_s: float = 60.0) -> dict[str, str]:
        """Poll job states until `predicate(states)` holds (no event crosses processes)."""
        assert callable(predicate)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            states = await self.statuses()
            if predicate(states):
                return states
            if loop.time() > deadline:
                raise AssertionError(f"timed out; states: {Counter(states.values())}")
            await asyncio.sleep(0.05)

    async def assert_settled_once(self, *, killed_while_sending: bool = False) -> None:
        """Each job delivered with one capture, or ended with one release; the ledger holds.

        Messages are at-least-once: a kill -9 between Telegram's answer and the outbox commit
        repeats that message after the restart (no Telegram API can tell whether it arrived).
        Charges are exactly once in every case.
        """
        async with self.database.unit_of_work(readonly=True) as session:
            assert await check_invariants(session) == []
            jobs = (
                await session.execute(select(Job.id, Job.status, Job.hold_id, Job.chat_id))
            ).all()
            for job_id, status, hold_id, _chat in jobs:
                resolution = await session.get(HoldResolution, hold_id)
                assert resolution is not None, f"{job_id} ({status}) left its hold open"
                if status == JobStatus.DELIVERED.value:
                    assert (resolution.outcome, resolution.captured_kop) == ("captured", PRICE)
                else:
                    assert status in (JobStatus.FAILED.value, JobStatus.TIMED_OUT.value)
                    assert resolution.outcome in ("released", "expired")
        photos = Counter(
            message["chat"]["id"]
            for chat in self.sandbox.telegram.messages.values()
            for message in chat.values()
            if message.get("photo")
        )
        delivered = Counter(
            chat for _id, status, _h, chat in jobs if status == JobStatus.DELIVERED.value
        )
        if killed_while_sending:
            assert set(photos) == set(delivered)
            assert all(photos[chat] >= count for chat, count in delivered.items())
        else:
            assert photos == delivered


@pytest.fixture
async def world(tmp_path: Path, backend: str, empty_database_url: str) -> AsyncIterator[World]:
    sandbox = await start_sandbox(kie_step_s=0.01, kie_generate_s=0.05)
    database = Database(empty_database_url)
    await migrate.upgrade(database)
    try:
        yield World(sandbox, database, empty_database_url, tmp_path)
    finally:
        await database.dispose()
        await sandbox.stop()


@pytest.mark.parametrize(
    ("prompt", "kill_when"),
    [
        ("[timeout:3] a fox", JobStatus.SUBMITTING),  # killed while createTask is in flight
        ("[slow:3] a fox", JobStatus.SUBMITTED),  # killed while KIE generates
        ("a fox", JobStatus.SUCCEEDED),  # killed after capture, before delivery
    ],
)
async def test_kill_9_at_a_step_then_restart(
    world: World, prompt: str, kill_when: JobStatus
) -> None:
    if kill_when is JobStatus.SUCCEEDED:
        # Telegram's flood control holds the result back: the job waits in SUCCEEDED.
        world.sandbox.telegram.flood = FloodControl(per_chat_per_s=0.2)
    await world.fund(101, 100_000)
    job_id = await world.create(101, prompt)
    first = await world.start()
    try:
        reached = {kill_when.value}
        if kill_when is JobStatus.SUBMITTED:
            reached.add(JobStatus.RUNNING.value)
        await world.until(lambda s: s[job_id] in reached)
        first.proc.send_signal(signal.SIGKILL)
        await first.finish()
    finally:
        await first.kill()
    world.sandbox.telegram.flood = None
    second = await world.start()
    try:
        states = await world.until(lambda s: all(v in TERMINAL for v in s.values()))
        await second.signal(signal.SIGTERM)
        assert await second.finish() == 0
    finally:
        await second.kill()
    if kill_when is JobStatus.SUBMITTING:
        assert states[job_id] == JobStatus.TIMED_OUT.value  # never resent, refunded
    else:
        assert states[job_id] == JobStatus.DELIVERED.value
    await world.assert_settled_once()


async def test_kill_9_mid_batch_then_restart(world: World) -> None:
    for user in range(200, 210):
        await world.fund(user, 100_000)
    jobs = [await world.create(user, f"[slow:0.5] job {user}") for user in range(200, 210)]
    first = await world.start()
    try:
        await world.until(lambda s: sum(v == JobStatus.DELIVERED.value for v in s.values()) >= 2)
        first.proc.send_signal(signal.SIGKILL)
        await first.finish()
    finally:
        await first.kill()
    second = await world.start()
    try:
        states = await world.until(lambda s: all(v in TERMINAL for v in s.values()))
        await second.signal(signal.SIGTERM)
        await second.finish()
    finally:
        await second.kill()
    assert all(states[j] == JobStatus.DELIVERED.value for j in jobs)
    await world.assert_settled_once(killed_while_sending=True)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_three_workers_on_one_postgres_process_each_job_once(world: World) -> None:
    users = list(range(1000, 1200))
    for user in users:
        await world.fund(user, 10_000)
    jobs = [await world.create(user, f"job {user}") for user in users]
    workers = [await world.start(BOT_MODE="webhook") for _ in range(3)]
    try:
        states = await world.until(lambda s: all(v in TERMINAL for v in s.values()), timeout_s=120)
        for worker in workers:
            await worker.signal(signal.SIGTERM)
        for worker in workers:
            assert await worker.finish() == 0
    finally:
        for worker in workers:
            await worker.kill()
    assert all(states[j] == JobStatus.DELIVERED.value for j in jobs)
    assert len(world.sandbox.kie.tasks) == 200  # no job was sent to KIE twice
    await world.assert_settled_once()
    created_by = [
        sum(e.get("event") == "KIE_TASK_CREATED" for e in worker.events) for worker in workers
    ]
    assert sum(created_by) == 200
    async with world.database.unit_of_work(readonly=True) as session:
        captured = await session.scalar(
            select(func.count())
            .select_from(HoldResolution)
            .where(HoldResolution.outcome == "captured")
        )
    assert captured == 200
