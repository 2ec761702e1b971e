"""One SQLite file in WAL mode, worked on by one dedicated thread: what `SqliteStore` and
`SqliteRegistry` share, so that neither blocks the event loop on disk."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .._errors import WesError

T = TypeVar("T")


class SqliteFile:
    """A lazily opened connection, used only from one worker thread.

    Args:
        path: the database file.
        label: names the owner in error messages, e.g. `SqliteStore('wes.db')`.
        unavailable: the error that `sqlite3` and OS errors become.
        synchronous: SQLite's `PRAGMA synchronous`.
        timeout: seconds to wait for another process's write lock.
        setup: creates the owner's tables; runs once, on the worker thread.
    """

    def __init__(
        self,
        path: str,
        *,
        label: str,
        unavailable: type[WesError],
        synchronous: str,
        timeout: float,
        setup: Callable[[sqlite3.Connection], None],
    ) -> None:
        self.path = path
        self._label = label
        self._unavailable = unavailable
        self._synchronous = synchronous
        self._timeout = timeout
        self._setup = setup
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on the worker thread; SQLite and OS errors become `unavailable`."""
        if self._closed:
            raise self._unavailable(f"{self._label} is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="wes-sqlite")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(f"{self._label}: {exc}") from exc

    def connection(self) -> sqlite3.Connection:
        """The connection, opened (WAL, pragmas, tables) on first use; worker thread only."""
        if self._conn is None:
            if self._closed:  # a call queued behind `aclose` must not reopen the file
                raise sqlite3.ProgrammingError(f"{self._label} is closed")
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            try:
                self._switch_to_wal(conn)
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                self._setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        # Connections switching a new file to WAL together: one of them may get SQLITE_BUSY
        # at once, without SQLite's busy handler waiting (about 1 in 300 opens of a fresh file
        # by six threads at once). Wait here instead, as long as the busy handler would.
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.05)
                continue
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL ({mode})")
            return

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
