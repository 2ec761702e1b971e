"""`PostgresStore`: actor states in one PostgreSQL table, through psycopg 3 and a pool.

A `write` call is one transaction however many channel batches it carries. Its fast path is a
single statement, run on its own (so it is its own transaction: one round trip, commit
included), upserting every row; it fails, undoing them all, at the first row whose stored
token is newer. Only then are the batches redone in one transaction with a savepoint each, to
refuse exactly the stale ones.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from .._abc import Record, Store, Write
from .._errors import InvalidConfig, StaleToken, StoreUnavailable
from .._writer import FlatWrite, Results, batches_of

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")
_by_key = itemgetter(0)  # a Write's key
_flatten = chain.from_iterable
_FIELDS = len(Write._fields)  # of a row in flat params (`wes._writer.FlatWrite`)

_SCAN_PAGE = 500  # rows per scan query: bounds memory with large values, few round trips
_RETRIES = 2  # reruns of an operation after a dropped connection or a deadlock
_LOCK_CLASS = 0x7765_7300 >> 1  # "wes\0": first key of the schema advisory lock (an int4)

# `COLLATE "C"` orders keys by code point, as `sorted()` does, whatever the database locale.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    key text COLLATE "C" PRIMARY KEY,
    token bigint NOT NULL,
    version integer NOT NULL,
    data bytea NOT NULL
)
"""
# Arrays travel in binary (%b): psycopg dumps and the server parses them much faster than
# text arrays, about 10 us less per thousand rows each.
# The WHERE makes a row with an older token change nothing, which the row count reveals.
_UPSERT_MANY = """
INSERT INTO {table} AS t (key, token, version, data)
SELECT * FROM unnest(%b::text[], %b::bigint[], %b::integer[], %b::bytea[])
ON CONFLICT (key) DO UPDATE SET
    token = excluded.token, version = excluded.version, data = excluded.data
WHERE excluded.token >= t.token
"""
# The fast path: one statement upserting every row, which fails, undoing every row, when a
# row's stored token is newer. The failure is a text-to-bigint cast of a message, evaluated
# only for such a row (in the CASE's ELSE); its SQLSTATE (22P02) and the marker `_FENCED`
# tell it from other errors.
_FENCED = "wes-fenced"
_UPSERT_ALL = """
INSERT INTO {table} AS t (key, token, version, data)
SELECT * FROM unnest(%b::text[], %b::bigint[], %b::integer[], %b::bytea[])
ON CONFLICT (key) DO UPDATE SET
    token = CASE WHEN excluded.token >= t.token THEN excluded.token
        ELSE ('{fenced} ' || t.token)::bigint END,
    version = excluded.version, data = excluded.data
"""
_UPSERT_ONE = """
INSERT INTO {table} AS t (key, token, version, data) VALUES (%s, %s, %s, %b)
ON CONFLICT (key) DO UPDATE SET
    token = excluded.token, version = excluded.version, data = excluded.data
WHERE excluded.token >= t.token
"""
_READ = "SELECT key, data, version, token FROM {table} WHERE key = ANY(%b::text[])"
_TOKENS = "SELECT key, token FROM {table} WHERE key = ANY(%b::text[])"
# The range uses the primary key index; starts_with keeps the match literal (no LIKE).
_SCAN = (
    "SELECT key, data, version, token FROM {table}"
    " WHERE key {op} %s{upper} AND starts_with(key, %s) ORDER BY key LIMIT %s"
)


class _Shortfall(Exception):
    """Some row of the fast path was fenced: roll it back and find the stale batches."""


