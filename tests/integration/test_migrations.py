"""Migration stairway (every revision up, down, up) and model/migration agreement."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from trt.db import migrate
from trt.db.database import Database
from trt.db.models import Base


async def _tables(database: Database) -> set[str]:
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


def test_the_revision_files_names_are_alembics_one_linear_chain() -> None:
    """`trt run` takes the head from the files' names (no Alembic import at start): that holds
    only while file NNNN_*.py is revision NNNN and the chain is linear, in name order."""
    names = sorted(p.name.split("_", 1)[0] for p in migrate.VERSIONS_DIR.glob("[0-9]*_*.py"))
    assert migrate.all_revisions() == names
    assert migrate.alembic_head() == migrate.head_revision() == names[-1]


async def test_stairway_every_revision_up_down_up(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    try:
        revisions = migrate.all_revisions()
        assert revisions[-1] == migrate.head_revision()
        previous = "base"
        for revision in revisions:
            await migrate.upgrade(database, revision)
            await migrate.downgrade(database, previous)
            await migrate.upgrade(database, revision)
            assert (await migrate.schema_state(database)).current == revision
            previous = revision
        await migrate.downgrade(database, "base")
        assert await _tables(database) == set()
    finally:
        await database.dispose()


async def test_models_match_migrations(database: Database) -> None:
    def diff(sync_connection: object) -> list[object]:
        context = MigrationContext.configure(
            sync_connection,  # type: ignore[arg-type]
            opts={"compare_type": True},
        )
        return list(compare_metadata(context, Base.metadata))

    async with database.engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []
    assert await _tables(database) == set(Base.metadata.tables)


async def test_schema_state_reports_behind_then_current(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    try:
        state = await migrate.schema_state(database)
        assert (state.current, state.is_current) == (None, False)
        await migrate.upgrade(database)
        assert (await migrate.schema_state(database)).is_current
    finally:
        await database.dispose()
