"""Every test here is checked against the telemetry contract (tests/event_contract.py)."""

from __future__ import annotations

import pytest

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
