"""The database handle: engine, session factory and the unit of work services use.

SQLite is tuned for one process with many coroutines: WAL (readers never block the writer),
statements run on the event loop's thread with another process's lock waited for off it
(`trt.db.sqlite_inline`), foreign keys on, and `BEGIN IMMEDIATE` for write transactions so a
transaction never fails half-way when it upgrades its read lock to a write lock. SQLite has
one writer at a time; within the process the write transactions queue on an asyncio lock
instead of in SQLite's busy handler, which sleeps (up to 100 ms a turn) and wakes in no order.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import (
    ColumnElement,
    Insert,
    String,
    any_,
    bindparam,
    event,
    exists,
    insert,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import ReturningUpdate, Update
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.util.concurrency import await_

from trt.db import sqlite_inline
from trt.db.direct import DirectConnection, Directs
from trt.logs import get_logger

SQLITE_BUSY_TIMEOUT_MS = 10_000
RETRY_ATTEMPTS = 5
RETRY_STEP_S = 0.2  # the n-th retry waits n × this
T = TypeVar("T")
S = TypeVar("S")
D = TypeVar("D")
# What a statement runs on: an ORM session or a Core connection (the hot paths use the latter).
Executor = AsyncSession | AsyncConnection
log = get_logger(__name__)
# Execution option that marks a transaction read-only on SQLite (BEGIN DEFERRED).
_READONLY = "trt_readonly"


class Written(NamedTuple):
    """What one statement run on its own (`Database.write`) returned."""

    # What it RETURNING-ed (SELECT-ed), read before its connection went back: rows with
    # attribute and index access (SQLAlchemy's, or `trt.db.direct`'s).
    rows: list[Any]
    rowcount: int


async def _executed(
    connection: AsyncConnection, statement: Executable, parameters: dict[str, Any] | None
) -> Written:
    result = await connection.execute(statement, parameters)
    rows = list(result.all()) if result.returns_rows else []
    return Written(rows, int(result.rowcount or 0))


class Database:
    """One engine per process; `unit_of_work()` opens a transaction-scoped session."""

    def __init__(
        self, url: str, *, echo: bool = False, pool_size: int = 40, max_overflow: int = 0
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["async_creator"] = _sqlite_connector(url)
        else:
            # Not `pool_pre_ping`: it costs three round trips (BEGIN, a ping, ROLLBACK) before
            # every transaction; `_ping_idle_connections` pings only a connection that sat idle.
            # The pool keeps every connection it may open (no overflow): an overflow connection
            # is closed when it comes back, so a pool that keeps fewer than the working set
            # connects and disconnects all through a burst of taps or jobs, preparing its
            # statements again each time (10 + 10 did in the intake burst, 30 + 10 under the
            # engine's workers: 183 connections for 500 jobs; docs/performance.md, items 18 and
            # 21). Two instances during a deploy overlap hold at most 2 × 40 of Postgres's
            # default 100. Last in, first out: a light load keeps reusing the few connections it
            # needs (their statements prepared, no idle ping), and the rest wait idle.
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_use_lifo=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # The dialect's INSERT (with its ON CONFLICT clauses) for statements built once.
        self.insert = sqlite_insert if self.is_sqlite else pg_insert
        if self.is_sqlite:
            _tune_sqlite(self.engine)
        else:
            _discard_broken_connections(self.engine)
            _ping_idle_connections(self.engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._readonly_engine = self.engine.execution_options(**{_READONLY: True})
        # One statement on its own needs no BEGIN and COMMIT on Postgres: the statement is its
        # own transaction (two round trips less; `write`).
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # ... and runs on the driver itself once seen twice (`trt.db.direct`), as do the
        # plain statements of a unit of work (`core`).
        self._directs = Directs(self.engine.dialect)
        if not self.is_sqlite:
            _DIRECTS[self.engine.dialect] = self._directs
        self._writer = asyncio.Lock()  # SQLite: this process's write transactions, in turn
        self._writing: asyncio.Task[Any] | None = None
        self._readonly_sessions = async_sessionmaker(self._readonly_engine, expire_on_commit=False)

    @asynccontextmanager
    async def unit_of_work(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: commits on success, rolls back on any error.

        Repositories take this session and never commit themselves, so a service's writes
        (for example a ledger posting and its balance counters) land together or not at all.
        """
        factory = self._readonly_sessions if readonly else self._sessions
        async with self._write_turn(readonly), factory() as session, session.begin():
            yield session

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside one transaction: commits on success, rolls back on error.

        The same transaction as `unit_of_work` without the ORM's unit of work: for the paths
        every update takes (the inbox, the user row, the FSM state, the event store), where a
        session's bookkeeping costs more than the statement.
        """
        engine = self._readonly_engine if readonly else self.engine
        async with self._write_turn(readonly), engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def _write_turn(self, readonly: bool) -> AsyncIterator[None]:
        """On SQLite, this process's turn to write (a nested write in the same task takes no
        second turn: it meets SQLite's own lock, as it always did)."""
        task = asyncio.current_task()
        if readonly or not self.is_sqlite or self._writing is task:
            yield
            return
        async with self._writer:
            self._writing = task
            try:
                yield
            finally:
                self._writing = None

    async def retrying(
        self, work: Callable[[], Awaitable[T]], *, what: str, attempts: int = RETRY_ATTEMPTS
    ) -> T:
        """Run `work` (one unit of work, safe to repeat) again when the database connection
        failed under it: for writes whose only other copy is in memory (a KIE task id, the
        record of a message Telegram took), which a passing outage must not lose."""
        for attempt in range(1, attempts + 1):
            try:
                return await work()
            except (DBAPIError, OSError) as error:
                if attempt == attempts or not connection_lost(error):
                    raise
                log.warning("database_retry", what=what, attempt=attempt, error=str(error)[:200])
                await asyncio.sleep(RETRY_STEP_S * attempt)
        raise AssertionError("unreachable")

    async def write(
        self, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> Written:
        """Run one statement as a transaction of its own: on Postgres without BEGIN and
        COMMIT (a single statement is atomic by itself, and two round trips of three are
        saved), on SQLite in a write transaction in this process's turn.

        For a write that stands alone: a compare-and-set, a mark, a stored file. Several
        writes that must land together take `transaction()` or `unit_of_work()`."""
        return await self._alone(statement, parameters, readonly=False)

    async def read(
        self, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> list[Any]:
        """The rows of one query that stands alone (`write`'s reading twin: one round trip on
        Postgres; SQLite reads in a read transaction, outside the write turn)."""
        return (await self._alone(statement, parameters, readonly=True)).rows

    async def _alone(
        self, statement: Executable, parameters: dict[str, Any] | None, *, readonly: bool
    ) -> Written:
        if self.is_sqlite:
            async with self.transaction(readonly=readonly) as connection:
                return await _executed(connection, statement, parameters)
        direct = self._directs.get(statement, parameters)
        async with self._autocommit_engine.connect() as connection:
            if direct is None:
                return await _executed(connection, statement, parameters)
            ran = await direct.run(connection, parameters)
            return Written(ran.rows, ran.rowcount)

    def among(
        self, column: QueryableAttribute[Any] | ColumnElement[Any], values: Iterable[Any]
    ) -> ColumnElement[bool]:
        """`column IN values` as one statement whatever the count. On Postgres it is
        `column = ANY($n)` with the values as one array parameter: an IN list's text changes
        with its length, and asyncpg prepares every new text once per connection (a round trip
        each: a claim of 1 to 32 rows re-prepared its statements on nearly every claim)."""
        values = list(values)
        if self.is_sqlite:
            return column.in_(values)
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))

    async def best_effort(self, statement: Executable, *, what: str) -> int | None:
        """Run one UPDATE / DELETE on its own (`write`), with `retrying`; a failure is logged,
        not raised (for bookkeeping a lapsing lease makes good anyway). The rows it changed,
        None when it failed."""

        async def write() -> int:
            return (await self.write(statement)).rowcount

        try:
            return await self.retrying(write, what=what)
        except Exception as error:
            log.warning("database_write_failed", what=what, error=str(error)[:200])
            return None

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def constants_in(
    column: QueryableAttribute[Any] | ColumnElement[Any], values: Iterable[str]
) -> ColumnElement[bool]:
    """`column IN ('a', 'b')` for a fixed set of the code's own names (job states, say): the
    names written into the statement's text, so a statement built once runs without the
    per-execution rewrite an IN list of parameters takes (`expanding` parameters are
    rendered again at every execution: ~4 % of the bot's CPU in the engine benchmark,
    docs/performance.md item 30)."""
    names = sorted(set(values))
    if not names or not all(_NAME.fullmatch(name) for name in names):
        raise ValueError(f"not names to write into SQL: {names}")
    return column.in_([literal_column(f"'{name}'", String) for name in names])


