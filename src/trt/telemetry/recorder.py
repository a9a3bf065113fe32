"""Recording events to await them: what the sandbox crawl and the end-to-end tests use to know
that an update has been handled, instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
from typing import Any

from trt.telemetry.events import Event

DISPATCHED = (Event.DISPATCH_OK, Event.DISPATCH_ERROR)


class EventRecorder:
    """A telemetry sink that keeps every record and lets a caller await the one it needs."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def sink(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._changed.set()

    async def wait_for(
        self,
        event: Event | tuple[Event, ...],
        *,
        timeout_s: float = 10.0,
        since: int = 0,
        **match: Any,
    ) -> dict[str, Any]:
        """The first record of `event` (or one of several) from index `since` whose fields
        equal `match`; waits for it to be emitted."""
        names = {str(e) for e in (event if isinstance(event, tuple) else (event,))}
        seen = since
        async with asyncio.timeout(timeout_s):
            while True:
                for record in self.records[seen:]:
                    if record.get("event") in names and all(
                        record.get(key) == value for key, value in match.items()
                    ):
                        return record
                seen = max(seen, len(self.records))
                self._changed.clear()
                await self._changed.wait()

    async def handled(
        self, received: Event, *, since: int = 0, timeout_s: float = 10.0, **match: Any
    ) -> dict[str, Any]:
        """Until the update whose `received` event matches has been handled to the end; its
        DISPATCH_OK (or DISPATCH_ERROR) record."""
        first = await self.wait_for(received, since=since, timeout_s=timeout_s, **match)
        return await self.wait_for(DISPATCHED, cid=first["cid"], since=since, timeout_s=timeout_s)
