"""aiogram FSM storage in TRT's database (aiogram ships none for SQL).

A user in the middle of choosing parameters keeps their place across restarts and deploys,
and every instance sees the same state.

aiogram reads the state of every update, so reads come from a cache that every write goes
through: the database first, then the cache (a failed write drops the entry). Only the ACTIVE
instance handles updates, and it starts each leadership with an empty cache (`forget`), so a
state another instance wrote meanwhile is read afresh. The data is kept as its JSON text: each
`get_data` hands out a fresh copy, which a handler may change without changing the cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from sqlalchemy import bindparam, select

from trt.db.database import Database
from trt.db.models import FsmState, utcnow

CACHE_KEYS = 50_000  # chats remembered; the least recently used are dropped first


def _key(key: StorageKey) -> str:
    return ":".join(
        str(part)
        for part in (
            key.bot_id,
            key.chat_id,
            key.user_id,
            key.thread_id or "",
            key.business_connection_id or "",
            key.destiny,
        )
    )


READ_STATE = select(FsmState.state, FsmState.data).where(FsmState.key == bindparam("name"))


class SqlStorage(BaseStorage):
    def __init__(self, database: Database) -> None:
        self.database = database
        self._cache: dict[str, tuple[str | None, str]] = {}  # key → (state, data as JSON)
        # The writes (one of the state, one of the data) and the read, built once.
        inserted = database.insert(FsmState)
        self._upserts = {
            column: inserted.on_conflict_do_update(
                index_elements=[FsmState.key],
                set_={
                    column: inserted.excluded[column],
                    "updated_at": inserted.excluded.updated_at,
                },
            ).returning(FsmState.state, FsmState.data)
            for column in ("state", "data")
        }

    def forget(self) -> None:
        """Read every state from the database again (a new leadership)."""
        self._cache.clear()

    async def _upsert(self, key: StorageKey, **values: Any) -> None:
        name = _key(key)
        (column,) = values
        row = {"key": name, "state": None, "data": {}, "updated_at": utcnow(), **values}
        self._cache.pop(name, None)  # unknown until the write is done (it may fail)
        async with self.database.transaction() as connection:
            state, data = (await connection.execute(self._upserts[column], row)).one()
        self._remember(name, state, data)

    async def _row(self, key: StorageKey) -> tuple[str | None, str]:
        name = _key(key)
        cached = self._cache.pop(name, None)  # popped and put back: the newest stay last
        if cached is None:
            async with self.database.transaction(readonly=True) as connection:
                found = (await connection.execute(READ_STATE, {"name": name})).one_or_none()
            state, data = (None, None) if found is None else found
            return self._remember(name, state, data)
        self._cache[name] = cached
        return cached

    def _remember(self, name: str, state: str | None, data: Any) -> tuple[str | None, str]:
        entry = (state, json.dumps(data or {}))
        self._cache[name] = entry
        if len(self._cache) > CACHE_KEYS:
            for oldest in list(self._cache)[: CACHE_KEYS // 10]:
                del self._cache[oldest]
        return entry

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        await self._upsert(key, state=value)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._row(key))[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._upsert(key, data=dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        data = json.loads((await self._row(key))[1])
        return data if isinstance(data, dict) else {}

    async def close(self) -> None:
        return None