_NAME = re.compile(r"[a-z][a-z0-9_]*")


class Derived(Generic[S, D]):
    """Statements derived from others built once (a cached move with a WITH around it, say):
    one per base statement, built on its first use. Building and keying a statement costs
    more CPU than running it (docs/performance.md). Each base is held by its entry, so its
    id names no other statement while the entry is there."""

    def __init__(self, build: Callable[[S], D], *, size: int = 64) -> None:
        self._build = build
        self._size = size
        self._made: dict[int, tuple[S, D]] = {}

    def __call__(self, base: S) -> D:
        made = self._made.get(id(base))
        if made is None or made[0] is not base:
            if len(self._made) >= self._size:
                self._made.clear()  # bases replaced (a new leader's fence): start again
            made = self._made[id(base)] = (base, self._build(base))
        return made[1]


def row_parameters(
    model: type[DeclarativeBase], names: Iterable[str]
) -> dict[str, BindParameter[Any]]:
    """Columns of `model` as parameters named row_<column>, for a row written in the same
    statement as another write (`row_values` gives their values). Named after no column:
    SQLAlchemy adds an execution parameter named after a column to an UPDATE's SET, a
    WITH-part's too."""
    columns = model.__table__.c
    return {name: bindparam(f"row_{name}", type_=columns[name].type) for name in names}


