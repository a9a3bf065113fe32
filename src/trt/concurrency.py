"""Small asyncio helpers shared by the long-running loops (engine, outbox relay, update inbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


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
