"""Real `trt run` processes: kill -9 at each step of a paid generation; three workers on one
Postgres. After each scenario every paid job ends delivered once or refunded once."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import func, select

from tests.process_world import World, world
from trt.db.models import HoldResolution
from trt.jobs.state import TERMINAL, JobStatus

pytestmark = pytest.mark.slow
__all__ = ["world"]  # the fixture, shared with the leadership process tests


# Each kill scenario on one backend (make test's time budget): the steps on Postgres (after the
# capture, before delivery: the failpoint chain in test_faults_processes.py), a kill mid-batch
# on SQLite.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("prompt", "kill_when"),
    [
        ("[timeout:3] a fox", JobStatus.SUBMITTING),  # killed while createTask is in flight
        ("[slow:3] a fox", JobStatus.SUBMITTED),  # killed while KIE generates
    ],
)
async def test_kill_9_at_a_step_then_restart(
    world: World, prompt: str, kill_when: JobStatus
) -> None:
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


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
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
async def test_three_instances_on_one_postgres_one_leads_each_job_once(world: World) -> None:
    users = list(range(1000, 1200))
    for user in users:
        await world.fund(user, 10_000)
    jobs = [await world.create(user, f"job {user}") for user in users]
    workers = [
        await world.start(BOT_MODE="webhook", PUBLIC_BASE_URL="http://127.0.0.1:9")
        for _ in range(3)
    ]
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
    assert sorted(created_by)[:2] == [0, 0]  # one ACTIVE instance did all the work
    async with world.database.unit_of_work(readonly=True) as session:
        captured = await session.scalar(
            select(func.count())
            .select_from(HoldResolution)
            .where(HoldResolution.outcome == "captured")
        )
    assert captured == 200