def row_values(fields: dict[str, Any]) -> dict[str, Any]:
    """A row's column values as the parameters `row_parameters` names."""
    return {f"row_{name}": value for name, value in fields.items()}


def insert_after(
    first: ReturningUpdate[Any],
    model: type[DeclarativeBase],
    names: Iterable[str],
    *,
    along: tuple[Update, ...] = (),
) -> Insert:
    """One statement for Postgres (`Database.write`): `first`, an UPDATE … RETURNING, in a
    WITH, and one row of `model` (its columns `names`, given as `row_values`) inserted only
    when `first` changed a row; so are the UPDATEs `along` made (WITH-parts too). SQLite has
    no data-modifying WITH: there the statements run one by one in one transaction."""
    done = first.cte("first_done")
    moved = exists(select(done))
    row = row_parameters(model, names)
    chosen = select(*row.values()).where(moved)
    parts = [write.where(moved).cte(f"along_{n}") for n, write in enumerate(along)]
    return insert(model).from_select(list(row), chosen).add_cte(done, *parts)


_CORE = "trt_core_connection"
# Postgres databases' directly run statements, by dialect (an engine's execution-option copies
# share it), for `core`.
_DIRECTS: weakref.WeakKeyDictionary[Any, Directs] = weakref.WeakKeyDictionary()


async def core(session: AsyncSession) -> DirectConnection:
    """The Core connection under `session`'s transaction, for DML and column reads.

    A statement there skips the ORM's per-statement work (the ORM compile step and, for an
    UPDATE, evaluating its WHERE against every object the session holds): about 0.2 ms of CPU
    a statement (docs/performance.md); on Postgres a plain statement seen before runs on the
    driver itself (`trt.db.direct`, item 35). It is the same transaction, so what lands
    together still lands together; objects the session has pending are flushed first, so a
    statement here sees them. What it changes is not reflected in objects the session already
    holds: use it where the caller does not read those objects back."""
    sync = session.sync_session
    if sync._new or sync._deleted or sync.dirty:  # the private maps: cheap, no copies
        await session.flush()
    transaction = sync.get_transaction()
    held: tuple[object, DirectConnection] | None = session.info.get(_CORE)
    if held is not None and held[0] is transaction:
        return held[1]
    connection = await session.connection()
    direct = DirectConnection(connection, _DIRECTS.get(connection.dialect))
    session.info[_CORE] = (sync.get_transaction(), direct)  # this transaction's
    return direct


def connection_lost(error: BaseException) -> bool:
    """The connection failed under the work (not the work itself, e.g. a constraint)."""
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
    return isinstance(error, OSError)


def _discard_broken_connections(engine: AsyncEngine) -> None:
    """A connection asyncpg left mid-operation (its server session terminated in the middle of
    a transaction, or a task cancelled inside a query) is a disconnect: the pool drops it
    instead of handing it to the next unit of work (sqlalchemy/sqlalchemy#13241)."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        original = context.original_exception
        broken = type(original).__name__ in ("InternalClientError", "InterfaceError") or (
            "another operation" in str(original)
        )
        if broken and not context.is_disconnect:
            context.is_disconnect = True


PING_IDLE_S = 1.0  # a pooled connection idle longer than this is pinged before it is used
_RETURNED = "trt_returned_at"


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling for connections that were idle: a server restart or an
    idle timeout kills those, and the ping finds it before a transaction does (the pool then
    opens a fresh connection: SQLAlchemy's "disconnect handling - pessimistic" recipe). A
    connection in steady use is not pinged; if its server goes away mid-use, the failure is a
    disconnect (`_discard_broken_connections`), the pool drops it, and the work is retried
    (`Database.retrying`) or redelivered (a webhook answered 500)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_RETURNED, 0.0) <= PING_IDLE_S:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise DisconnectionError(str(error)[:200]) from error


def _sqlite_connector(url: str) -> Callable[[], Awaitable[Any]]:
    """Connections that run statements on the event loop's thread (`trt.db.sqlite_inline`)."""
    parsed = make_url(url)
    uri = parsed.query.get("uri") in ("true", "1")
    return sqlite_inline.connector(
        parsed.database or ":memory:", uri=uri, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS
    )


def _tune_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control from the driver so BEGIN is ours (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # On the driver's connection, not through `exec_driver_sql`: a statement's whole
        # execution context for a BEGIN was a tenth of every transaction's instructions
        # (docs/performance.md, item 19). A lock that outlasts the busy timeout is raised as
        # SQLAlchemy's OperationalError, as a statement's would be (`connection_lost`).
        readonly = connection.get_execution_options().get(_READONLY, False)
        begin = "BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE"
        inline = connection.connection.driver_connection
        assert isinstance(inline, sqlite_inline.InlineConnection)
        try:
            await_(inline.begin(begin))
        except sqlite3.Error as error:
            raise OperationalError(begin, None, error) from error
