"""`SqliteStore`: the embedded default store, one SQLite file in WAL mode.

All SQLite work happens on one dedicated thread, so the event loop never blocks on disk; a
`write` call is one transaction however many channel batches it carries.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from itertools import chain
from typing import Literal

from .._abc import Record, Store, Write
from .._errors import InvalidConfig, StaleToken, StoreUnavailable
from ._sqlite_file import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wes_state (
    key TEXT PRIMARY KEY,
    token INTEGER NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID
"""
# Many rows per statement, in the field order of `Write`. The WHERE makes a row with an older
# token change nothing, which the row count reveals.
_UPSERT_HEAD = "INSERT INTO wes_state (key, data, version, token) VALUES "
_UPSERT_TAIL = """
ON CONFLICT (key) DO UPDATE SET
    token = excluded.token, version = excluded.version, data = excluded.data
WHERE excluded.token >= wes_state.token
"""
_ROWS_PER_STATEMENT = 1024  # a power of two; 4 parameters a row, far below SQLite's limit
_READ_CHUNK = 500  # keys per SELECT, well under SQLite's bound-parameter limit

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def _create_table(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)


@functools.cache
def _upsert_sql(rows: int) -> str:
    return _UPSERT_HEAD + ",".join(["(?,?,?,?)"] * rows) + _UPSERT_TAIL


def _upsert(conn: sqlite3.Connection, rows: Sequence[Write]) -> int:
    """Upsert `rows` in order; returns how many were written.

    A few statements of many rows each, not one per row: `sqlite3` lets go of the GIL around
    every statement step, and while the event loop is busy (encoding a save sweep, say) each
    time it takes the GIL back can cost this thread a switch interval (5 ms). Statement sizes
    are powers of two, so that few distinct statements are prepared (and cached).
    """
    written = 0
    start = 0
    while start < len(rows):
        size = min(_ROWS_PER_STATEMENT, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        written += conn.execute(_upsert_sql(size), list(chain.from_iterable(chunk))).rowcount
        start += size
    return written


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

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # -- the Store interface --------------------------------------------------------------

    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        return await self._file.run(self._read_sync, list(keys))

    def _read_sync(self, keys: list[str]) -> dict[str, Record]:
        conn = self._file.connection()
        out: dict[str, Record] = {}
        conn.execute("BEGIN")  # one snapshot across the chunks: never a torn read
        try:
            self._read_chunks(conn, keys, out)
        finally:
            conn.execute("COMMIT")
        return out

    def _read_chunks(
        self, conn: sqlite3.Connection, keys: list[str], out: dict[str, Record]
    ) -> None:
        for start in range(0, len(keys), _READ_CHUNK):
            chunk = keys[start : start + _READ_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, data, version, token FROM wes_state WHERE key IN ({marks})", chunk
            )
            for key, data, version, token in rows:
                out[key] = Record(bytes(data), version, token)

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        if not batches:
            return []
        return await self._file.run(self._write_sync, [list(b) for b in batches])

    def _write_sync(self, batches: list[list[Write]]) -> list[BaseException | None]:
        conn = self._file.connection()
        rows = [w for batch in batches for w in batch]
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Refusals are rare: try everything at once, and only on a short row count redo
            # the batches one savepoint each to find which to refuse.
            if _upsert(conn, rows) == len(rows):
                conn.execute("COMMIT")
                return [None] * len(batches)
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            results = [self._write_batch(conn, batch) for batch in batches]
            conn.execute("COMMIT")
            return results
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write_batch(self, conn: sqlite3.Connection, batch: list[Write]) -> BaseException | None:
        conn.execute("SAVEPOINT batch")
        if _upsert(conn, batch) == len(batch):
            conn.execute("RELEASE batch")
            return None
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        for w in batch:
            row = conn.execute("SELECT token FROM wes_state WHERE key = ?", (w.key,)).fetchone()
            if row is not None and row[0] > w.token:
                return StaleToken(
                    f"write of {w.key!r} with fencing token {w.token} refused: "
                    f"the store holds token {row[0]}"
                )
        return StaleToken(f"write of {len(batch)} keys refused by a newer fencing token")

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
        """Close the connection and stop the worker thread. Idempotent."""
        await self._file.aclose()
