"""aiogram FSM storage in TRT's database (aiogram ships none for SQL).

A user in the middle of choosing parameters keeps their place across restarts and deploys,
and every instance sees the same state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from trt.db.database import Database
from trt.db.models import FsmState, utcnow


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


class SqlStorage(BaseStorage):
    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert = sqlite_insert if database.is_sqlite else pg_insert

    async def _upsert(self, key: StorageKey, **values: Any) -> None:
        row = {"key": _key(key), "state": None, "data": {}, "updated_at": utcnow(), **values}
        statement = self._insert(FsmState).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=[FsmState.key], set_={**values, "updated_at": utcnow()}
        )
        async with self.database.unit_of_work() as session:
            await session.execute(statement)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        await self._upsert(key, state=value)

    async def get_state(self, key: StorageKey) -> str | None:
        async with self.database.unit_of_work(readonly=True) as session:
            row = await session.get(FsmState, _key(key))
            return None if row is None else row.state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._upsert(key, data=dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        async with self.database.unit_of_work(readonly=True) as session:
            row = await session.get(FsmState, _key(key))
            return {} if row is None else dict(row.data or {})

    async def close(self) -> None:
        return None
