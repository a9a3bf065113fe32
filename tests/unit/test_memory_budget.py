"""The byte budget the engine holds downloaded result files under."""

from __future__ import annotations

import asyncio

import pytest

from trt.concurrency import MemoryBudget

MB = 1024 * 1024


async def test_a_small_file_kept_frees_the_rest_for_the_next_download() -> None:
    """Two downloads at the 50 MB cap fill a 100 MB budget; once both turn out to be 1 MB, a
    third may start while the two still wait for their database writes."""
    budget = MemoryBudget(100 * MB)
    async with budget.reserve(50 * MB) as first, budget.reserve(50 * MB) as second:
        third = asyncio.create_task(_hold(budget, 50 * MB))
        await asyncio.sleep(0)
        first.keep(1 * MB)
        await asyncio.sleep(0)
        assert not third.done()  # 49 MB free: not yet
        second.keep(1 * MB)
        await asyncio.wait_for(third, timeout=10)
        assert budget.free == 98 * MB
    assert budget.free == 100 * MB


async def test_waiters_are_served_in_order_and_a_cancelled_one_takes_nothing() -> None:
    budget = MemoryBudget(10)
    served: list[str] = []

    async def wants(name: str, nbytes: int, release: asyncio.Event) -> None:
        async with budget.reserve(nbytes):
            served.append(name)
            await release.wait()

    hold_all, big_done, small_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(wants("holder", 10, hold_all))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(wants("cancelled", 8, asyncio.Event()))
    big = asyncio.create_task(wants("big", 8, big_done))
    small = asyncio.create_task(wants("small", 2, small_done))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    hold_all.set()
    await asyncio.wait_for(holder, timeout=10)
    await asyncio.sleep(0)
    assert served == ["holder", "big", "small"]  # in order; "small" did not jump the queue
    big_done.set()
    small_done.set()
    await asyncio.gather(big, small)
    assert budget.free == 10


async def _hold(budget: MemoryBudget, nbytes: int) -> None:
    async with budget.reserve(nbytes):
        pass
