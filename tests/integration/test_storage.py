from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from trt.db.database import Database
from trt.db.models import User


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
    assert busy_ms == 10_000


async def test_ping_reaches_the_database(database: Database) -> None:
    await database.ping()
