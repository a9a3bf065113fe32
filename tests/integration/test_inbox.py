"""The update inbox on SQLite and Postgres: a repeated update is stored once, each chat's updates
are handled in order, every handled update is marked, and a fenced-out instance stores nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import false, func, select

from trt.db.database import Database
from trt.db.models import InboxUpdate
from trt.leadership import StaleLeaderError
from trt.telegram import intake
from trt.telegram.intake import UpdateInbox, chat_of


def message(update_id: int, chat_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "A"},
            "text": f"#{update_id}",
        },
    }


class RecordingDispatcher:
    """Stands in for aiogram's dispatcher: records what it was fed, in order."""

    def __init__(self, expected: int) -> None:
        self.seen: list[int] = []
        self.expected = expected
        self.all_seen = asyncio.Event()

    async def feed_raw_update(self, _bot: object, payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # let other chats interleave
        self.seen.append(int(payload["update_id"]))
        if len(self.seen) >= self.expected:
            self.all_seen.set()


async def test_repeats_are_stored_once_and_chats_handled_in_order(database: Database) -> None:
    dispatcher = RecordingDispatcher(expected=4)
    inbox = UpdateInbox(database, dispatcher, bot=None)  # type: ignore[arg-type]
    first = [message(10, 1), message(11, 1), message(20, 2), message(10, 1)]
    assert await inbox.store(first) == 3
    assert await inbox.store([message(11, 1), message(12, 1)]) == 1  # 11 is a redelivery
    stop = asyncio.Event()
    worker = asyncio.create_task(inbox.process(stop))
    await asyncio.wait_for(dispatcher.all_seen.wait(), 10)
    stop.set()
    await worker
    assert sorted(dispatcher.seen) == [10, 11, 12, 20]
    assert [u for u in dispatcher.seen if u < 20] == [10, 11, 12]  # chat 1 in order
    async with database.unit_of_work(readonly=True) as session:
        unprocessed = await session.scalar(
            select(func.count()).select_from(InboxUpdate).where(InboxUpdate.processed_at.is_(None))
        )
    assert unprocessed == 0


async def test_an_instance_that_lost_the_lease_stores_nothing(database: Database) -> None:
    async def stale(_session: object) -> None:
        raise StaleLeaderError("epoch 1 is gone")

    inbox = UpdateInbox(
        database,
        RecordingDispatcher(1),
        bot=None,
        check=stale,
        fence=false,  # type: ignore[arg-type]
    )
    with pytest.raises(StaleLeaderError):
        await inbox.store([message(30, 3)])
    async with database.unit_of_work(readonly=True) as session:
        assert await session.scalar(select(func.count()).select_from(InboxUpdate)) == 0


def test_the_chat_of_every_kind_of_update() -> None:
    assert chat_of(message(1, 5)) == 5
    callback = {
        "update_id": 2,
        "callback_query": {"id": "q", "from": {"id": 7}, "message": {"chat": {"id": 8}}},
    }
    assert chat_of(callback) == 8
    assert chat_of({"update_id": 3, "pre_checkout_query": {"id": "p", "from": {"id": 9}}}) == 9
    assert chat_of({"update_id": 4}) is None


async def test_concurrent_stores_share_a_transaction_and_are_handled_without_a_scan(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: updates arriving while a write is in flight go into the next write
    together. Store-and-claim: while the processor runs, a stored row is written claimed
    (attempts = 1) and handled from memory, no table scan in between."""
    monkeypatch.setattr(intake, "SCAN_S", 3600.0)  # only the scan at the start
    transactions = 0

    async def counted(_connection: object) -> None:
        nonlocal transactions
        transactions += 1

    dispatcher = RecordingDispatcher(expected=30)
    inbox = UpdateInbox(database, dispatcher, bot=None, check=counted)  # type: ignore[arg-type]
    stop = asyncio.Event()
    worker = asyncio.create_task(inbox.process(stop))
    await asyncio.sleep(0)  # the processor runs (its first scan found nothing)
    stored = await asyncio.gather(*(inbox.store([message(100 + i, 100 + i)]) for i in range(30)))
    assert stored == [1] * 30
    assert transactions < 30 / 2, transactions  # 30 requests, a handful of writes
    await asyncio.wait_for(dispatcher.all_seen.wait(), 10)
    await inbox.drain()
    stop.set()
    await worker
    assert sorted(dispatcher.seen) == list(range(100, 130))
    async with database.unit_of_work(readonly=True) as session:
        rows = (await session.execute(select(InboxUpdate.attempts, InboxUpdate.processed_at))).all()
    assert {attempts for attempts, _ in rows} == {1}  # claimed once, by the write
    assert all(done is not None for _, done in rows)


async def test_a_failed_group_write_fails_every_caller_and_claims_nothing(
    database: Database,
) -> None:
    async def stale(_connection: object) -> None:
        raise StaleLeaderError("gone")

    inbox = UpdateInbox(
        database,
        RecordingDispatcher(1),
        bot=None,
        check=stale,  # type: ignore[arg-type]
    )
    results = await asyncio.gather(
        *(inbox.store([message(200 + i, 1)]) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StaleLeaderError) for r in results)
    assert inbox._queued == set()
