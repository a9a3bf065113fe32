"""Every test here is checked against the telemetry contract (tests/event_contract.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e_support import RunningBot, running_bot
from tests.event_contract import event_contract

__all__ = ["event_contract"]


@pytest.fixture
async def database_url(backend: str, empty_database_url: str) -> str | None:
    """None for SQLite (running_bot makes a file); a migrated database for Postgres."""
    if backend == "sqlite":
        return None
    from trt.db import migrate
    from trt.db.database import Database

    database = Database(empty_database_url)
    try:
        await migrate.upgrade(database)
    finally:
        await database.dispose()
    return empty_database_url


@pytest.fixture
async def bot(tmp_path: Path, database_url: str | None) -> AsyncIterator[RunningBot]:
    """The bot with the default sandbox (modules that need other options define their own)."""
    async with running_bot(tmp_path, database_url=database_url) as running:
        yield running
