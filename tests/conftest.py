"""Fixtures shared by every test: environment isolation and the storage backends.

Storage tests run on SQLite and on Postgres. Postgres comes from `TRT_TEST_POSTGRES_URL`
(default: the local server); each test gets a database of its own, created for it and dropped
after it, so runs and tests never see each other's data. Without a reachable Postgres those
tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import structlog

from trt import logs
from trt.config import SETTINGS_CLASSES
from trt.db import migrate
from trt.db.database import Database

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
POSTGRES_URL = os.environ.get("TRT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def contract_variables() -> set[str]:
    """Every environment variable a settings class reads (the runtime contract)."""
    names: set[str] = set()
    for cls in SETTINGS_CLASSES:
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, str):
                names.add(alias)
            elif alias is not None:
                names.update(str(choice) for choice in alias.choices)  # type: ignore[union-attr]
            else:
                names.add(prefix + field_name.upper())
    return names


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's environment or a stray .env file."""
    for name in contract_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For a test that calls `configure_logging` itself: structlog, the root logger's handlers
    and trt.logs' own state (secrets, the event lines' chain) are put back afterwards."""
    for name in ("_secrets", "_line_forms", "_info_chain"):
        monkeypatch.setattr(logs, name, getattr(logs, name))
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


def _asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _postgres_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"Postgres at {POSTGRES_URL} is unreachable ({exc!r})"
        if IN_CI:
            pytest.fail(f"{reason}; under CI=true Postgres tests must run", pytrace=False)
        pytest.skip(f"SKIPPING POSTGRES TESTS: {reason}")


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def empty_database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to a brand-new, empty database on the requested backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    admin = await _postgres_admin()
    name = f"trt_test_{uuid.uuid4().hex[:16]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(POSTGRES_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database(empty_database_url: str) -> AsyncIterator[Database]:
    """A migrated database on the requested backend."""
    db = Database(empty_database_url)
    await migrate.upgrade(db)
    try:
        yield db
    finally:
        await db.dispose()
