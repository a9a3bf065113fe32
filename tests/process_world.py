"""A world for tests of real `trt run` processes: the sandbox servers in the test's process, a
database of the requested backend, and the environment that points `trt run` at both."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

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
from trt.jobs.state import JobStatus
from trt.pipeline import UnifiedModelPipeline
from trt.sandbox.demo import Sandbox, sandbox_env, start_sandbox


@dataclass
class World:
    sandbox: Sandbox
    database: Database
    url: str
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The sandbox's environment with fast engine settings; `extra` overrides any of it."""
        fast = {
            "KIE_CREATES_PER_10S": "100000",
            "KIE_RECORDS_PER_S": "100000",
            "HTTP_PORT": "0",
            "JOB_POLL_SCALE": "0.02",
            "JOB_IDLE_POLL_S": "0.05",
            "JOB_LEASE_S": "2",
            "JOB_DEADLINE_MIN_S": "1",
            "JOB_RECONCILE_WINDOW_S": "1",
            "JOB_MAX_ACTIVE_PER_USER": "1000",
            "JOB_MAX_IN_FLIGHT": "100000",
            "FREE_DAILY_QUOTA": "0",  # every generation here is paid, like `create`'s jobs
            "LEADER_LEASE_TTL_S": "3",  # a killed leader's successor waits it out
        }
        return trt_env(**{**sandbox_env(self.sandbox, self.url), **fast, **extra})

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
                await session.execute(
                    select(Job.id, Job.status, Job.hold_id, Job.chat_id, Job.price_kop)
                )
            ).all()
            for job_id, status, hold_id, _chat, price in jobs:
                assert hold_id is not None, f"{job_id} is not a paid job"
                resolution = await session.get(HoldResolution, hold_id)
                assert resolution is not None, f"{job_id} ({status}) left its hold open"
                if status == JobStatus.DELIVERED.value:
                    assert (resolution.outcome, resolution.captured_kop) == ("captured", price)
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
            chat for _id, status, _h, chat, _p in jobs if status == JobStatus.DELIVERED.value
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
