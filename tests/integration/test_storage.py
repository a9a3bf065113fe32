from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from trt.db import database as db_module
from trt.db import sqlite_inline
from trt.db.database import Database, connection_lost, insert_after, row_values
from trt.db.models import FreeUsage, User


async def test_unit_of_work_commits_on_success(database: Database) -> None:
    async with database.unit_of_work() as session:
        session.add(User(id=42, username="alice", language="en"))
    async with database.unit_of_work(readonly=True) as session:
        user = await session.get(User, 42)
    assert user is not None
    assert (user.username, user.language, user.is_blocked) == ("alice", "en", False)
    assert user.created_at.tzinfo is UTC


async def test_unit_of_work_rolls_back_every_write_on_error(database: Database) -> None:
    class Boom(Exception):
        pass

    async def write_then_fail() -> None:
        async with database.unit_of_work() as session:
            session.add(User(id=1))
            await session.flush()  # the row reached the database inside the transaction
            session.add(User(id=2))
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()
    async with database.unit_of_work(readonly=True) as session:
        count = len((await session.scalars(select(User))).all())
    assert count == 0


async def test_datetimes_round_trip_as_aware_utc(database: Database) -> None:
    seen = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
    async with database.unit_of_work() as session:
        session.add(User(id=5, last_seen_at=seen))
    async with database.unit_of_work(readonly=True) as session:
        user = await session.get(User, 5)
    assert user is not None
    assert user.last_seen_at == seen


