"""`SqliteRegistry`: leases shared by the processes of one host through one SQLite file.

Every claim, renewal and release is one `BEGIN IMMEDIATE` transaction, so SQLite's single
writer lock makes each of them atomic across processes; a process that finds the lock taken
waits (`busy_timeout`) instead of failing. All SQLite work runs on one dedicated thread per
registry, so the event loop never blocks on the file.

Leases expire by the wall clock (`time.time()`): it is the one clock all processes of a host
share, where each process's monotonic clock may count from elsewhere. Fencing tokens come from
one counter for the whole file, `max(time.time_ns(), last + 1)`, kept in its own row. Being
global, it keeps nothing per name once a claim is released (the claims table holds only live
or unreleased claims), and every token ever handed out for any name stays below the next one,
even when the clock steps back. It costs no extra contention: every claim already takes the
file's one write lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from .._abc import Claim, ClaimKind, Ident, NameTaken, Registry
from .._errors import InvalidConfig, RegistryUnavailable
from ._sqlite_file import SqliteFile

T = TypeVar("T")

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS wes_claims (
        kind TEXT NOT NULL,
        ident TEXT NOT NULL,
        holder TEXT NOT NULL,
        token INTEGER NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (kind, ident)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS wes_tokens (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        last INTEGER NOT NULL
    )
    """,
)
_HELD = "SELECT holder, expires FROM wes_claims WHERE kind = ? AND ident = ?"
_TAKE = """
INSERT INTO wes_claims (kind, ident, holder, token, expires) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (kind, ident) DO UPDATE SET
    holder = excluded.holder, token = excluded.token, expires = excluded.expires
"""
_RENEW = """
UPDATE wes_claims SET expires = ? WHERE kind = ? AND ident = ? AND token = ? AND expires > ?
"""
_RELEASE = "DELETE FROM wes_claims WHERE kind = ? AND ident = ? AND token = ?"
_PURGE = "DELETE FROM wes_claims WHERE expires <= ?"
_LAST_TOKEN = "SELECT last FROM wes_tokens WHERE id = 0"
_SET_TOKEN = """
INSERT INTO wes_tokens (id, last) VALUES (0, ?) ON CONFLICT (id) DO UPDATE SET last = excluded.last
"""
_PURGE_EVERY = 60.0  # seconds between sweeps of claims that expired without being released


def encode_ident(ident: Ident) -> str:
    """A claim name's ident as text; JSON keeps `("s", 1)` and `("s", "1")` apart."""
    return json.dumps([ident[0], ident[1]], separators=(",", ":"))


def encode_holder(holder: Hashable) -> str:
    """A holder as JSON text in which a tuple stays a tuple (`{"t": [...]}`)."""
    return json.dumps(_tag(holder), separators=(",", ":"))


def decode_holder(text: str) -> Hashable:
    """The inverse of `encode_holder`."""
    value: Hashable = json.loads(text, object_hook=_untag)
    return value


def _tag(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"t": [_tag(item) for item in value]}
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(
        f"a registry holder must be a str, int, float, None or a tuple of them, not {value!r}"
    )


def _untag(obj: dict[str, Any]) -> Any:
    return tuple(obj["t"])


def _create_tables(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)


class SqliteRegistry(Registry):
    """Leases in a SQLite file, shared by the processes of one host (WAL mode).

    Not for a network file system: SQLite's locking needs a local disk. Claims survive the
    processes that took them until they expire or are released.

    Args:
        path: the database file; created with its tables on first use. It may be the same
            file as a `SqliteStore`'s (the tables do not clash), at the price of sharing its
            write lock.
        busy_timeout: seconds an operation waits for another process's transaction before
            it fails with `wes.RegistryUnavailable`.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
            raise InvalidConfig(f"busy_timeout must be a number, not {busy_timeout!r}")
        if not busy_timeout >= 0:
            raise InvalidConfig(f"busy_timeout must be >= 0, not {busy_timeout!r}")
        self.path = os.fspath(path)
        # Leases outlive no power cut (every holder dies with the host), and a lost token
        # counter restarts from the clock, which has moved on: no fsync per claim.
        self._file = SqliteFile(
            self.path,
            label=repr(self),
            unavailable=RegistryUnavailable,
            synchronous="NORMAL",
            timeout=float(busy_timeout),
            setup=_create_tables,
        )
        self._purged_at = 0.0

    def __repr__(self) -> str:
        return f"SqliteRegistry({self.path!r})"

    def _transaction(self, body: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run `body(conn, now)` in one write transaction; `now` is read once the write lock
        is held, so time spent waiting for it never counts against a lease."""
        conn = self._file.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn, time.time())
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    # -- the Registry interface -----------------------------------------------------------

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        rows = [(kind, ident, encode_ident(ident)) for kind, ident in names]
        held_by = encode_holder(holder)
        tokens, expires = await self._file.run(self._claim_sync, rows, held_by, lease)
        return [
            Claim(kind, ident, holder, token, lease, expires)
            for (kind, ident, _), token in zip(rows, tokens, strict=True)
        ]

    def _claim_sync(
        self, rows: list[tuple[ClaimKind, Ident, str]], holder: str, lease: float
    ) -> tuple[list[int], float]:
        def body(conn: sqlite3.Connection, now: float) -> tuple[list[int], float]:
            for kind, ident, key in rows:
                row = conn.execute(_HELD, (kind, key)).fetchone()
                if row is not None and row[1] > now:
                    raise NameTaken(kind, ident, decode_holder(row[0]))
            tokens = self._next_tokens(conn, len(rows))
            expires = now + lease
            taken = zip(rows, tokens, strict=True)
            conn.executemany(_TAKE, [(k, key, holder, t, expires) for (k, _, key), t in taken])
            if now >= self._purged_at + _PURGE_EVERY:
                conn.execute(_PURGE, (now,))
                self._purged_at = now
            return tokens, expires

        return self._transaction(body)

    @staticmethod
    def _next_tokens(conn: sqlite3.Connection, n: int) -> list[int]:
        row = conn.execute(_LAST_TOKEN).fetchone()
        first = max(time.time_ns(), (row[0] if row is not None else 0) + 1)
        conn.execute(_SET_TOKEN, (first + n - 1,))
        return list(range(first, first + n))

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        if not claims:
            return []
        rows = [(c.kind, encode_ident(c.ident), c.token, c.lease) for c in claims]
        return await self._file.run(self._renew_sync, rows)

    def _renew_sync(self, rows: list[tuple[str, str, int, float]]) -> list[bool]:
        def body(conn: sqlite3.Connection, now: float) -> list[bool]:
            return [
                conn.execute(_RENEW, (now + lease, kind, key, token, now)).rowcount == 1
                for kind, key, token, lease in rows
            ]

        return self._transaction(body)

    async def release(self, claims: Sequence[Claim]) -> None:
        if not claims:
            return
        rows = [(c.kind, encode_ident(c.ident), c.token) for c in claims]
        await self._file.run(self._release_sync, rows)

    def _release_sync(self, rows: list[tuple[str, str, int]]) -> None:
        self._transaction(lambda conn, now: conn.executemany(_RELEASE, rows))

    async def holder(self, kind: ClaimKind, ident: Ident) -> Hashable | None:
        return await self._file.run(self._holder_sync, kind, encode_ident(ident))

    def _holder_sync(self, kind: str, key: str) -> Hashable | None:
        row = self._file.connection().execute(_HELD, (kind, key)).fetchone()
        if row is None or row[1] <= time.time():
            return None
        return decode_holder(row[0])

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread. Idempotent."""
        await self._file.aclose()
