"""A statement that stands alone (`Database.write` / `read`) answers the same whichever way it
runs: through SQLAlchemy the first time, on the Postgres driver itself once seen again
(`trt.db.direct`, docs/performance.md item 34). Each test runs a statement three times so the
last runs take the direct way on Postgres; on SQLite every run is SQLAlchemy's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.base import Executable

from tests.conftest import _asyncpg_dsn
from trt.db.database import Database, connection_lost, core
from trt.db.models import KieCallback, User

RECORD = (
    insert(KieCallback)
    .values(
        job_id=bindparam("of_job"),
        task_id=bindparam("task"),
        payload=bindparam("body"),
        received_at=bindparam("at"),
    )
    .returning(KieCallback.id, KieCallback.payload, KieCallback.received_at)
)
READ_BACK = select(KieCallback.id, KieCallback.payload, KieCallback.received_at).where(
    KieCallback.task_id == bindparam("task")
)


def ran_directly(database: Database, statement: Executable, parameters: dict[str, Any]) -> bool:
    """Whether the statement's last runs took the driver's way (always on Postgres)."""
    direct = database._directs.get(statement, parameters)
    return (direct is not None) is not database.is_sqlite


async def test_rows_come_back_the_same_whichever_way_the_statement_runs(
    database: Database,
) -> None:
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    written = []
    for n in range(3):
        body = {"n": n, "data": {"state": "success", "urls": ["a", "b"]}}
        values = {"of_job": "j", "task": f"t{n}", "body": body, "at": at}
        done = await database.write(RECORD, values)
        assert done.rowcount == 1
        (row,) = done.rows
        assert (row.payload, row.received_at, row[1]) == (body, at, body)
        assert row.received_at.tzinfo is not None
        written.append(row.id)
    for n in range(3):
        (row,) = await database.read(READ_BACK, {"task": f"t{n}"})
        assert (row.id, row.payload["n"], row.received_at) == (written[n], n, at)
    assert ran_directly(database, RECORD, values)
    assert ran_directly(database, READ_BACK, {"task": "t0"})
    # A statement without RETURNING: no rows, the rows it changed counted.
    bump = update(User).where(User.id == bindparam("uid")).values(language=bindparam("lang"))
    await database.write(insert(User), {"id": 1})
    for _ in range(3):
        assert await database.write(bump, {"uid": 1, "lang": "en"}) == ([], 1)
        assert await database.write(bump, {"uid": 2, "lang": "en"}) == ([], 0)


async def test_a_parameter_named_after_a_column_is_written_as_sqlalchemy_writes_it(
    database: Database,
) -> None:
    """SQLAlchemy compiles an UPDATE for the parameters it is given: one named after a column
    joins the SET. Whichever way it runs, the statement writes the same columns."""
    await database.write(insert(User), {"id": 1})
    rename = update(User).where(User.id == bindparam("uid")).values(language=bindparam("lang"))
    for n in range(3):
        await database.write(rename, {"uid": 1, "lang": "en", "username": f"name{n}"})
        (row,) = await database.read(select(User.username).where(User.id == 1))
        assert row.username == f"name{n}"


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(database: Database) -> None:
    add = insert(User).values(id=bindparam("uid"))
    await database.write(add, {"uid": 1})
    await database.write(add, {"uid": 2})
    with pytest.raises(IntegrityError):
        await database.write(add, {"uid": 1})
    assert await database.read(select(func.count(User.id))) == [(2,)]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_connection_cut_under_a_direct_statement_is_lost_and_the_pool_drops_it(
    database: Database,
) -> None:
    ask = select(func.count(User.id)).where(User.id > bindparam("above"))
    for _ in range(2):  # its connection goes back to the pool, used a moment ago: no ping
        await database.read(ask, {"above": 0})
    admin = await asyncpg.connect(_asyncpg_dsn(database.url), timeout=5)
    try:
        cut = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity, pg_terminate_backend(pid, 5000) AS done "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND done"
        )
    finally:
        await admin.close()
    assert cut >= 1
    with pytest.raises(DBAPIError) as lost:
        await database.read(ask, {"above": 0})
    assert ran_directly(database, ask, {"above": 0})
    assert connection_lost(lost.value)  # what `Database.retrying` retries
    assert lost.value.connection_invalidated
    assert await database.read(ask, {"above": 0}) == [(0,)]  # the pool opened a fresh one


async def test_a_unit_of_works_direct_statements_land_together_or_not_at_all(
    database: Database,
) -> None:
    """In a unit of work (`core(session)`) a statement seen before runs directly: it opens
    the transaction when it is the first, and SQLAlchemy's COMMIT or ROLLBACK takes it."""
    await database.write(insert(User), {"id": 1})
    rename = update(User).where(User.id == bindparam("uid")).values(language=bindparam("lang"))
    for language in ("en", "de"):  # seen twice: from here on run directly on Postgres
        async with database.unit_of_work() as session:
            assert (
                await (await core(session)).execute(rename, {"uid": 1, "lang": language})
            ).rowcount == 1
    assert ran_directly(database, rename, {"uid": 1, "lang": "xx"})

    class Undone(Exception):
        pass

    with pytest.raises(Undone):
        async with database.unit_of_work() as session:
            connection = await core(session)
            await connection.execute(rename, {"uid": 1, "lang": "fr"})  # the first statement
            assert await connection.scalar(select(User.language).where(User.id == 1)) == "fr"
            raise Undone
    assert await database.read(select(User.language).where(User.id == 1)) == [("de",)]
    async with database.unit_of_work() as session:
        await (await core(session)).execute(rename, {"uid": 1, "lang": "fr"})
    assert await database.read(select(User.language).where(User.id == 1)) == [("fr",)]
