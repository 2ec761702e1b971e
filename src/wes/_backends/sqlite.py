"""`SqliteStore`: the embedded default store, one SQLite file in WAL mode.

All SQLite work happens on one dedicated thread, so the event loop never blocks on disk; a
`write` call is one transaction however many channel batches it carries.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from itertools import chain
from typing import Any, ClassVar, Literal

from .._abc import Record, Store, Write
from .._errors import InvalidConfig, StaleToken, StoreUnavailable
from .._writer import FlatWrite, Results
from ._sqlite_file import KeyedReads, SqliteFile

_flatten = chain.from_iterable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wes_state (
    key TEXT PRIMARY KEY,
    token INTEGER NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID
"""
# Many rows per statement, in the field order of `Write`. Fast: a row with an older token
# sets the token to NULL, which the NOT NULL constraint turns into an error that undoes the
# whole statement (and then each batch is tried alone). Each: a row with an older token
# changes nothing, which the row count reveals.
_UPSERT_HEAD = "INSERT INTO wes_state (key, data, version, token) VALUES "
_UPSERT_FAST = """
ON CONFLICT (key) DO UPDATE SET
    token = CASE WHEN excluded.token >= wes_state.token THEN excluded.token END,
    version = excluded.version, data = excluded.data
"""
_UPSERT_EACH = """
ON CONFLICT (key) DO UPDATE SET
    token = excluded.token, version = excluded.version, data = excluded.data
WHERE excluded.token >= wes_state.token
"""
_FIELDS = 4  # of a `Write`, bound one parameter each
_MAX_ROWS = 4096  # per statement, a power of two, if SQLite allows that many parameters
_READ_CHUNK = 500  # keys per SELECT, well under SQLite's bound-parameter limit

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def _create_table(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)


@functools.cache
def _upsert_sql(rows: int, tail: str) -> str:
    return _UPSERT_HEAD + ",".join(["(?,?,?,?)"] * rows) + tail


