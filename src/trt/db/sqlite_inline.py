"""SQLite for the async engine without a thread per connection.

aiosqlite runs every call on a thread of its own and hands the result back through a queue
and the event loop: about 45 µs of CPU a statement on top of SQLite's own few µs, and a
hand-over of the GIL each time (docs/performance.md). A statement on a local WAL database
that does not wait for a lock finishes in microseconds, so this driver runs it on the event
loop's thread, where it is called.

The one wait SQLite can make is for another process's write lock (`BEGIN IMMEDIATE` while a
second instance writes, during a deploy's overlap): that must not stall the event loop. So a
connection's busy timeout is 0 here; a call that meets SQLITE_BUSY is run again on a worker
thread with the real timeout, where it waits as it always did. A statement that returned
SQLITE_BUSY did nothing, so running it again is safe.

SQLAlchemy's aiosqlite dialect drives it (`create_async_engine(async_creator=…)`): the classes
below have the shape of aiosqlite's `Connection` and `Cursor` that the dialect uses.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
BUSY = sqlite3.SQLITE_BUSY


def _busy(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode & 0xFF == BUSY  # the primary code of an extended one


class InlineCursor:
    """aiosqlite's `Cursor`, run in place."""

    __slots__ = ("_connection", "_cursor")

    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await self._connection.run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)  # an iterator could not be run a second time after BUSY
        await self._connection.run(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _Immediate:
    """aiosqlite's request queue, as the SQLAlchemy dialect uses it (to set the isolation
    level): the function runs at once and its future is settled."""

    __slots__ = ()

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:
            future.set_exception(error)


class InlineConnection:
    """aiosqlite's `Connection`, run in place (see the module's docstring)."""

    def __init__(self, conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
        self._conn = conn
        self._busy_timeout_ms = busy_timeout_ms
        self._tx = _Immediate()

    @property
    def _connection(self) -> sqlite3.Connection | None:  # aiosqlite's: None once closed
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` now; on SQLITE_BUSY, once more on a thread that may wait."""
        try:
            return function(*args)
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
        return await asyncio.to_thread(self._waiting, function, args)

    def _waiting(self, function: Callable[..., T], args: Sequence[Any]) -> T:
        self._conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            return function(*args)
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def begin(self, statement: str) -> None:
        """`BEGIN IMMEDIATE` or `BEGIN DEFERRED`, SQLITE_BUSY handled as above. Not aiosqlite's
        `execute` (which returns a cursor): the engine's `begin` hook calls it."""
        await self.run(self._conn.execute, statement)

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self._conn.close()

    def stop(self) -> None:  # aiosqlite's forced close (SQLAlchemy's terminate)
        self._conn.close()


def connector(path: str, *, uri: bool, busy_timeout_ms: int) -> Callable[[], Any]:
    """The `async_creator` for `create_async_engine`: a new inline connection to `path`."""

    async def connect() -> InlineConnection:
        conn = sqlite3.connect(
            path,
            timeout=0,
            uri=uri,
            isolation_level=None,
            check_same_thread=False,  # a call that met a lock waits on a worker thread
        )
        return InlineConnection(conn, busy_timeout_ms)

    return connect
