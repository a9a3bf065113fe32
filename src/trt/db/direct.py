"""Statements that stand alone, run on the Postgres driver itself (`Database.write` / `read`).

SQLAlchemy's execution of one compiled statement costs about 165 µs of CPU on top of the
driver's 51 µs (`bench`-style micro measurement, docs/performance.md item 34): the execution
context, the adapter's cursor, the result's metadata, a greenlet switch each way. A statement
the engine runs for every job (a callback's record, a stored file, a send's mark) pays it six
times a job. Here such a statement is compiled once, by SQLAlchemy for the dialect, and each
run binds its parameters with SQLAlchemy's own bind processors, prepares through the adapter's
statement cache (the one SQLAlchemy's own executions use, so no statement is prepared twice
on a connection) and fetches on the asyncpg connection. What is not SQLAlchemy's to skip
stays SQLAlchemy's: the connection comes from its pool (the idle ping, the reset), and a
failure goes through its translation and disconnect handling, so callers see the same
`DBAPIError`s and a broken connection is dropped from the pool just the same.

Only statements seen twice are compiled here (a statement built for one call runs through
SQLAlchemy, whose cache keys it), and only plain ones: no parameter rendered at execution
(an expanding IN list), no column default computed in Python, no text() of unknown shape.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from sqlalchemy import Delete, Insert, Numeric, Select, Update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler

CACHED = 256  # statements kept (compiled or found not eligible); more are forgotten at once
_STATUS = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


class Ran(NamedTuple):
    """What a statement run directly returned."""

    rows: list[Any]  # its rows (RETURNING / SELECT) with attribute and index access
    rowcount: int


class Direct:
    """One statement compiled for the driver (`Directs.get`)."""

    __slots__ = ("compiled", "names", "processors", "results", "returns", "row", "sql")

    def __init__(self, compiled: SQLCompiler, returns: bool) -> None:
        self.compiled = compiled
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        bind = compiled._bind_processors
        self.processors = tuple(
            (index, cast(Callable[[Any], Any], bind[name]))
            for index, name in enumerate(self.names)
            if name in bind
        )
        self.returns = returns
        columns = compiled._result_columns
        self.row: Callable[..., Any] = namedtuple(  # type: ignore[misc]
            "Row", [column.keyname for column in columns], rename=True
        )
        dialect = compiled.dialect
        processed = [
            (index, column.type._cached_result_processor(dialect, None))
            for index, column in enumerate(columns)
        ]
        self.results = tuple((index, fn) for index, fn in processed if fn is not None)

    async def run(self, connection: AsyncConnection, parameters: dict[str, Any] | None) -> Ran:
        values = self.compiled.construct_params(parameters)
        args = [values[name] for name in self.names]
        for index, process in self.processors:
            args[index] = process(args[index])
        adapted = (await connection.get_raw_connection()).dbapi_connection
        try:
            prepared, _attributes = await adapted._prepare(  # type: ignore[union-attr]
                self.sql,
                self.compiled.dialect._invalidate_schema_cache_asof,  # type: ignore[attr-defined]
            )
            records = await prepared.fetch(*args)
            status = prepared.get_statusmsg()
        except Exception as error:
            await connection.run_sync(_translated, error, self.sql, args, adapted)
            raise  # not reached: _translated raises
        found = _STATUS.match(status or "")
        rowcount = int(found.group(1)) if found else -1
        if not self.returns:
            return Ran([], rowcount)
        if self.results:
            rows = []
            for record in records:
                values_ = list(record)
                for index, process in self.results:
                    values_[index] = process(values_[index])
                rows.append(self.row(*values_))
            return Ran(rows, rowcount)
        return Ran([self.row(*record) for record in records], rowcount)


def _translated(
    sync: Connection, error: Exception, sql: str, args: list[Any], adapted: Any
) -> None:
    """Raise `error` as SQLAlchemy would have: the adapter's DBAPI error, then SQLAlchemy's
    own, with its disconnect handling (the `handle_error` events; a disconnect invalidates
    the connection, so the pool drops it)."""
    try:
        adapted._handle_exception(error)
    except Exception as dbapi_error:
        sync._handle_dbapi_exception(dbapi_error, sql, tuple(args), None, None)
    raise error


class Directs:
    """The statements of one database run directly, by identity and the names of the
    parameters they are run with (as SQLAlchemy compiles an INSERT or UPDATE for the
    parameters it is given: a parameter named after a column of the table is written). A
    statement is built once and kept by its module or a cache; its entry holds it, so its id
    names no other."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._seen: dict[tuple[int, tuple[str, ...]], Executable] = {}
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[Executable, Direct | None]] = {}

    def get(self, statement: Executable, parameters: dict[str, Any] | None) -> Direct | None:
        """The statement compiled for the driver; None to run it through SQLAlchemy (seen
        once so far, or not a plain statement)."""
        names = tuple(sorted(parameters)) if parameters else ()
        key = (id(statement), names)
        held = self._compiled.get(key)
        if held is not None and held[0] is statement:
            return held[1]
        if self._seen.get(key) is not statement:
            if len(self._seen) >= CACHED:
                self._seen.clear()
            self._seen[key] = statement
            return None
        direct = _compile(statement, names, self.dialect)
        if len(self._compiled) >= CACHED:
            self._compiled.clear()
        self._compiled[key] = (statement, direct)
        return direct


def _compile(statement: Executable, names: tuple[str, ...], dialect: Dialect) -> Direct | None:
    if not isinstance(statement, Insert | Update | Delete | Select):
        return None
    # As SQLAlchemy compiles it for an execution with these parameters.
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    assert isinstance(compiled, SQLCompiler)
    if (
        compiled.positiontup is None
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.insert_prefetch
        or compiled.update_prefetch
    ):
        return None
    if any(isinstance(column.type, Numeric) for column in compiled._result_columns):
        return None  # its result processor depends on the driver's column type
    returns = isinstance(statement, Select) or bool(statement._returning)
    return Direct(compiled, returns)
