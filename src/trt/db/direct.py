"""Plain statements run on the Postgres driver itself: those that stand alone
(`Database.write` / `read`) and those of a unit of work (`core(session)`, `DirectConnection`).

SQLAlchemy's execution of one compiled statement costs about 165 µs of CPU where the driver
alone takes 51 µs (a micro measurement, docs/performance.md item 34): the execution context,
the adapter's cursor, the result's metadata, a greenlet switch each way. The engine runs about
six statements that stand alone a job, and the confirm and the success transaction about five
more. Here such a statement is compiled once, by SQLAlchemy for the dialect, and each run binds
its parameters with SQLAlchemy's own bind processors, prepares through the adapter's statement
cache (the one SQLAlchemy's own executions use, so no statement is prepared twice on a
connection) and fetches on the asyncpg connection; in a transaction it sends the BEGIN when it
is the transaction's first statement, as the adapter's cursor does, and the COMMIT or ROLLBACK
stays SQLAlchemy's. What is not SQLAlchemy's to skip stays SQLAlchemy's: the connection comes
from its pool (the idle ping, the reset), and a failure goes through its translation and
disconnect handling, so callers see the same `DBAPIError`s and a broken connection is dropped
from the pool just the same. Statement hooks (`before_cursor_execute`) do not see a statement
run here.

Only statements seen twice are compiled here (a statement built for one call runs through
SQLAlchemy, whose cache keys it), and only plain ones: no parameter rendered at execution
(an expanding IN list), no column default computed in Python, no text() of unknown shape.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, cast

from sqlalchemy import Delete, Insert, Numeric, Select, Update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler

CACHED = 256  # statements kept (compiled or found not eligible); more are forgotten at once
_STATUS = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


class Answer(Protocol):
    """What a statement's run answers, SQLAlchemy's result or `Ran`: the calls TRT makes."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def all(self) -> Sequence[Any]: ...

    def first(self) -> Any: ...

    def one_or_none(self) -> Any: ...

    def one(self) -> Any: ...

    def scalar(self) -> Any: ...

    def scalar_one_or_none(self) -> Any: ...

    def scalar_one(self) -> Any: ...


class Ran:
    """What a statement run directly returned, answering as SQLAlchemy's result does for the
    calls TRT makes on one (`first`, `one_or_none`, `scalar`, `rowcount`, …)."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows  # its rows (RETURNING / SELECT) with attribute and index access
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return list(self.rows)

    def first(self) -> Any | None:
        return self.rows[0] if self.rows else None

    def one_or_none(self) -> Any | None:
        if len(self.rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.first()

    def one(self) -> Any:
        if not self.rows:
            raise NoResultFound("No row was found when one was required")
        return self.one_or_none()

    def scalar(self) -> Any | None:
        return self.rows[0][0] if self.rows else None

    def scalar_one_or_none(self) -> Any | None:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


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
        adapted: Any = (await connection.get_raw_connection()).dbapi_connection
        try:
            # As the adapter's cursor does: the transaction's BEGIN before its first statement
            # (none on an autocommit connection), one statement at a time on the connection.
            async with adapted._execute_mutex:
                if adapted._transaction is None:
                    await adapted._start_transaction()
                asof = self.compiled.dialect._invalidate_schema_cache_asof  # type: ignore[attr-defined]
                prepared, _attributes = await adapted._prepare(self.sql, asof)
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


class DirectConnection:
    """SQLAlchemy's connection under a unit of work (`core(session)`), whose plain statements
    run directly (`directs`; None: every statement through SQLAlchemy, as on SQLite). The
    same connection and transaction either way: a statement run directly starts the
    transaction's BEGIN if it is the first, and SQLAlchemy commits or rolls back as ever."""

    __slots__ = ("connection", "directs")

    def __init__(self, connection: AsyncConnection, directs: Directs | None) -> None:
        self.connection = connection
        self.directs = directs

    async def execute(
        self,
        statement: Executable,
        parameters: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> Answer:
        if self.directs is not None and not isinstance(parameters, list):
            direct = self.directs.get(statement, parameters)
            if direct is not None:
                return await direct.run(self.connection, parameters)
        return await self.connection.execute(statement, parameters)

    @property
    def dialect(self) -> Dialect:
        return self.connection.dialect

    async def scalar(self, statement: Executable, parameters: dict[str, Any] | None = None) -> Any:
        return (await self.execute(statement, parameters)).scalar()
