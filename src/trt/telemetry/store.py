"""Events in the database: a buffered sink, retention, and reading a chain back by cid.

The sink only appends to a bounded buffer (an update never waits for the store, and a full
buffer drops the stored copy and counts it; the log line was written already). A background
writer inserts the buffer every `FLUSH_INTERVAL_S` in one statement, and once more on
shutdown; `/debug` and `/trace` flush before they read.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from trt.db.database import Database
from trt.db.models import EventRow, utcnow
from trt.logs import get_logger

log = get_logger(__name__)
FLUSH_INTERVAL_S = 0.1
MAX_BUFFER = 10_000
_JSON_SAFE = (str, int, float, bool, type(None))


class EventStore:
    """Collects events in memory (the sink must be instant) and writes them in batches."""

    def __init__(self, database: Database, *, retention_days: float = 14.0) -> None:
        self.database = database
        self.retention = timedelta(days=retention_days)
        self._buffer: list[dict[str, Any]] = []
        self.dropped = 0
        self._last_prune = datetime.min.replace(tzinfo=UTC)

    def sink(self, record: dict[str, Any]) -> None:
        if len(self._buffer) >= MAX_BUFFER:
            self.dropped += 1  # the log line still has it; never block the handler
            return
        self._buffer.append(record)

    async def flush(self) -> int:
        batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        rows = [
            {
                "cid": str(r["cid"]) if r.get("cid") else None,
                "user_id": r.get("user_id") if isinstance(r.get("user_id"), int) else None,
                "event": str(r.get("event", "?"))[:32],
                "at": datetime.fromtimestamp(float(r.get("ts", 0)), UTC),
                "fields": {
                    k: v if isinstance(v, _JSON_SAFE) else str(v)
                    for k, v in r.items()
                    if k not in ("event", "ts")
                },
            }
            for r in batch
        ]
        async with self.database.transaction() as connection:
            await connection.execute(insert(EventRow), rows)
            if utcnow() - self._last_prune > timedelta(hours=1):
                self._last_prune = utcnow()
                await connection.execute(
                    delete(EventRow).where(EventRow.at < utcnow() - self.retention)
                )
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception as error:  # telemetry storage must never stop the bot
                log.warning("event_store_flush_failed", error=str(error)[:200])

    async def chain(self, cid: str) -> list[tuple[datetime, str, dict[str, Any]]]:
        await self.flush()
        async with self.database.unit_of_work(readonly=True) as session:
            rows = (
                await session.execute(
                    select(EventRow.at, EventRow.event, EventRow.fields)
                    .where(EventRow.cid == cid)
                    .order_by(EventRow.id)
                )
            ).all()
        return [(at, event, dict(fields)) for at, event, fields in rows]

    async def last_cid(self, user_id: int, *, before_cid: str | None = None) -> str | None:
        """The user's most recent cid other than `before_cid` (the /debug command's own)."""
        await self.flush()
        async with self.database.unit_of_work(readonly=True) as session:
            query = select(EventRow.cid).where(
                EventRow.user_id == user_id, EventRow.cid.is_not(None)
            )
            if before_cid:
                query = query.where(EventRow.cid != before_cid)
            return await session.scalar(query.order_by(EventRow.id.desc()).limit(1))