class PostgresStore(Store):
    """Actor states in a PostgreSQL table, shared by every node that uses the same database.

    The table is created on first use (safely, also by several processes at once). Keys are
    `text` (any string without NUL characters), ordered by code point; values are `bytea`.
    Needs PostgreSQL 11 or newer.

    Args:
        dsn: a libpq connection string or URL, e.g. `"postgresql://user@host/db"`.
        table: the table holding the states; created when missing.
        min_size: connections the pool keeps open once it is in use.
        max_size: the most connections the pool opens.
        connect_timeout: seconds to wait for a connection before the operation fails with
            `wes.StoreUnavailable`, so a server that is down is reported instead of awaited.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "wes_state",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
    ) -> None:
        try:
            import psycopg
            import psycopg_pool  # noqa: F401 - fail now, not at first use
        except ImportError:
            raise ImportError("PostgresStore needs: pip install 'wes-actors[postgres]'") from None
        if not isinstance(table, str) or not table or "\x00" in table:
            raise InvalidConfig(f"table must be a non-empty name, not {table!r}")
        if not 0 <= min_size <= max_size or max_size < 1:
            raise InvalidConfig(
                f"need 0 <= min_size <= max_size and 1 <= max_size, not "
                f"min_size={min_size!r}, max_size={max_size!r}"
            )
        if not connect_timeout > 0:
            raise InvalidConfig(f"connect_timeout must be positive, not {connect_timeout!r}")
        try:
            psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise InvalidConfig(f"invalid PostgreSQL dsn: {exc}") from None
        self.dsn = dsn
        self.table = table
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._error: type[Exception] = psycopg.Error
        self._operational: type[Exception] = psycopg.OperationalError
        self._deadlock: type[Exception] = psycopg.errors.DeadlockDetected
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False
        name = _quote(table)
        self._create = _SCHEMA.format(table=name)
        self._upsert_many = _UPSERT_MANY.format(table=name)
        self._upsert_all = _UPSERT_ALL.format(table=name, fenced=_FENCED)
        self._cast_failed: type[Exception] = psycopg.errors.InvalidTextRepresentation
        self._upsert_one = _UPSERT_ONE.format(table=name)
        self._read = _READ.format(table=name)
        self._tokens = _TOKENS.format(table=name)
        self._scan = {
            (first, bounded): _SCAN.format(
                table=name, op=">=" if first else ">", upper=" AND key < %s" if bounded else ""
            )
            for first in (True, False)
            for bounded in (True, False)
        }

    def __repr__(self) -> str:
        return f"PostgresStore({_hide_password(self.dsn)!r}, table={self.table!r})"

    # -- connections and schema -----------------------------------------------------------

    async def _run(self, op: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run `op` on a pooled connection, translating driver errors.

        A connection the server dropped while it idled in the pool (a server restart) fails
        on first use: then every idle connection is checked and `op` runs once more. Writes
        may rerun too: fencing makes them idempotent (the same rows with the same tokens).
        """
        try:
            pool = await self._open()
            for attempt in range(_RETRIES + 1):
                conn: AsyncConnection[Any] | None = None
                try:
                    async with pool.connection() as conn:
                        return await op(conn)
                except self._operational as exc:
                    dropped = conn is not None and conn.closed
                    # Writers that overlap (a channel taken over mid-save) may deadlock; the
                    # transaction was rolled back whole, so it can simply run again.
                    if attempt == _RETRIES or not (dropped or isinstance(exc, self._deadlock)):
                        raise
                    if dropped:  # its idle siblings are likely dead too: replace them now
                        await pool.check()
        except self._error as exc:
            raise StoreUnavailable(f"{self!r}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None and not self._closed:
                self._pool = await self._new_pool()
        if self._pool is None:  # closed while we waited for the lock
            raise StoreUnavailable(f"{self!r} is closed")
        return self._pool

    async def _new_pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        from psycopg import AsyncConnection
        from psycopg_pool import AsyncConnectionPool

        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.dsn,
            connection_class=AsyncConnection,
            # libpq's connect_timeout is whole seconds, and it treats values below 2 as 2.
            kwargs={"autocommit": True, "connect_timeout": max(2, round(self._connect_timeout))},
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            timeout=self._connect_timeout,
            name=f"wes-{self.table}",
        )
        await pool.open(wait=False)
        try:
            async with pool.connection() as conn:
                await self._ensure_schema(conn)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def _ensure_schema(self, conn: AsyncConnection[Any]) -> None:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_quote(self.table),))
        row = await cur.fetchone()
        if row is not None and row[0]:
            return
        # CREATE TABLE IF NOT EXISTS races on the type catalog when two sessions run it at
        # once; a transaction-scoped advisory lock on the table name serializes them.
        lock = zlib.crc32(self.table.encode()) - (1 << 31)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, lock))
            await conn.execute(self._create)

    # -- the Store interface --------------------------------------------------------------

    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        keys = list(keys)
        if not keys:
            return {}
        rows = await self._run(partial(_fetch, query=self._read, params=(keys,)))
        # One statement outside a transaction block is one snapshot.
        return {key: Record(data, version, token) for key, data, version, token in rows}

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        sizes = array("q", map(len, batches))
        return await self._write_flat(list(_flatten(_flatten(batches))), sizes)

    def _wes_flat_write(self) -> FlatWrite | None:
        """The writer's way in (`wes._writer.FlatWrite`): rows flat, their columns taken by
        slicing, no `Write` per row; not for a subclass that changes `write`."""
        return self._write_flat if type(self).write is PostgresStore.write else None

    async def _write_flat(self, params: list[Any], sizes: array[int]) -> Results:
        keys = params[0::_FIELDS]
        if not keys:
            return [None] * len(sizes)
        # One statement cannot upsert a key twice, so repeated keys skip the fast path.
        if len(set(keys)) == len(keys):
            columns = _in_key_order(keys, params)
            if await self._run(lambda conn: self._upsert_columns(conn, *columns)):
                return [None] * len(sizes)
        batches = batches_of(params, sizes)  # rare: a key twice, or a fenced row
        return await self._run(lambda conn: self._write_each(conn, batches))

    async def _write_each(
        self, conn: AsyncConnection[Any], batches: list[list[Write]]
    ) -> list[BaseException | None]:
        """Write `batches` in one transaction, a savepoint each: each stale one is refused."""
        async with conn.transaction():
            return [await self._write_batch(conn, batch) for batch in batches]

    async def _write_batch(
        self, conn: AsyncConnection[Any], batch: list[Write]
    ) -> BaseException | None:
        if not batch:
            return None
        try:
            async with conn.transaction():  # a savepoint inside the call's transaction
                if await self._upsert(conn, batch) == len(batch):
                    return None
                raise _Shortfall
        except _Shortfall:
            pass
        cur = await conn.execute(self._tokens, ([w.key for w in batch],))
        stored = dict(await cur.fetchall())
        for w in batch:
            token = stored.get(w.key)
            if token is not None and token > w.token:
                return StaleToken(
                    f"write of {w.key!r} with fencing token {w.token} refused: "
                    f"the store holds token {token}"
                )
        # Only a batch repeating a key with a falling token gets here.
        return StaleToken(f"write of {len(batch)} keys refused by a newer fencing token")

    async def _upsert_columns(
        self,
        conn: AsyncConnection[Any],
        keys: list[str],
        data: list[bytes],
        versions: list[int],
        tokens: list[int],
    ) -> bool:
        """Upsert the rows given as columns (distinct keys, in key order) in one statement
        outside any transaction block, so in a transaction of its own; `False`, and nothing
        written, if any row was fenced."""
        try:
            await conn.execute(self._upsert_all, (keys, tokens, versions, data))
        except self._cast_failed as exc:
            if _FENCED not in str(exc):
                raise
            return False
        return True

    async def _upsert(self, conn: AsyncConnection[Any], rows: list[Write]) -> int:
        """Upsert `rows` (in key order, so overlapping writers lock rows in the same order);
        returns how many were written."""
        if len({w.key for w in rows}) < len(rows):
            # A batch repeating a key: one row at a time, in the batch's order.
            count = 0
            for w in rows:
                cur = await conn.execute(self._upsert_one, (w.key, w.token, w.version, w.data))
                count += max(cur.rowcount, 0)
            return count
        rows = sorted(rows, key=_by_key)
        cur = await conn.execute(
            self._upsert_many,
            (
                [w.key for w in rows],
                [w.token for w in rows],
                [w.version for w in rows],
                [w.data for w in rows],
            ),
        )
        return cur.rowcount

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        upper = _upper_bound(prefix)
        bound = () if upper is None else (upper,)
        after: str | None = None
        while True:
            # A page per query, the connection back in the pool between pages: a caller that
            # stops iterating half way holds nothing.
            query = self._scan[after is None, upper is not None]
            params = (prefix if after is None else after, *bound, prefix, _SCAN_PAGE)
            rows = await self._run(partial(_fetch, query=query, params=params))
            for key, data, version, token in rows:
                yield key, Record(data, version, token)
            if len(rows) < _SCAN_PAGE:
                return
            after = rows[-1][0]

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def _fetch(
    conn: AsyncConnection[Any], query: str, params: Sequence[object]
) -> list[tuple[Any, ...]]:
    cur = conn.cursor(binary=True)  # bytea comes back as raw bytes, not hex text
    await cur.execute(query, params)
    return await cur.fetchall()


def _quote(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (code point order), or
    None when there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored: skip them
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _hide_password(dsn: str) -> str:
    dsn = re.sub(r"(://[^:/?#@]*:)[^@/?#]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def _in_key_order(
    keys: list[str], params: list[Any]
) -> tuple[list[str], list[bytes], list[int], list[int]]:
    """The columns (key, data, version, token) of flat rows with distinct `keys`, sorted by
    key (overlapping writers lock rows in one order), reordered in C by one `itemgetter`."""
    if len(keys) == 1:
        return keys, [params[1]], [params[2]], [params[3]]
    order = itemgetter(*sorted(range(len(keys)), key=keys.__getitem__))
    return (
        list(order(keys)),
        list(order(params[1::_FIELDS])),
        list(order(params[2::_FIELDS])),
        list(order(params[3::_FIELDS])),
    )