async def test_naive_datetimes_are_refused(database: Database) -> None:
    naive = datetime(2026, 1, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(Exception, match="naive datetime"):
        async with database.unit_of_work() as session:
            session.add(User(id=6, last_seen_at=naive))


async def test_server_defaults_fill_a_raw_insert(database: Database) -> None:
    async with database.unit_of_work() as session:
        await session.execute(text("INSERT INTO users (id) VALUES (7)"))
    async with database.unit_of_work(readonly=True) as session:
        user = await session.get(User, 7)
    assert user is not None
    assert (user.language, user.is_blocked) == ("ru", False)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_is_tuned_for_concurrency_and_integrity(database: Database) -> None:
    async with database.engine.connect() as connection:
        journal = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
        foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        busy_ms = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    assert journal == "wal"
    assert foreign_keys == 1
    # Statements run on the event loop's thread and never wait there: a lock held by another
    # process is waited for on a worker thread (the next test), up to SQLITE_BUSY_TIMEOUT_MS.
    assert busy_ms == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_write_waits_for_another_process_lock_without_stalling_the_loop(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance on the same file (a deploy's overlap) holds the write lock: this
    instance's write waits for it on a worker thread, the event loop keeps running (it is what
    releases the lock here), and the write lands once the lock is free."""
    other = Database(database.url)  # its own engine and connections: another process's
    waiting = asyncio.Event()
    loop = asyncio.get_running_loop()
    wait = sqlite_inline.InlineConnection._waiting

    def waiting_on_thread(self: sqlite_inline.InlineConnection, *args: Any) -> Any:
        loop.call_soon_threadsafe(waiting.set)
        return wait(self, *args)

    monkeypatch.setattr(sqlite_inline.InlineConnection, "_waiting", waiting_on_thread)
    try:
        async with other.transaction() as holder:  # BEGIN IMMEDIATE: the write lock
            await holder.execute(insert(User).values(id=1, username="holder", language="ru"))

            async def write() -> None:
                async with database.transaction() as connection:
                    await connection.execute(insert(User).values(id=2, username="w", language="ru"))

            writer = asyncio.create_task(write())
            waited = asyncio.create_task(waiting.wait())
            await asyncio.wait({writer, waited}, return_when=asyncio.FIRST_COMPLETED)
            assert not writer.done()  # it met the lock and waits, off the loop
            await waited
        await writer  # the lock is free: it lands
    finally:
        await other.dispose()
    async with database.unit_of_work(readonly=True) as session:
        assert {u.id for u in (await session.scalars(select(User))).all()} == {1, 2}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_lock_that_outlasts_the_busy_timeout_is_a_retryable_database_error(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN IMMEDIATE runs on the driver's connection (not as a SQLAlchemy statement): a lock
    held past the busy timeout still arrives as SQLAlchemy's OperationalError, the error
    `Database.retrying` knows as a passing one."""
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    impatient = Database(database.url)
    other = Database(database.url)
    try:
        async with other.transaction() as holder:  # the write lock, held past 50 ms
            await holder.execute(insert(User).values(id=1, username="holder", language="ru"))
            with pytest.raises(OperationalError) as raised:
                async with impatient.transaction():
                    pass
        assert connection_lost(raised.value)
        assert "locked" in str(raised.value.orig)
        async with impatient.transaction() as connection:  # the lock is free: it begins
            await connection.execute(insert(User).values(id=2, username="w", language="ru"))
    finally:
        await impatient.dispose()
        await other.dispose()


async def test_ping_reaches_the_database(database: Database) -> None:
    await database.ping()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_burst_reuses_the_pools_connections_instead_of_reconnecting(
    database: Database,
) -> None:
    # A burst of taps holds a few dozen transactions at once; a connection beyond the pool's
    # size is closed when it comes back, so a pool smaller than that working set connects and
    # disconnects all through every burst (the profile in docs/performance.md, items 18 and
    # 21: the engine's run at 30 + 10 still opened 183 connections for 500 jobs).
    connects = 0

    def counted(*_args: Any) -> None:
        nonlocal connects
        connects += 1

    event.listen(database.engine.sync_engine, "connect", counted)
    many = 36  # above the 30 kept of the old 30 + 10, within today's 40
    held = asyncio.Barrier(many)

    async def one_transaction() -> None:
        async with database.transaction() as connection:
            await connection.execute(text("SELECT 1"))
            await held.wait()  # all of them open at once

    await asyncio.gather(*(one_transaction() for _ in range(many)))
    first = connects
    assert 0 < first <= many
    await asyncio.gather(*(one_transaction() for _ in range(many)))
    assert connects == first  # the second burst found every connection still in the pool


async def test_a_single_write_is_its_own_transaction_without_begin_on_postgres(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `write` saves BEGIN and COMMIT on Postgres (docs/performance.md, item 21): the statement
    # runs outside a transaction block, atomic on its own. Counted where asyncpg sends BEGIN.
    from asyncpg.transaction import Transaction

    begun = 0
    opening = Transaction.start

    async def counted(self: Transaction) -> None:
        nonlocal begun
        begun += 1
        await opening(self)

    monkeypatch.setattr(Transaction, "start", counted)
    await database.ping()  # the pool's first connection (the dialect's own BEGIN on connect)
    before = begun
    written = await database.write(text("SELECT 1 AS one"))
    assert [row.one for row in written.rows] == [1]
    alone = begun - before
    async with database.transaction() as connection:
        await connection.execute(text("SELECT 1"))
    if not database.is_sqlite:
        assert (alone, begun - before) == (0, 1)  # the transaction opened a block, not the write
    # A write's RETURNING rows and its row count come back; a failure changes nothing.
    added = await database.write(insert(User).values(id=77, language="ru").returning(User.id))
    assert [row.id for row in added.rows] == [77]
    assert added.rowcount == 1
    with pytest.raises(IntegrityError):
        await database.write(insert(User).values(id=77, language="en"))
    async with database.transaction(readonly=True) as connection:
        assert await connection.scalar(select(User.language).where(User.id == 77)) == "ru"


async def test_among_is_one_statement_text_for_any_number_of_values(database: Database) -> None:
    # asyncpg prepares every new statement text once per connection: an IN list whose text
    # grows with its values made a claim of 1 to 32 rows re-prepare on nearly every claim.
    async with database.transaction() as connection:
        await connection.execute(insert(User), [{"id": i, "language": "ru"} for i in range(1, 6)])
    sent: set[str] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.add(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    for values in ([2], [1, 3, 5], [4, 5, 6, 7, 8, 9]):
        query = select(User.id).where(database.among(User.id, values)).order_by(User.id)
        async with database.transaction(readonly=True) as connection:
            found = list(await connection.scalars(query))
        assert found == [v for v in values if v <= 5]
    if not database.is_sqlite:
        assert len(sent) == 1, sent  # the text the driver prepares, whatever the count


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_insert_after_inserts_only_when_the_update_moved_a_row(database: Database) -> None:
    # One statement for a move and the row that goes with it (the engine's task id and its
    # progress note, docs/performance.md item 25): the row only when the move happened.
    async with database.transaction() as connection:
        await connection.execute(insert(User).values(id=5, language="ru"))
    move = (
        update(User)
        .where(User.id == bindparam("user"), User.language == "ru")
        .values(language="en")
        .returning(User.id)
    )
    for _ in range(2):  # the second finds nothing to move
        row = {"user_id": 5, "day": "2026-12-06", "used": 1}
        await database.write(insert_after(move, FreeUsage, row), {"user": 5, **row_values(row)})
    async with database.transaction(readonly=True) as connection:
        assert await connection.scalar(select(User.language).where(User.id == 5)) == "en"
        assert list(await connection.scalars(select(FreeUsage.used))) == [1]
