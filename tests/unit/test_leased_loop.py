"""The leased-queue worker loop shared by the engine and the relay, on an in-memory queue."""

from __future__ import annotations

import asyncio

from trt.concurrency import LeasedLoop


class Queue:
    def __init__(self, items: list[int]) -> None:
        self.due = list(items)
        self.handled: list[int] = []
        self.released: list[tuple[set[int], float]] = []
        self.crashed: list[int] = []
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def claim(self, limit: int) -> list[int]:
        taken, self.due = self.due[:limit], self.due[limit:]
        return taken

    async def handle(self, item: int) -> None:
        if item == 13:
            raise RuntimeError("a bug in one step")
        if item == 99:
            self.started.set()
            await self.gate.wait()  # never opened: a step a stop cuts short
        self.handled.append(item)

    async def release(self, items: set[int], after_s: float) -> None:
        self.released.append((items, after_s))

    def loop(self, slots: int = 2) -> LeasedLoop[int]:
        return LeasedLoop(
            claim=self.claim,
            handle=self.handle,
            release=self.release,
            on_crash=self.crashed.append,
            slots=lambda: slots,
            wake=asyncio.Event(),
            idle_s=lambda: 30.0,
            crash_retry_s=1.5,
        )


async def test_every_due_item_is_handled_a_crash_is_given_back_and_the_loop_goes_on() -> None:
    queue = Queue([1, 2, 13, 4, 5])
    loop = queue.loop()
    while await loop.run_once():
        pass
    await loop.drain()
    assert sorted(queue.handled) == [1, 2, 4, 5]
    assert queue.crashed == [13]
    assert queue.released == [({13}, 1.5)]


async def test_a_stop_gives_the_cut_item_back_at_once_and_ends_an_idle_wait() -> None:
    queue = Queue([99])
    loop = queue.loop()
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop, drain_s=0.0))
    await asyncio.wait_for(queue.started.wait(), 5)
    stop.set()  # the idle wait is 30 s: the stop must end it, not the timeout
    await asyncio.wait_for(running, 5)
    assert queue.released == [({99}, 0.0)]
    assert queue.handled == []
