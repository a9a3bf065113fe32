"""One ACTIVE instance per bot: a lease row with a fencing epoch, and on Postgres an advisory lock.

During a rolling deploy two instances overlap. Only the ACTIVE one takes updates, claims jobs
and moves money; the other is PASSIVE and answers users that the service is updating
(shared/reference/reliability.md §4).

- **Lease row** (`leader_lease`, both dialects): acquired by a conditional UPDATE when it has
  expired or is ours, renewed every heartbeat, all on the *database's* clock. Every acquisition
  increments `epoch`; ACTIVE-only writes carry a fence (`Leadership.fence()` in a WHERE clause, or
  `Leadership.check(session)` before an INSERT), so a paused or partitioned ex-leader writes
  nothing once another instance has taken over.
- **Advisory lock** (Postgres): `pg_try_advisory_lock` on a dedicated connection outside the
  pool (a pool would recycle it and silently drop leadership). A terminated lock connection
  makes the instance PASSIVE at once (asyncpg's termination listener), and a heartbeat
  `SELECT 1` with a short timeout catches a connection that hangs. A crashed leader's session
  ends with the process, so its lock frees at once; its lease row expires within the TTL.

Losing either makes the instance PASSIVE *before* anything else runs: `fence()` turns false at
once, and the ACTIVE work is cancelled by its supervisor (`trt.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from trt.db.database import Database, Executor
from trt.db.models import LeaderLease
from trt.errors import TrtError
from trt.logs import get_logger

log = get_logger(__name__)
LOCK_CLASS = 0x747274  # "trt": the first key of the two-int advisory lock; the bot id is second
CONNECT_TIMEOUT_S = 5.0
UNIX_JULIAN_DAY = 2440587.5


class Role(StrEnum):
    ACTIVE = "active"
    PASSIVE = "passive"


class StaleLeaderError(TrtError):
    """An ACTIVE-only write was refused: this instance no longer holds the lease."""


def database_now_s(is_sqlite: bool) -> ColumnElement[Any]:
    """Seconds since the Unix epoch by the database's own clock (one clock for every host)."""
    if is_sqlite:
        return (func.julianday("now") - UNIX_JULIAN_DAY) * 86400.0
    return func.extract("epoch", func.clock_timestamp())


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The plain libpq URL of a SQLAlchemy `postgresql+asyncpg://` URL (password kept)."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


RoleListener = Callable[[Role, int | None], None]