def _max_rows(conn: sqlite3.Connection) -> int:
    """Rows per statement: `_MAX_ROWS`, or the largest power of two SQLite's parameter limit
    allows (999 parameters before SQLite 3.32)."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _FIELDS
    return min(_MAX_ROWS, 1 << (limit.bit_length() - 1))


def _statements(rows: int, most: int) -> list[int]:
    """Statement sizes for `rows` rows: `most` (a power of two) each, and the rest in one
    statement rounded up to an eighth of its next power of two, padded with repeats of the
    last row (a quarter of the rest at most, a sixteenth on average).

    Each statement hands the GIL back and forth once (sqlite3 lets go of it while SQLite
    works), which costs a switch interval (5 ms) while the event loop is busy encoding a save
    sweep: so one statement for a write that fits, and few distinct ones to prepare and
    cache (four sizes per power of two).
    """
    sizes = [most] * (rows // most)
    rest = rows % most
    if rest:
        step = max(1, (1 << (rest - 1).bit_length()) >> 3)
        sizes.append(-(-rest // step) * step)
    return sizes


def _bindable(chunk: list[Any]) -> list[Any]:
    """`chunk` (a copy of rows' fields) with each state's data as a `bytearray`, in place.

    `sqlite3` binds a `bytes` parameter only after looking for an adapter for it (a key
    tuple, a dict lookup, two attribute lookups), which a `bytearray` skips: ~0.45 us less
    a row, with the GIL held, so that much less time the event loop waits on this thread.
    The copy costs ~0.1 us; the stored blob is the same.
    """
    chunk[1::_FIELDS] = map(bytearray, chunk[1::_FIELDS])
    return chunk


def _upsert_fast(conn: sqlite3.Connection, params: list[Any], most: int) -> bool:
    """Upsert every row of `params` in the current transaction (or, if they fit in one
    statement, in a transaction of its own); `False` if some row has an older token than the
    stored one, and then the statement that met it wrote nothing."""
    start = 0
    rows = len(params) // _FIELDS
    try:
        for size in _statements(rows, most):
            end = start + size * _FIELDS
            chunk = params[start:end]
            if len(chunk) < size * _FIELDS:  # the padded last statement
                chunk += params[-_FIELDS:] * (size - len(chunk) // _FIELDS)
            conn.execute(_upsert_sql(size, _UPSERT_FAST), _bindable(chunk))
            start = end
    except sqlite3.IntegrityError:
        return False
    return True


def _upsert_each(conn: sqlite3.Connection, params: list[Any], most: int) -> int:
    """Upsert the rows of `params`, skipping those with an older token; returns how many were
    written."""
    written = 0
    start = 0
    rows = len(params) // _FIELDS
    while start < rows:
        size = min(most, 1 << ((rows - start).bit_length() - 1))
        chunk = params[start * _FIELDS : (start + size) * _FIELDS]
        written += conn.execute(_upsert_sql(size, _UPSERT_EACH), _bindable(chunk)).rowcount
        start += size
    return written


def _transaction(conn: sqlite3.Connection, body: Callable[[], bool]) -> bool:
    """Run `body` in a write transaction, committed if it returns `True`, else rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = body()
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT" if done else "ROLLBACK")
    return done


class SqliteStore(Store):
    """Actor states in a SQLite file (WAL mode; `synchronous=FULL` by default, so a commit
    survives a power cut, not only a process crash).

    Args:
        path: the database file; created with its table on first use.
        synchronous: SQLite's `PRAGMA synchronous`; `"NORMAL"` trades durability on power
            loss for speed.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL"):
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidConfig(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}"
            )
        self.path = os.fspath(path)
        self._file = SqliteFile(
            self.path,
            label=repr(self),
            unavailable=StoreUnavailable,
            synchronous=synchronous,
            timeout=10.0,
            setup=_create_table,
        )
        self._max_rows = 0  # rows per statement, known once the file is open
        self._reads = KeyedReads(self._file, self._read_sync)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # -- the Store interface --------------------------------------------------------------

    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        # Reads waiting together share one trip to the SQLite thread (`KeyedReads`).
        return await self._reads.read(keys)

    def _read_sync(self, keys: list[str]) -> dict[str, Record]:
        conn = self._file.connection()
        if len(keys) <= _READ_CHUNK:  # one statement: a snapshot by itself
            return _select(conn, keys, {})
        out: dict[str, Record] = {}
        conn.execute("BEGIN")  # one snapshot across the chunks: never a torn read
        try:
            for start in range(0, len(keys), _READ_CHUNK):
                _select(conn, keys[start : start + _READ_CHUNK], out)
        finally:
            if conn.in_transaction:  # an error may have ended it already
                conn.execute("COMMIT")
        return out

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        if not batches:
            return []
        sizes = array("q", map(len, batches))
        return await self._write_flat(list(_flatten(_flatten(batches))), sizes)

    def _wes_flat_write(self) -> FlatWrite | None:
        """The writer's way in (`wes._writer.FlatWrite`): rows flat, no `Write` objects
        held while the write waits; not for a subclass that changes `write`."""
        return self._write_flat if type(self).write is SqliteStore.write else None

    _wes_writes_on_thread: ClassVar[bool] = True  # see `wes._writer.writes_on_thread`

    async def _write_flat(self, params: list[Any], sizes: array[int]) -> Results:
        return await self._file.run(self._write_sync, params, sizes)

    def _write_sync(self, params: list[Any], sizes: array[int]) -> Results:
        conn = self._file.connection()
        most = self._max_rows
        if most == 0:
            most = self._max_rows = _max_rows(conn)
        if len(params) <= most * _FIELDS:  # the usual case: one statement, its own transaction
            written = _upsert_fast(conn, params, most)
        else:
            written = _transaction(conn, lambda: _upsert_fast(conn, params, most))
        if written:
            return [None] * len(sizes)
        # Refusals are rare: only now redo the batches one savepoint each to find which.
        results: Results = []
        _transaction(conn, lambda: self._write_each(conn, params, sizes, most, results))
        return results

    def _write_each(
        self,
        conn: sqlite3.Connection,
        params: list[Any],
        sizes: array[int],
        most: int,
        results: Results,
    ) -> bool:
        start = 0
        for size in sizes:
            end = start + size * _FIELDS
            results.append(self._write_batch(conn, params[start:end], most))
            start = end
        return True

    def _write_batch(
        self, conn: sqlite3.Connection, params: list[Any], most: int
    ) -> BaseException | None:
        conn.execute("SAVEPOINT batch")
        if _upsert_each(conn, params, most) == len(params) // _FIELDS:
            conn.execute("RELEASE batch")
            return None
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        for i in range(0, len(params), _FIELDS):
            key, token = params[i], params[i + 3]
            row = conn.execute("SELECT token FROM wes_state WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] > token:
                return StaleToken(
                    f"write of {key!r} with fencing token {token} refused: "
                    f"the store holds token {row[0]}"
                )
        return StaleToken(
            f"write of {len(params) // _FIELDS} keys refused by a newer fencing token"
        )

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        for key, record in await self._file.run(self._scan_sync, prefix):
            yield key, record

    def _scan_sync(self, prefix: str) -> list[tuple[str, Record]]:
        rows = self._file.connection().execute(
            "SELECT key, data, version, token FROM wes_state WHERE key >= ? ORDER BY key",
            (prefix,),
        )
        out = []
        for key, data, version, token in rows:
            if not key.startswith(prefix):
                break
            out.append((key, Record(bytes(data), version, token)))
        return out

    async def aclose(self) -> None:
        """Answer the reads under way, close the connection and stop the worker thread.
        Idempotent."""
        await self._reads.aclose()
        await self._file.aclose()


@functools.cache
def _select_sql(keys: int) -> str:
    return f"SELECT key, data, version, token FROM wes_state WHERE key IN ({','.join('?' * keys)})"


def _select(conn: sqlite3.Connection, keys: list[str], out: dict[str, Record]) -> dict[str, Record]:
    """Add the records of `keys` (at most `_READ_CHUNK`) to `out`; returns `out`.

    The statement takes a number of keys rounded up to an eighth of its next power of two,
    padded with repeats of the last key, so few distinct statements are prepared and cached.
    """
    size = len(keys)
    if not size:
        return out
    step = max(1, (1 << (size - 1).bit_length()) >> 3)
    padded = -(-size // step) * step
    params = keys + [keys[-1]] * (padded - size) if padded > size else keys
    for key, data, version, token in conn.execute(_select_sql(padded), params):
        out[key] = Record(bytes(data), version, token)
    return out
