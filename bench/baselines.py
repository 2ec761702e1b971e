"""Baselines measured in the same run as the wes figures.

- The *asyncio floor*: a bare request/reply through an `asyncio.Queue` to one server task that
  resolves the caller's `Future`. Every actor library on asyncio that hops to a task per
  message pays at least this; wes aims to beat it by not hopping when a channel is idle.
- Raw SQLite loops with the same journal mode, `synchronous` setting and table shape as
  `wes.SqliteStore`: batched upserts (`executemany`, one transaction per batch) for periodic
  saves, and one commit per row for durable commands. Every write changes the stored value,
  since SQLite skips writing bytes that did not change.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from pathlib import Path

from common import Loop

# As wes.SqliteStore (src/wes/_backends/sqlite.py) sets up its file: WAL journal, and the
# `synchronous` its constructor defaults to.
JOURNAL_MODE = "WAL"


def default_synchronous() -> str:
    """The `synchronous` setting `wes.SqliteStore` uses when not told otherwise."""
    try:
        import wes
    except ImportError:
        return "FULL"
    param = inspect.signature(wes.SqliteStore).parameters.get("synchronous")
    if param is None or not isinstance(param.default, str):
        return "FULL"
    return param.default


SYNCHRONOUS = default_synchronous()

# The table shape of wes.SqliteStore; the upsert is a plain one, without its token check.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS states ("
    " key TEXT PRIMARY KEY, token INTEGER NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL"
    ") WITHOUT ROWID"
)
UPSERT = (
    "INSERT INTO states (key, data, version, token) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " data = excluded.data, version = excluded.version, token = excluded.token"
)

Request = tuple["asyncio.Future[int]", int]


class Floor:
    """One server task answering requests from a queue; `async with` runs it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _serve(self) -> None:
        get = self.queue.get
        while True:
            future, arg = await get()
            if not future.done():
                future.set_result(arg + 1)

    async def __aenter__(self) -> Floor:
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def one_client(self) -> Loop:
        """`n` round trips from one client."""
        put = self.queue.put_nowait

        async def body(n: int) -> None:
            loop = asyncio.get_running_loop()
            for i in range(n):
                future: asyncio.Future[int] = loop.create_future()
                put((future, i))
                await future

        return body

    def many_clients(self, clients: int) -> Loop:
        """`n` round trips in total from `clients` concurrent clients."""
        put = self.queue.put_nowait

        async def client(m: int) -> None:
            loop = asyncio.get_running_loop()
            for i in range(m):
                future: asyncio.Future[int] = loop.create_future()
                put((future, i))
                await future

        async def body(n: int) -> None:
            per = max(1, n // clients)
            await asyncio.gather(*(client(per) for _ in range(clients)))

        return body


def connect(path: Path) -> sqlite3.Connection:
    """A connection set up like wes.SqliteStore's, with the states table created."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    conn.execute(SCHEMA)
    return conn


def state(value: int) -> bytes:
    """An encoded state about the size of the benchmark actor's."""
    return b'{"value": %d}' % value


def batched_upserts(path: Path, keys: int, rounds: int, batch: int) -> float:
    """Rows upserted per second: `rounds` passes over `keys` rows, `batch` rows a transaction.

    The rows exist before timing starts (as wes's actors do after their first save), so every
    upsert is an update that changes the value. Row tuples are built before timing: this is
    the speed of SQLite itself.
    """
    conn = connect(path)
    try:
        names = [f"counter/{i}" for i in range(keys)]
        conn.execute("BEGIN")
        conn.executemany(UPSERT, [(name, state(0), 1, 1) for name in names])
        conn.execute("COMMIT")
        passes = [[(name, state(r), 1, 1) for name in names] for r in range(1, rounds + 1)]
        start = time.perf_counter()
        for rows in passes:
            for i in range(0, len(rows), batch):
                conn.execute("BEGIN")
                conn.executemany(UPSERT, rows[i : i + batch])
                conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return keys * rounds / elapsed


class PerRowCommits:
    """Upserts over `keys` rows, each in its own transaction (what a durable command costs)."""

    def __init__(self, path: Path, keys: int) -> None:
        self.conn = connect(path)
        self.names = [f"counter/{i}" for i in range(keys)]
        self.conn.execute("BEGIN")
        self.conn.executemany(UPSERT, [(name, state(0), 1, 1) for name in self.names])
        self.conn.execute("COMMIT")
        self.counter = 0

    async def body(self, n: int) -> None:
        """`n` upserts, one commit each; every one writes a new value."""
        execute = self.conn.execute
        names = self.names
        keys = len(names)
        counter = self.counter
        for _ in range(n):
            counter += 1
            execute("BEGIN")
            execute(UPSERT, (names[counter % keys], state(counter), 1, 1))
            execute("COMMIT")
        self.counter = counter

    def close(self) -> None:
        self.conn.close()