class Leadership:
    """Acquires, keeps and releases the lease; tells listeners when the role changes."""

    def __init__(
        self,
        database: Database,
        *,
        name: str,
        holder: str,
        lock_key: int,
        ttl_s: float = 10.0,
        heartbeat_s: float | None = None,
        retry_s: float = 0.5,
    ) -> None:
        assert ttl_s > 0, ttl_s
        assert retry_s > 0, retry_s
        self.database = database
        self.name = name
        self.holder = holder
        self.lock_key = lock_key
        self.ttl_s = ttl_s
        # Renew well inside the TTL; ping the lock connection at least every 2 s.
        self.heartbeat_s = heartbeat_s or min(2.0, ttl_s / 3)
        self.retry_s = retry_s
        self.role = Role.PASSIVE
        self.epoch: int | None = None
        self.listeners: list[RoleListener] = []
        self._changed = asyncio.Event()
        self.decided = asyncio.Event()  # set after the first attempt: the role is known
        self._lock_connection: asyncpg.Connection | None = None
        self._now = database_now_s(database.is_sqlite)
        self._fence: tuple[int, ColumnElement[bool]] | None = None  # (epoch, its clause)

    # -- what the rest of the application reads ------------------------------------------
    @property
    def is_active(self) -> bool:
        return self.role is Role.ACTIVE

    def fence(self) -> ColumnElement[bool]:
        """A WHERE clause true only while this instance holds the lease at its epoch."""
        if self.role is not Role.ACTIVE or self.epoch is None:
            return false()
        # One clause object per epoch: statements built around it are cached by it
        # (trt.jobs.transitions), and it is not rebuilt for every write.
        if self._fence is None or self._fence[0] != self.epoch:
            self._fence = (self.epoch, exists().where(self._held_by_us(self.epoch)))
        return self._fence[1]

    async def check(self, session: Executor) -> None:
        """Refuse the transaction's writes (raise `StaleLeaderError`) unless we hold the lease.

        On Postgres the lease row is read `FOR SHARE`: a takeover's UPDATE waits for this
        transaction, so the check and the writes after it are one atomic step.
        """
        epoch = self.epoch
        if self.role is not Role.ACTIVE or epoch is None:
            raise StaleLeaderError(f"{self.holder} is {self.role.value}")
        held = await session.scalar(
            select(LeaderLease.epoch).where(self._held_by_us(epoch)).with_for_update(read=True)
        )
        if held is None:
            self._step_down("the lease is no longer ours (fencing check)")
            raise StaleLeaderError(f"{self.holder} lost epoch {epoch}")

    async def wait_changed(self) -> None:
        """Until the next role change (the event is taken now: no change can slip past)."""
        await self._changed.wait()

    # -- the loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Try to become ACTIVE while PASSIVE; heartbeat while ACTIVE; until `stop`."""
        while not stop.is_set():
            try:
                if self.role is Role.PASSIVE:
                    epoch = await self._try_acquire()
                    if epoch is not None:
                        self._become_active(epoch)
                        self.decided.set()
                        continue
                    delay = self.retry_s
                else:
                    delay = self.heartbeat_s
            except Exception as error:  # the database is away: PASSIVE until it answers
                log.warning("leadership_error", error=str(error)[:200])
                if self.role is Role.ACTIVE:
                    self._step_down(f"error: {error.__class__.__name__}")
                delay = self.retry_s
            self.decided.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
            if self.role is Role.ACTIVE and not await self._heartbeat():
                self._step_down("heartbeat failed")

    async def release(self) -> None:
        """Give the lease up now (on shutdown), so the waiting instance takes over at once."""
        epoch = self.epoch
        was_active = self.role is Role.ACTIVE
        self._step_down("released", quiet=True)
        if was_active and epoch is not None:
            with contextlib.suppress(Exception):  # an unreachable database frees it by TTL
                async with self.database.unit_of_work() as session:
                    await session.execute(
                        update(LeaderLease)
                        .where(self._held_by_us(epoch))
                        .values(holder=None, expires_at_s=0.0)
                    )
            log.info("lease_released", holder=self.holder, epoch=epoch)
        await self._close_lock()

    # -- acquiring and keeping -------------------------------------------------------------
    def _held_by_us(self, epoch: int) -> ColumnElement[bool]:
        return and_(
            LeaderLease.name == self.name,
            LeaderLease.holder == self.holder,
            LeaderLease.epoch == epoch,
            LeaderLease.expires_at_s > self._now,
        )

    async def _try_acquire(self) -> int | None:
        if not self.database.is_sqlite and not await self._lock():
            return None
        async with self.database.unit_of_work() as session:
            insert = sqlite_insert if self.database.is_sqlite else pg_insert
            await session.execute(
                insert(LeaderLease)
                .values(name=self.name, holder=None, epoch=0, expires_at_s=0.0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            acquired = await session.execute(
                update(LeaderLease)
                .where(
                    LeaderLease.name == self.name,
                    or_(LeaderLease.expires_at_s < self._now, LeaderLease.holder == self.holder),
                )
                .values(
                    holder=self.holder,
                    epoch=LeaderLease.epoch + 1,
                    expires_at_s=self._now + self.ttl_s,
                )
                .returning(LeaderLease.epoch)
            )
            epoch = acquired.scalar_one_or_none()
        return int(epoch) if epoch is not None else None

    async def _heartbeat(self) -> bool:
        epoch = self.epoch
        if epoch is None:
            return False
        try:
            if self._lock_connection is not None:
                await self._lock_connection.fetchval("SELECT 1", timeout=self.heartbeat_s)
            async with self.database.unit_of_work() as session:
                renewed = await session.execute(
                    update(LeaderLease)
                    .where(self._held_by_us(epoch))
                    .values(expires_at_s=self._now + self.ttl_s)
                    .returning(LeaderLease.epoch)
                )
                return renewed.scalar_one_or_none() is not None
        except Exception as error:
            log.warning("heartbeat_failed", error=str(error)[:200])
            return False

    async def _lock(self) -> bool:
        """Hold the advisory lock on our own connection (Postgres); False while another has it."""
        if self._lock_connection is not None and not self._lock_connection.is_closed():
            return True
        connection = await asyncpg.connect(
            asyncpg_dsn(self.database.url),
            timeout=CONNECT_TIMEOUT_S,
            # Keepalives find a dead peer even while the connection is idle between heartbeats.
            server_settings={
                "application_name": f"trt-leader {self.holder}"[:63],
                "tcp_keepalives_idle": "10",
                "tcp_keepalives_interval": "5",
                "tcp_keepalives_count": "3",
            },
        )
        try:
            got = await connection.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)",
                LOCK_CLASS,
                self.lock_key,
                timeout=CONNECT_TIMEOUT_S,
            )
        except BaseException:
            # A timeout may fire after the server granted the lock: closing the session is
            # the only way to be sure it is free again.
            connection.terminate()
            raise
        if not got:
            await connection.close()
            return False
        connection.add_termination_listener(self._on_lock_lost)
        self._lock_connection = connection
        return True

    def _on_lock_lost(self, _connection: Any) -> None:
        self._lock_connection = None
        if self.role is Role.ACTIVE:
            self._step_down("the advisory lock connection was closed")

    async def _close_lock(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        if connection is None or connection.is_closed():
            return
        connection.remove_termination_listener(self._on_lock_lost)
        try:
            await asyncio.wait_for(connection.close(), CONNECT_TIMEOUT_S)
        except Exception:  # closing the socket frees the lock as surely as unlocking
            connection.terminate()

    # -- role changes ------------------------------------------------------------------------
    def _become_active(self, epoch: int) -> None:
        self.epoch = epoch
        self.role = Role.ACTIVE
        log.info("role_changed", role=self.role.value, epoch=epoch, holder=self.holder)
        self._notify()

    def _step_down(self, reason: str, *, quiet: bool = False) -> None:
        if self.role is Role.PASSIVE:
            return
        epoch, self.epoch = self.epoch, None
        self.role = Role.PASSIVE
        if not quiet:
            log.warning("role_changed", role=self.role.value, epoch=epoch, reason=reason)
        else:
            log.info("role_changed", role=self.role.value, epoch=epoch, reason=reason)
        if self._lock_connection is not None:
            # Our advisory lock must not outlive our leadership: another instance may need it.
            connection, self._lock_connection = self._lock_connection, None
            connection.remove_termination_listener(self._on_lock_lost)
            connection.terminate()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in self.listeners:
            with contextlib.suppress(Exception):  # a listener (metrics) must not stop a step-down
                listener(self.role, self.epoch)
