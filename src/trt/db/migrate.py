"""Schema migrations through Alembic's API, on the application's own async engine.

Alembic (with Mako and Pygments behind it) is imported only to migrate: `trt run` checks the
schema with one SELECT against the newest revision file's id (`NNNN_name.py` holds revision
`NNNN`, one linear chain; tests/integration/test_migrations.py holds Alembic to that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from trt.db.database import Database

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSIONS_DIR = MIGRATIONS_DIR / "versions"


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision: the highest `NNNN` of the revision files' names."""
    heads = sorted(path.name.split("_", 1)[0] for path in VERSIONS_DIR.glob("[0-9]*_*.py"))
    assert heads, "no migrations found"
    return heads[-1]


def all_revisions() -> list[str]:
    """Every revision id, oldest first (as Alembic walks the chain)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def alembic_head() -> str | None:
    """The head as Alembic itself computes it (tests compare it with `head_revision`)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head


async def schema_state(database: Database) -> SchemaState:
    async with database.engine.connect() as connection:
        # A database never migrated has no alembic_version table; a database away raises.
        known = await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version"))
        current = (
            await connection.scalar(text("SELECT version_num FROM alembic_version"))
            if known
            else None
        )
    return SchemaState(current=current, head=head_revision())


async def upgrade(database: Database, revision: str = "head") -> None:
    from alembic import command

    await _run(database, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(database: Database, revision: str) -> None:
    from alembic import command

    await _run(database, lambda cfg: command.downgrade(cfg, revision))


async def _run(database: Database, action: Callable[[AlembicConfig], None]) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)

    async with database.engine.begin() as connection:
        await connection.run_sync(run)
