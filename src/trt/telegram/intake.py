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
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from trt.concurrency import finish
from trt.db.database import Database
from trt.db.models import InboxUpdate, utcnow
from trt.logs import get_logger

log = get_logger(__name__)
POLL_TIMEOUT_S = 25  # Telegram's long poll; the HTTP client waits a little longer
MAX_ATTEMPTS = 3
BATCH = 100
RETENTION = timedelta(hours=48)  # update ids repeat only after a week of silence (ids reset)
PRUNE_EVERY_S = 600.0
IDLE_POLL_S = 1.0
POLL_RETRY_S = (0.5, 5.0)

Check = Callable[[AsyncSession], Awaitable[None]]
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
        self.wake = asyncio.Event()
        self._limit = asyncio.Semaphore(concurrency)
        self._queued: set[int] = set()
        self._chats: dict[int | None, deque[tuple[int, dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._done: list[int] = []
        self._insert = sqlite_insert if database.is_sqlite else pg_insert

    async def answer_passive(self, payload: dict[str, Any]) -> None:
        """Handle an update without storing it: a PASSIVE instance's answer ("updating")."""
        await self.dispatcher.feed_raw_update(self.bot, payload)

    # -- intake ------------------------------------------------------------------------------
    async def store(self, updates: list[dict[str, Any]]) -> int:
        """Write updates (fenced); a known update id is ignored. Returns how many were new."""
        if not updates:
            return 0
        unique = {int(u["update_id"]): u for u in updates}  # a repeat within one batch too
        rows = [
            {
                "update_id": update_id,
                "payload": u,
                "chat_id": chat_of(u),
                "received_at": utcnow(),
                "attempts": 0,
            }
            for update_id, u in unique.items()
        ]
        async with self.database.unit_of_work() as session:
            if self.check is not None:
                await self.check(session)
            result = await session.execute(
                self._insert(InboxUpdate)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["update_id"])
                .returning(InboxUpdate.update_id)
            )
            stored = len(result.all())
        if stored < len(updates):
            log.info("updates_deduplicated", repeated=len(updates) - stored)
        self.wake.set()
        return stored

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
        try:
            while not stop.is_set():
                self.wake.clear()
                await self._flush_done()
                for update_id, chat_id, payload in await self._due():
                    self._enqueue(update_id, chat_id, payload)
                if loop.time() >= next_prune:
                    await self._prune()
                    next_prune = loop.time() + PRUNE_EVERY_S
                waiters = [asyncio.ensure_future(self.wake.wait())]
                waiters.append(asyncio.ensure_future(stop.wait()))
                await asyncio.wait(waiters, timeout=IDLE_POLL_S, return_when="FIRST_COMPLETED")
                for waiter in waiters:
                    waiter.cancel()
        finally:
            await finish(self._tasks, drain_s)
            with contextlib.suppress(Exception):  # unflushed marks only mean a repeat later
                await self._flush_done()

    async def drain(self) -> None:
        """Wait until every stored update has been handled (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._flush_done()

    async def _due(self) -> list[tuple[int, int | None, dict[str, Any]]]:
        async with self.database.unit_of_work() as session:
            rows = (
                await session.execute(
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
                await self._mark(session, poisoned)
            if taken:
                # Counted before handling: an update that kills its instance is seen next time.
                await session.execute(
                    update(InboxUpdate)
                    .where(InboxUpdate.update_id.in_([r.update_id for r in taken]), self.fence())
                    .values(attempts=InboxUpdate.attempts + 1)
                )
        return [(r.update_id, r.chat_id, dict(r.payload)) for r in taken]

    def _enqueue(self, update_id: int, chat_id: int | None, payload: dict[str, Any]) -> None:
        self._queued.add(update_id)
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
                self.wake.set()
        finally:
            del self._chats[chat_id]

    async def _flush_done(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            async with self.database.unit_of_work() as session:
                await self._mark(session, done)
        except BaseException:
            self._done.extend(done)
            raise
        self._queued.difference_update(done)

    async def _mark(self, session: AsyncSession, update_ids: list[int]) -> None:
        await session.execute(
            update(InboxUpdate)
            .where(and_(InboxUpdate.update_id.in_(update_ids), self.fence()))
            .values(processed_at=utcnow())
        )

    async def _prune(self) -> None:
        async with self.database.unit_of_work() as session:
            await session.execute(
                delete(InboxUpdate).where(
                    InboxUpdate.processed_at.is_not(None),
                    InboxUpdate.received_at < utcnow() - RETENTION,
                )
            )
