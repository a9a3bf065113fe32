"""Leadership on SQLite and Postgres: one ACTIVE, handover on release, takeover on expiry, and
the fencing epoch refusing a stale leader's writes; on Postgres, a terminated lock connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import select, update

from tests.conftest import POSTGRES_URL
from trt.db.database import Database
from trt.db.models import FsmState, LeaderLease
from trt.leadership import Leadership, Role, StaleLeaderError, asyncpg_dsn

WAIT_S = 10.0


def leader(database: Database, holder: str, ttl_s: float = 1.0) -> Leadership:
    return Leadership(
        database, name="bot:42", holder=holder, lock_key=42, ttl_s=ttl_s, retry_s=0.05
    )


@contextlib.asynccontextmanager
async def running(*leaders: Leadership) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(one.run(stop)) for one in leaders]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for one in leaders:
            await one.release()


async def until_role(one: Leadership, role: Role) -> None:
    async with asyncio.timeout(WAIT_S):
        while one.role is not role:
            await one.wait_changed()


async def first_active(*leaders: Leadership) -> Leadership:
    async with asyncio.timeout(WAIT_S):
        while True:
            active = [one for one in leaders if one.is_active]
            if active:
                return active[0]
            await asyncio.wait(
                [asyncio.ensure_future(one.wait_changed()) for one in leaders],
                return_when=asyncio.FIRST_COMPLETED,
            )


async def test_exactly_one_is_active_and_release_hands_over(database: Database) -> None:
    a, b = leader(database, "a", ttl_s=5), leader(database, "b", ttl_s=5)
    async with running(a, b):
        first = await first_active(a, b)
        other = b if first is a else a
        assert other.role is Role.PASSIVE
        epoch = first.epoch
        assert epoch is not None
        loop = asyncio.get_running_loop()
        released_at = loop.time()
        await first.release()
        await until_role(other, Role.ACTIVE)
        # Released, not expired: the successor does not wait out the 5 s lease.
        assert loop.time() - released_at < 1.0
        assert other.epoch == epoch + 1
        assert first.role is Role.PASSIVE


async def test_a_stale_leader_is_fenced_after_a_takeover(database: Database) -> None:
    paused = leader(database, "paused")
    stop_paused = asyncio.Event()
    task = asyncio.create_task(paused.run(stop_paused))
    await until_role(paused, Role.ACTIVE)
    # A frozen process: it renews nothing, yet still believes it leads at its epoch.
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if paused._lock_connection is not None:
        paused._lock_connection.remove_termination_listener(paused._on_lock_lost)
        paused._lock_connection.terminate()  # the partition took its session with it
        paused._lock_connection = None
    assert paused.role is Role.ACTIVE
    stale_epoch = paused.epoch
    assert stale_epoch is not None
    async with database.unit_of_work() as session:
        session.add(FsmState(key="fence-target", state="x", data={}))
    b = leader(database, "b")
    async with running(b):
        await until_role(b, Role.ACTIVE)  # after the paused leader's lease lapsed
        assert b.epoch == stale_epoch + 1
        async with database.unit_of_work() as session:
            refused = await session.execute(
                update(FsmState)
                .where(FsmState.key == "fence-target", paused.fence())
                .values(state="written by the stale leader")
            )
            accepted = await session.execute(
                update(FsmState)
                .where(FsmState.key == "fence-target", b.fence())
                .values(state="written by the leader")
            )
        assert (refused.rowcount, accepted.rowcount) == (0, 1)
        with pytest.raises(StaleLeaderError):
            async with database.unit_of_work() as session:
                await paused.check(session)
        assert paused.role is Role.PASSIVE  # the refused check made it step down
        async with database.unit_of_work(readonly=True) as session:
            state = await session.scalar(
                select(FsmState.state).where(FsmState.key == "fence-target")
            )
        assert state == "written by the leader"


async def test_a_failed_heartbeat_makes_the_leader_passive_at_once(database: Database) -> None:
    a = leader(database, "a", ttl_s=1.0)
    async with running(a):
        await until_role(a, Role.ACTIVE)
        async with database.unit_of_work() as session:  # someone else holds the row now
            await session.execute(
                update(LeaderLease)
                .where(LeaderLease.name == "bot:42")
                .values(holder="intruder", epoch=LeaderLease.epoch + 1)
            )
        await until_role(a, Role.PASSIVE)  # the next renewal (≤ TTL / 3) finds it gone
        assert a.epoch is None
        assert a._lock_connection is None  # and the advisory lock went with it


async def test_a_crashed_leader_is_replaced_within_the_lease(database: Database) -> None:
    a, b = leader(database, "a", ttl_s=1.0), leader(database, "b", ttl_s=1.0)
    stop_a = asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await until_role(a, Role.ACTIVE)
    task_a.cancel()  # "kill -9": no release, no renewals
    with contextlib.suppress(asyncio.CancelledError):
        await task_a
    if a._lock_connection is not None:  # a dead process's session ends with it
        a._lock_connection.terminate()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running(b):
        await until_role(b, Role.ACTIVE)
    assert loop.time() - started < 1.0 + 1.0  # TTL plus the retry period, with slack


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])  # advisory locks are Postgres's
async def test_terminating_the_lock_connection_steps_the_leader_down(database: Database) -> None:
    a, b = leader(database, "a", ttl_s=2.0), leader(database, "b", ttl_s=2.0)
    async with running(a):
        await until_role(a, Role.ACTIVE)
        async with running(b):
            assert b.role is Role.PASSIVE
            connection = a._lock_connection
            assert connection is not None
            pid = connection.get_server_pid()
            admin = await asyncpg.connect(asyncpg_dsn(POSTGRES_URL))
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await until_role(a, Role.PASSIVE)  # at once: the termination listener
            async with database.unit_of_work() as session:
                session.add(FsmState(key="after-terminate", state="x", data={}))
            async with database.unit_of_work() as session:
                written = await session.execute(
                    update(FsmState)
                    .where(FsmState.key == "after-terminate", a.fence())
                    .values(state="by the ex-leader")
                )
            assert written.rowcount == 0
            leader_now = await first_active(a, b)
            assert leader_now.epoch is not None
            assert leader_now.epoch >= 2
            assert not (a.is_active and b.is_active)
