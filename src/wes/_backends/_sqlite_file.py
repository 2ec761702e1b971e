"""One SQLite file in WAL mode, worked on by one dedicated thread: what `SqliteStore` and
`SqliteRegistry` share, so that neither blocks the event loop on disk; and `KeyedReads`,
which lets concurrent reads of keys share one trip to that thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Generic, TypeVar

from .._errors import WesError

T = TypeVar("T")
V = TypeVar("V")


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
            raise self.closed_error()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="wes-sqlite")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: BaseException) -> BaseException:
        """What an error raised on the worker thread is for the caller: `unavailable` for
        `sqlite3` and OS errors (chained to them), anything else unchanged."""
        if not isinstance(exc, sqlite3.Error | OSError):
            return exc
        error = self.error(str(exc))
        error.__cause__ = exc
        return error

    def error(self, message: str) -> WesError:
        """An `unavailable` error about this file: `message`, after the owner's label."""
        return self._unavailable(f"{self._label}: {message}")

    def closed_error(self) -> WesError:
        """The error of a call that comes after (or is cut short by) closing."""
        return self._unavailable(f"{self._label} is closed")

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


_Caller = tuple[list[str], asyncio.Future[dict[str, V]]]  # a read's keys, and its answer


class KeyedReads(Generic[V]):
    """Concurrent reads of keys from one `SqliteFile`, coalesced: each trip to the worker
    thread reads the keys of every read waiting at that moment, with one call of `read`.

    A trip costs more than a small read (a hand-over to the thread and back, and the GIL
    handed back and forth while the event loop is busy), so under load many reads share one.
    A read that arrives while a trip is under way waits for the next one. Each caller gets
    its own keys' records, or its own error: a trip that fails is redone one caller at a
    time on the thread, as if each had read alone, so one caller's bad key or a passing
    failure fails no one else's read. A caller cancelled while it waits leaves the others
    waiting; it is dropped from a trip not yet made.

    Args:
        file: the file whose worker thread reads.
        read: reads some keys on the worker thread: the records of those the file holds,
            in one snapshot.
    """

    def __init__(self, file: SqliteFile, read: Callable[[list[str]], dict[str, V]]) -> None:
        self._file = file
        self._read = read
        self._waiting: list[_Caller[V]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    async def read(self, keys: Iterable[str]) -> dict[str, V]:
        """The records of those of `keys` the file holds, read with the reads waiting now."""
        if self._closed:
            raise self._file.closed_error()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, V]] = loop.create_future()
        self._waiting.append((list(keys), answer))
        if self._drainer is None:
            # Its first step runs after the tasks already scheduled in this round of the
            # loop: the reads they make join the first trip.
            self._drainer = loop.create_task(self._drain())
        return await answer

    async def aclose(self) -> None:
        """Refuse new reads, and wait until every waiting read is answered. Idempotent."""
        self._closed = True
        drainer = self._drainer
        if drainer is None:
            return
        try:
            await drainer
        except asyncio.CancelledError:  # and so was the drainer, perhaps before it began
            self._abandon(trip=[])
            raise

    async def _drain(self) -> None:
        """Make trips while reads wait; then end (the next read starts a new drainer)."""
        trip: list[_Caller[V]] = []
        try:
            while self._waiting:
                trip = [c for c in self._waiting if not c[1].done()]  # done: cancelled
                self._waiting = []
                if trip:
                    await self._make(trip)
                trip = []
        except BaseException:  # cancelled: by a cancelled `aclose`, or as the loop ends
            self._abandon(trip)
            raise
        finally:
            self._drainer = None

    def _abandon(self, trip: list[_Caller[V]]) -> None:
        """Fail the reads of `trip` and every waiting one: nothing will answer them now."""
        for _, answer in chain(trip, self._waiting):
            _fail(answer, self._file.closed_error())
        self._waiting = []
        self._drainer = None

    async def _make(self, trip: list[_Caller[V]]) -> None:
        try:
            outcomes = await self._file.run(self._read_all, [keys for keys, _ in trip])
        except Exception as exc:  # the file was closed under the trip: every caller alike
            for _, answer in trip:
                error = self._file.error(f"read failed: {exc}")
                error.__cause__ = exc
                _fail(answer, error)
            return
        for (_, answer), outcome in zip(trip, outcomes, strict=True):
            if answer.done():  # its caller was cancelled during the trip
                continue
            if isinstance(outcome, BaseException):
                answer.set_exception(self._file.translate(outcome))
            else:
                answer.set_result(outcome)

    def _read_all(self, groups: list[list[str]]) -> list[dict[str, V] | Exception]:
        """On the worker thread: each group's records, from one read of all their keys."""
        if len(groups) > 1:
            try:
                found = self._read(list(dict.fromkeys(chain.from_iterable(groups))))
            except Exception:  # whose fault? Each group alone tells.
                pass
            else:
                return [{k: found[k] for k in keys if k in found} for keys in groups]
        return [self._read_alone(keys) for keys in groups]

    def _read_alone(self, keys: list[str]) -> dict[str, V] | Exception:
        try:
            return self._read(keys)
        except Exception as exc:
            return exc


def _fail(answer: asyncio.Future[T], error: BaseException) -> None:
    if not answer.done():
        answer.set_exception(error)
