"""Small asyncio helpers shared by the long-running loops (engine, outbox relay, update inbox)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar


async def finish(tasks: set[asyncio.Task[Any]], drain_s: float = 0.0) -> None:
    """Let `tasks` run on for up to `drain_s` (a graceful stop), then cancel the rest and wait."""
    if tasks and drain_s > 0:
        await asyncio.wait(set(tasks), timeout=drain_s)
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def first(*awaitables: Awaitable[Any], timeout_s: float | None = None) -> None:
    """Until the first of `awaitables` completes (or `timeout_s` passes); the others are
    cancelled."""
    waiters = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class MemoryBudget:
    """Bytes that many tasks may hold in memory at once (result files between their download
    and their write to the database).

    A task reserves the most it may need before it knows what it will get, then keeps only
    what it got (`Reservation.keep`): large bodies still queue for the budget, while a small
    file waiting for its database write does not hold a large one's share. Waiters are served
    in order; a cancelled waiter takes nothing."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.free = total_bytes
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[Reservation]:
        nbytes = min(nbytes, self.total)
        if self._waiters or self.free < nbytes:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((nbytes, granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._give(nbytes)  # granted as it was cancelled: hand it on
                else:
                    self._give(0)  # its place in the queue may have held others back
                raise
        else:
            self.free -= nbytes
        reservation = Reservation(self, nbytes)
        try:
            yield reservation
        finally:
            self._give(reservation.held)
            reservation.held = 0

    def _give(self, nbytes: int) -> None:
        self.free += nbytes
        while self._waiters:
            need, granted = self._waiters[0]
            if granted.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if need > self.free:
                break
            self._waiters.popleft()
            self.free -= need
            granted.set_result(None)


class Reservation:
    """A task's share of a `MemoryBudget`."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: MemoryBudget, held: int) -> None:
        self.budget = budget
        self.held = held

    def keep(self, nbytes: int) -> None:
        """Hold only `nbytes` from now on (the rest goes back to the budget at once)."""
        if 0 <= nbytes < self.held:
            spare, self.held = self.held - nbytes, nbytes
            self.budget._give(spare)


K = TypeVar("K")


class LeasedLoop(Generic[K]):
    """The worker loop of a leased queue (the job engine, the outbox relay): claim due items
    for the free slots, handle each in a task of its own, sleep until woken when nothing is
    due; on stop let the handling in progress finish for `drain_s`, then give what was cut
    short back at once (`release`), so the next run takes it without waiting out its lease.

    A handler that raises does not stop the loop: the item is logged by `on_crash` and given
    back after `crash_retry_s`. The queue itself (what is due, the lease, its release) is the
    caller's: `claim(limit)` and `release(keys, after_s)`.
    """

    def __init__(
        self,
        *,
        claim: Callable[[int], Awaitable[list[K]]],
        handle: Callable[[K], Awaitable[None]],
        release: Callable[[set[K], float], Awaitable[None]],
        on_crash: Callable[[K], None],
        slots: Callable[[], int],
        wake: asyncio.Event,
        idle_s: Callable[[], float],
        crash_retry_s: float = 1.0,
        name: str = "item",
    ) -> None:
        self.claim = claim
        self.handle = handle
        self.release = release
        self.on_crash = on_crash
        self.slots = slots
        self.wake = wake
        self.idle_s = idle_s
        self.crash_retry_s = crash_retry_s
        self.name = name
        self.running: set[asyncio.Task[None]] = set()
        self._cut: set[K] = set()  # items whose handling a stop cancelled

    async def run(
        self,
        stop: asyncio.Event,
        *,
        drain_s: float = 0.0,
        tick: Callable[[], Awaitable[object]] | None = None,
        tick_every_s: float = 60.0,
    ) -> None:
        """Until `stop`; `tick` (a sweeper) runs at the start and every `tick_every_s`."""
        loop = asyncio.get_running_loop()
        next_tick = 0.0
        try:
            while not stop.is_set():
                if tick is not None and loop.time() >= next_tick:
                    await tick()
                    next_tick = loop.time() + tick_every_s
                if await self.run_once():
                    continue
                self.wake.clear()
                await first(self.wake.wait(), stop.wait(), timeout_s=self.idle_s())
        finally:
            await finish(self.running, drain_s)
            cut, self._cut = self._cut, set()
            if cut:
                await self.release(cut, 0.0)

    async def run_once(self) -> int:
        """Claim items for the free slots and start them; how many (1 when all slots are busy
        and one of them has just finished)."""
        free = self.slots() - len(self.running)
        if free <= 0:
            await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
            return 1
        claimed = await self.claim(free)
        for key in claimed:
            task = asyncio.create_task(self._guarded(key), name=f"{self.name}-{key}")
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return len(claimed)

    async def drain(self) -> None:
        """Wait for the handling in progress (tests and benchmarks)."""
        while self.running:
            await asyncio.gather(*list(self.running), return_exceptions=True)

    async def _guarded(self, key: K) -> None:
        try:
            await self.handle(key)
        except asyncio.CancelledError:
            self._cut.add(key)
            raise
        except Exception:
            self.on_crash(key)
            await self.release({key}, self.crash_retry_s)
