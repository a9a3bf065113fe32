"""Small asyncio helpers shared by the long-running loops (engine, outbox relay, update inbox)."""

from __future__ import annotations

import asyncio
from typing import Any


async def finish(tasks: set[asyncio.Task[Any]], drain_s: float = 0.0) -> None:
    """Let `tasks` run on for up to `drain_s` (a graceful stop), then cancel the rest and wait."""
    if tasks and drain_s > 0:
        await asyncio.wait(set(tasks), timeout=drain_s)
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
