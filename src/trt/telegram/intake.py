"""Update intake: Telegram updates are stored before they are confirmed, then handled from there.

aiogram's own polling confirms an update at the next `getUpdates` even while its handler still
runs, so a crash loses it (shared/reference/telegram.md §9). Here the ACTIVE instance writes
each batch to `inbox_updates` (one fenced transaction, a redelivered update id stored once)
before asking for the next batch, and a processor hands stored updates to the dispatcher: one
chat's updates in order, different chats concurrently. A row still unprocessed when its
instance dies is handled by the next ACTIVE instance. An update that crashed its instance
`MAX_ATTEMPTS` times is set aside (logged) instead of crashing every successor.

In webhook mode the HTTP handler stores the update the same way (`UpdateInbox.store`) and
answers Telegram at once; a PASSIVE instance does not store, it lets the dispatcher answer the
user that the service is updating.

The cost per update is kept to a share of a few statements (docs/performance.md):
- **Group commit.** Updates that arrive while a write is in flight (webhook requests, a polling
  batch) go into the next write together: one fenced transaction for all of them, each caller
  answered when it committed.
- **Store and claim in one statement.** While the processor runs, a stored row is written
  already claimed (`attempts = 1`) and handed to its chat's worker from memory; the table is
  scanned only for rows this process did not store (a dead instance's, or stored while no
  processor ran), every `SCAN_S`.
- **Done-marks by group commit**: a handled update's mark is written at once, together with
  the marks of the updates that finished while the previous write was in flight (no deliberate
  delay: a mark held back would let a crash repeat an update whose answer the user has seen).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramConflictError, TelegramNetworkError, TelegramServerError
from aiogram.methods import GetUpdates
from sqlalchemy import ColumnElement, and_, delete, select, true, update

from trt.concurrency import finish, first
from trt.db.database import Database, Executor
from trt.db.models import InboxUpdate, utcnow
from trt.logs import get_logger

log = get_logger(__name__)
POLL_TIMEOUT_S = 25  # Telegram's long poll; the HTTP client waits a little longer
MAX_ATTEMPTS = 3
BATCH = 100
RETENTION = timedelta(hours=48)  # update ids repeat only after a week of silence (ids reset)
PRUNE_EVERY_S = 600.0
SCAN_S = 1.0  # rows this process did not store are looked for this often
POLL_RETRY_S = (0.5, 5.0)

Check = Callable[[Executor], Awaitable[None]]
Fence = Callable[[], ColumnElement[bool]]


def chat_of(payload: dict[str, Any]) -> int | None:
    """The chat (or user) an update belongs to: what its handling must be ordered by."""
    for value in payload.values():
        if not isinstance(value, dict):
            continue
        chat = value.get("chat") or (value.get("message") or {}).get("chat")
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            return int(chat["id"])
        sender = value.get("from") or value.get("user")
        if isinstance(sender, dict) and isinstance(sender.get("id"), int):
            return int(sender["id"])
    return None


class UpdateInbox:
    def __init__(
        self,
        database: Database,
        dispatcher: Dispatcher,
        bot: Bot,
        *,
        check: Check | None = None,
        fence: Fence | None = None,
        concurrency: int = 64,
    ) -> None:
        self.database = database
        self.dispatcher = dispatcher
        self.bot = bot
        self.check = check
        self.fence = fence or true
        self.wake = asyncio.Event()  # a scan is due: rows were stored that nobody claimed
        self._marked = asyncio.Event()  # a handled update waits for its done-mark
        self._limit = asyncio.Semaphore(concurrency)
        self._queued: set[int] = set()  # claimed by this process: in memory until marked done
        self._chats: dict[int | None, deque[tuple[int, dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._done: list[int] = []
        self._pending: list[tuple[list[dict[str, Any]], asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._accepting = False  # the processor runs: stored rows are claimed at once
        # The group commit's one statement, built once; its rows go as parameters (SQLAlchemy
        # sends them as multi-row VALUES, RETURNING the ids that were new).
        self._store = (
            database.insert(InboxUpdate)
            .on_conflict_do_nothing(index_elements=["update_id"])
            .returning(InboxUpdate.update_id)
        )

    async def answer_passive(self, payload: dict[str, Any]) -> None:
        """Handle an update without storing it: a PASSIVE instance's answer ("updating")."""
        await self.dispatcher.feed_raw_update(self.bot, payload)

    # -- intake ------------------------------------------------------------------------------
    async def store(self, updates: list[dict[str, Any]]) -> int:
        """Write updates (fenced) in the next group commit; a known update id is ignored.
        Returns how many were new once they are durable; raises what the write raised."""
        if not updates:
            return 0
        stored: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((updates, stored))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_pending(), name="inbox-writer")
        # Shielded: a caller that goes away (a dropped webhook request) does not undo the
        # write the others in its group wait for.
        return await asyncio.shield(stored)

    async def _write_pending(self) -> None:
        """Write what is pending, one transaction per round, until nothing is."""
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    new = await self._write([u for updates, _ in group for u in updates])
                except Exception as error:
                    for _updates, stored in group:
                        if not stored.done():
                            stored.set_exception(error)
                    continue
                except BaseException:
                    for _updates, stored in group:
                        stored.cancel()
                    raise
                for updates, stored in group:  # a repeat in two requests counts for the first
                    mine = {int(u["update_id"]) for u in updates} & new
                    new -= mine
                    if not stored.done():
                        stored.set_result(len(mine))
        finally:
            self._writer = None

    async def _write(self, updates: list[dict[str, Any]]) -> set[int]:
        unique = {int(u["update_id"]): u for u in updates}  # a repeat within one group too
        claimed = {i for i in unique if i not in self._queued} if self._accepting else set()
        self._queued.update(claimed)  # before the commit: a scan in between cannot take them
        now = utcnow()
        rows = [
            {
                "update_id": update_id,
                "payload": u,
                "chat_id": chat_of(u),
                "received_at": now,
                # Claimed in the same statement: counted before handling, so an update that
                # kills its instance is seen as such by the next one.
                "attempts": 1 if update_id in claimed else 0,
            }
            for update_id, u in sorted(unique.items())
        ]
        try:
            async with self.database.transaction() as connection:
                if self.check is not None:
                    await self.check(connection)
                result = await connection.execute(self._store, rows)
                new = {int(row[0]) for row in result}
        except BaseException:
            self._queued.difference_update(claimed)
            raise
        if len(new) < len(updates):
            log.info("updates_deduplicated", repeated=len(updates) - len(new))
        for update_id, payload in sorted(unique.items()):
            if update_id not in claimed:
                continue
            if update_id in new and self._accepting:
                self._enqueue(update_id, chat_of(payload), payload)
            else:  # a repeat (its row is older), or the processor stopped meanwhile: a scan's
                self._queued.discard(update_id)
        if new and not self._accepting:
            self.wake.set()
        return new

    async def poll(self, stop: asyncio.Event, allowed_updates: list[str]) -> None:
        """getUpdates → store → confirm by the next offset; never drops pending updates."""
        offset: int | None = None
        failures = 0
        log.info("polling_started", allowed_updates=allowed_updates)
        while not stop.is_set():
            try:
                updates = await self.bot(
                    GetUpdates(
                        offset=offset, timeout=POLL_TIMEOUT_S, allowed_updates=allowed_updates
                    ),
                    request_timeout=POLL_TIMEOUT_S + 10,
                )
            except (TelegramNetworkError, TelegramServerError, TelegramConflictError) as error:
                # A conflict is another poller during a handover: it ends when one steps down.
                failures += 1
                delay = min(POLL_RETRY_S[1], POLL_RETRY_S[0] * 2 ** min(failures, 4))
                log.warning("polling_failed", error=str(error)[:200], retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            failures = 0
            if not updates:
                continue
            await self.store(
                [u.model_dump(mode="json", by_alias=True, exclude_none=True) for u in updates]
            )
            offset = updates[-1].update_id + 1
        log.info("polling_stopped")

    # -- processing --------------------------------------------------------------------------
    async def process(self, stop: asyncio.Event, *, drain_s: float = 0.0) -> None:
        """Hand stored updates to the dispatcher until `stop`; then finish (≤ `drain_s`)."""
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        next_scan = loop.time()
        self._accepting = True
        try:
            while not stop.is_set():
                await self._flush_done()
                if loop.time() >= next_scan or self.wake.is_set():
                    self.wake.clear()
                    for update_id, chat_id, payload in await self._due():
                        self._enqueue(update_id, chat_id, payload)
                    next_scan = loop.time() + SCAN_S
                if loop.time() >= next_prune:
                    await self._prune()
                    next_prune = loop.time() + PRUNE_EVERY_S
                self._marked.clear()
                if not self._done:  # idle: until an update is handled or the next scan
                    await first(
                        self._marked.wait(),
                        self.wake.wait(),
                        stop.wait(),
                        timeout_s=max(0.0, next_scan - loop.time()),
                    )
        finally:
            self._accepting = False
            await finish(self._tasks, drain_s)
            with contextlib.suppress(Exception):  # unflushed marks only mean a repeat later
                await self._flush_done()

    async def drain(self) -> None:
        """Wait until every stored update has been handled (tests and benchmarks)."""
        while self._tasks or self._writer is not None:
            if self._writer is not None:
                await asyncio.gather(self._writer, return_exceptions=True)
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._flush_done()

    async def _due(self) -> list[tuple[int, int | None, dict[str, Any]]]:
        """Rows nobody in this process claimed (oldest first), claimed now; poisoned ones set
        aside."""
        async with self.database.transaction() as connection:
            rows = (
                await connection.execute(
                    select(
                        InboxUpdate.update_id,
                        InboxUpdate.chat_id,
                        InboxUpdate.payload,
                        InboxUpdate.attempts,
                    )
                    .where(InboxUpdate.processed_at.is_(None))
                    .order_by(InboxUpdate.update_id)
                    .limit(BATCH + len(self._queued))
                )
            ).all()
            fresh = [r for r in rows if r.update_id not in self._queued][:BATCH]
            poisoned = [r.update_id for r in fresh if r.attempts >= MAX_ATTEMPTS]
            taken = [r for r in fresh if r.attempts < MAX_ATTEMPTS]
            if poisoned:
                log.error("updates_set_aside", update_ids=poisoned, attempts=MAX_ATTEMPTS)
                await self._mark(connection, poisoned)
            if taken:
                # Counted before handling: an update that kills its instance is seen next time.
                await connection.execute(
                    update(InboxUpdate)
                    .where(
                        self.database.among(InboxUpdate.update_id, [r.update_id for r in taken]),
                        self.fence(),
                    )
                    .values(attempts=InboxUpdate.attempts + 1)
                )
        self._queued.update(r.update_id for r in taken)
        return [(r.update_id, r.chat_id, dict(r.payload)) for r in taken]

    def _enqueue(self, update_id: int, chat_id: int | None, payload: dict[str, Any]) -> None:
        """Hand a claimed update (already in `_queued`) to its chat's worker."""
        queue = self._chats.get(chat_id)
        if queue is not None:  # the chat's worker is running; it takes this one in order
            queue.append((update_id, payload))
            return
        self._chats[chat_id] = deque([(update_id, payload)])
        task = asyncio.create_task(self._chat_worker(chat_id), name=f"chat-{chat_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _chat_worker(self, chat_id: int | None) -> None:
        queue = self._chats[chat_id]
        try:
            while queue:
                update_id, payload = queue[0]
                async with self._limit:
                    try:
                        await self.dispatcher.feed_raw_update(self.bot, payload)
                    except Exception:
                        # The error middleware answers users; this is what got past it.
                        log.exception("update_handling_failed", update_id=update_id)
                queue.popleft()
                self._done.append(update_id)
                self._marked.set()
        finally:
            del self._chats[chat_id]

    async def _flush_done(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            async with self.database.transaction() as connection:
                await self._mark(connection, done)
        except BaseException:
            self._done.extend(done)
            raise
        self._queued.difference_update(done)

    async def _mark(self, connection: Executor, update_ids: list[int]) -> None:
        await connection.execute(
            update(InboxUpdate)
            .where(and_(self.database.among(InboxUpdate.update_id, update_ids), self.fence()))
            .values(processed_at=utcnow())
        )

    async def _prune(self) -> None:
        async with self.database.transaction() as connection:
            await connection.execute(
                delete(InboxUpdate).where(
                    InboxUpdate.processed_at.is_not(None),
                    InboxUpdate.received_at < utcnow() - RETENTION,
                )
            )
