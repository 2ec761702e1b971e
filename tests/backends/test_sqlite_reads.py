"""Reads of `SqliteStore` coalesced (`KeyedReads`): the reads waiting together share one
trip to the SQLite thread, and yet each caller gets exactly its own records or its own error,
also when a trip fails, a caller is cancelled, or the store closes under them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import wes
from wes._backends._sqlite_file import KeyedReads, SqliteFile
from wes.abc import Record, Write

Rows = dict[str, int]


class Reader:
    """A `read` for `KeyedReads` over a dict, run on the worker thread: it records each
    trip's keys, fails where told, and waits at `gate` while `gate` is shut."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.trips: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set as a trip begins
        self.fail: Callable[[list[str]], BaseException | None] = lambda keys: None

    def __call__(self, keys: list[str]) -> Rows:
        self.trips.append(keys)
        self.entered.set()
        self.gate.wait(10.0)
        error = self.fail(keys)
        if error is not None:
            raise error
        return {k: self.rows[k] for k in keys if k in self.rows}


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[SqliteFile]:
    yield SqliteFile(
        str(tmp_path / "r.db"),
        label="TestFile",
        unavailable=wes.StoreUnavailable,
        synchronous="NORMAL",
        timeout=1.0,
        setup=lambda conn: None,
    )


async def _trip_begun(reader: Reader) -> None:
    """Wait (off the loop) until a trip is on the worker thread."""
    await asyncio.to_thread(reader.entered.wait, 10.0)


async def _in_flight(reads: KeyedReads[int], reader: Reader, keys: list[str]) -> asyncio.Task[Rows]:
    """A read of `keys` whose trip is held on the worker thread (the gate is shut)."""
    reader.gate.clear()
    task = asyncio.create_task(reads.read(keys))
    await _trip_begun(reader)
    return task


async def _closing_under_a_trip(
    reads: KeyedReads[int], reader: Reader
) -> tuple[asyncio.Task[Rows], asyncio.Task[Rows], asyncio.Task[None]]:
    """A read of `a` on the worker thread (held there), one of `b` waiting for the next
    trip, and an `aclose` begun under them."""
    first = await _in_flight(reads, reader, ["a"])
    waiting = asyncio.create_task(reads.read(["b"]))
    await _settle()
    closing = asyncio.create_task(reads.aclose())
    await _settle()
    return first, waiting, closing


async def _settle() -> None:
    """Let every task scheduled now take its steps (its read joins the waiting ones)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_reads_waiting_together_share_one_trip(sqlite_file: SqliteFile) -> None:
    """Reads started in one round of the loop are read in one trip, of all their keys."""
    reader = Reader({"a": 1, "b": 2, "c": 3})
    reads = KeyedReads(sqlite_file, reader)
    got = list(await asyncio.gather(reads.read(["a"]), reads.read(["b"]), reads.read(["c", "a"])))
    assert got == [{"a": 1}, {"b": 2}, {"c": 3, "a": 1}]
    assert reader.trips == [["a", "b", "c"]]
    await reads.aclose()
    await sqlite_file.aclose()


async def test_each_caller_gets_only_its_own_keys(tmp_path: Path) -> None:
    """Callers sharing a trip each get the records of their own keys, none of the others'
    and none of keys the store does not hold."""
    async with wes.SqliteStore(tmp_path / "s.db") as store:
        await store.write([[Write(f"k/{i}", b"%d" % i, 1, 7) for i in range(4)]])
        got = list(
            await asyncio.gather(
                store.read(["k/0", "k/1"]), store.read(["k/1", "k/2"]), store.read(["k/9"])
            )
        )
    assert got == [
        {"k/0": Record(b"0", 1, 7), "k/1": Record(b"1", 1, 7)},
        {"k/1": Record(b"1", 1, 7), "k/2": Record(b"2", 1, 7)},
        {},
    ]


async def test_read_arriving_during_a_trip_joins_the_next(sqlite_file: SqliteFile) -> None:
    """A read made while a trip is on the worker thread waits for it, then goes in the next
    trip, with every other read that arrived meanwhile."""
    reader = Reader({"a": 1, "b": 2, "c": 3})
    reads = KeyedReads(sqlite_file, reader)
    first = await _in_flight(reads, reader, ["a"])
    later = [asyncio.create_task(reads.read([k])) for k in ("b", "c")]
    await _settle()
    assert reader.trips == [["a"]]
    reader.gate.set()
    assert await first == {"a": 1}
    assert [await t for t in later] == [{"b": 2}, {"c": 3}]
    assert reader.trips == [["a"], ["b", "c"]]
    await reads.aclose()
    await sqlite_file.aclose()


async def test_failed_trip_fails_only_the_caller_whose_keys_fail(sqlite_file: SqliteFile) -> None:
    """A trip whose read fails is redone one caller at a time: the caller whose keys fail
    gets `StoreUnavailable` naming the file and the cause; the others get their records."""
    reader = Reader({"a": 1, "b": 2})
    reader.fail = lambda keys: sqlite3.OperationalError("no such key") if "bad" in keys else None
    reads = KeyedReads(sqlite_file, reader)
    got = await asyncio.gather(
        reads.read(["a"]), reads.read(["bad"]), reads.read(["b"]), return_exceptions=True
    )
    assert got[0] == {"a": 1}
    assert got[2] == {"b": 2}
    error = got[1]
    assert isinstance(error, wes.StoreUnavailable)
    assert str(error) == "TestFile: no such key"
    assert isinstance(error.__cause__, sqlite3.OperationalError)
    assert reader.trips == [["a", "bad", "b"], ["a"], ["bad"], ["b"]]
    await reads.aclose()
    await sqlite_file.aclose()


async def test_trip_whose_sql_fails_fails_each_of_its_callers_alone(
    sqlite_file: SqliteFile,
) -> None:
    """When every read of a trip fails, each caller gets an error of its own (not one shared
    object), chained to its own cause; the next trip reads again."""
    reader = Reader({"a": 1})
    reader.fail = lambda keys: sqlite3.OperationalError("disk I/O error")
    reads = KeyedReads(sqlite_file, reader)
    got = await asyncio.gather(reads.read(["a"]), reads.read(["a"]), return_exceptions=True)
    errors = [e for e in got if isinstance(e, wes.StoreUnavailable)]
    assert len(errors) == 2
    assert all("disk I/O error" in str(e) for e in errors)
    assert errors[0] is not errors[1]
    assert errors[0].__cause__ is not errors[1].__cause__
    reader.fail = lambda keys: None
    assert await reads.read(["a"]) == {"a": 1}
    await reads.aclose()
    await sqlite_file.aclose()


async def test_error_other_than_sqlite_reaches_its_caller_unchanged(
    sqlite_file: SqliteFile,
) -> None:
    """An error of the read that is not SQLite's or the OS's reaches its caller as it is,
    as a read alone would raise it."""
    reader = Reader({"a": 1})
    reader.fail = lambda keys: (
        UnicodeEncodeError("utf-8", "x", 0, 1, "bad") if "x" in keys else None
    )
    reads = KeyedReads(sqlite_file, reader)
    got = await asyncio.gather(reads.read(["x"]), reads.read(["a"]), return_exceptions=True)
    assert isinstance(got[0], UnicodeEncodeError)
    assert got[1] == {"a": 1}
    await reads.aclose()
    await sqlite_file.aclose()


async def test_bad_key_fails_only_its_own_read(tmp_path: Path) -> None:
    """A key SQLite cannot bind (not a str) fails the read that asked for it with
    `StoreUnavailable`; reads sharing its trip get their records."""
    async with wes.SqliteStore(tmp_path / "s.db") as store:
        await store.write([[Write("good", b"g", 1, 1)]])
        bad: list[str] = [["a", "list"]]  # type: ignore[list-item]  # what the test is about
        got = await asyncio.gather(
            store.read(["good"]), store.read(bad), store.read(["good"]), return_exceptions=True
        )
    assert got[0] == got[2] == {"good": Record(b"g", 1, 1)}
    assert isinstance(got[1], wes.StoreUnavailable)
    assert "binding parameter" in str(got[1])


async def test_caller_cancelled_before_its_trip_is_left_out(sqlite_file: SqliteFile) -> None:
    """A read cancelled while it waits for the next trip is not read; the reads waiting with
    it are."""
    reader = Reader({"a": 1, "b": 2, "c": 3})
    reads = KeyedReads(sqlite_file, reader)
    first = await _in_flight(reads, reader, ["a"])
    dropped = asyncio.create_task(reads.read(["b"]))
    kept = asyncio.create_task(reads.read(["c"]))
    await _settle()
    dropped.cancel()
    reader.gate.set()
    assert await first == {"a": 1}
    assert await kept == {"c": 3}
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert reader.trips == [["a"], ["c"]]
    await reads.aclose()
    await sqlite_file.aclose()


async def test_caller_cancelled_during_its_trip_leaves_the_others_answered(
    sqlite_file: SqliteFile,
) -> None:
    """A read cancelled while its trip is on the worker thread raises `CancelledError`; the
    other reads of that trip, and later reads, get their records."""
    reader = Reader({"a": 1, "b": 2})
    reads = KeyedReads(sqlite_file, reader)
    reader.gate.clear()
    cancelled = asyncio.create_task(reads.read(["a"]))
    other = asyncio.create_task(reads.read(["b"]))
    await _trip_begun(reader)
    cancelled.cancel()
    await _settle()
    reader.gate.set()
    assert await other == {"b": 2}
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await reads.read(["a"]) == {"a": 1}
    await reads.aclose()
    await sqlite_file.aclose()


async def test_close_answers_the_reads_waiting(sqlite_file: SqliteFile) -> None:
    """`aclose` waits until the trip under way and the reads waiting for the next are
    answered; a read after it fails with `StoreUnavailable` saying it is closed."""
    reader = Reader({"a": 1, "b": 2})
    reads = KeyedReads(sqlite_file, reader)
    first, waiting, closing = await _closing_under_a_trip(reads, reader)
    assert not closing.done()
    reader.gate.set()
    await closing
    assert await first == {"a": 1}
    assert await waiting == {"b": 2}
    with pytest.raises(wes.StoreUnavailable, match="TestFile is closed"):
        await reads.read(["a"])
    await reads.aclose()  # idempotent
    await sqlite_file.aclose()


async def test_close_cancelled_fails_the_reads_waiting(sqlite_file: SqliteFile) -> None:
    """An `aclose` cancelled while a trip is under way stops the trips: every read still
    waiting fails with `StoreUnavailable` (closed) instead of waiting forever."""
    reader = Reader({"a": 1, "b": 2})
    reads = KeyedReads(sqlite_file, reader)
    first, waiting, closing = await _closing_under_a_trip(reads, reader)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    for task in (first, waiting):
        with pytest.raises(wes.StoreUnavailable, match="closed"):
            await task
    reader.gate.set()  # let the worker thread finish its trip
    await sqlite_file.aclose()


async def test_close_cancelled_before_the_drainer_began(sqlite_file: SqliteFile) -> None:
    """An `aclose` cancelled in the very round a read was made (its trips not yet begun)
    fails that read too."""
    reader = Reader({"a": 1})
    reads = KeyedReads(sqlite_file, reader)
    read = asyncio.create_task(reads.read(["a"]))
    closing = asyncio.create_task(reads.aclose())
    await asyncio.sleep(0)  # the read started the drainer, which aclose awaits: not yet run
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    with pytest.raises(wes.StoreUnavailable, match="closed"):
        await asyncio.wait_for(read, 10.0)  # a guard: without the fix it would wait forever
    assert reader.trips == []
    await sqlite_file.aclose()


async def test_file_closed_under_waiting_reads_fails_them(sqlite_file: SqliteFile) -> None:
    """Reads waiting when their file is closed directly (not through `KeyedReads.aclose`)
    fail with `StoreUnavailable` naming the file, chained to the refusal."""
    reader = Reader({"a": 1})
    reads = KeyedReads(sqlite_file, reader)
    read = asyncio.create_task(reads.read(["a"]))
    await sqlite_file.aclose()
    with pytest.raises(wes.StoreUnavailable, match="TestFile: read failed") as info:
        await read
    assert isinstance(info.value.__cause__, wes.StoreUnavailable)
    await reads.aclose()


async def test_store_close_answers_reads_under_way(tmp_path: Path) -> None:
    """`SqliteStore.aclose` made while reads wait answers them before closing the file."""
    store = wes.SqliteStore(tmp_path / "s.db")
    await store.write([[Write("k", b"v", 1, 1)]])
    reads = [asyncio.create_task(store.read(["k"])) for _ in range(3)]
    await asyncio.sleep(0)
    await store.aclose()
    assert [await r for r in reads] == [{"k": Record(b"v", 1, 1)}] * 3
    with pytest.raises(wes.StoreUnavailable, match="closed"):
        await store.read(["k"])


async def test_reads_of_every_size_get_exactly_their_keys(tmp_path: Path) -> None:
    """Statements are padded to few sizes with repeats of a key: reads of any number of
    keys, within one statement and across several, get each stored key once."""
    keys = [f"n/{i}" for i in range(1100)]
    async with wes.SqliteStore(tmp_path / "s.db") as store:
        await store.write([[Write(k, k.encode(), 1, 1) for k in keys]])
        for size in (*range(1, 70), 127, 128, 129, 499, 500, 501, 1000, 1100):
            want = [*keys[:size], "missing"]
            got = await store.read(want)
            assert sorted(got) == sorted(keys[:size]), size
            assert all(got[k].data == k.encode() for k in got)


async def test_read_of_one_statement_runs_no_transaction(tmp_path: Path) -> None:
    """A read that fits in one statement is one snapshot by itself, so it runs that statement
    alone; a read of more keys wraps its statements in one transaction."""
    async with wes.SqliteStore(tmp_path / "s.db") as store:
        await store.write([[Write("k", b"v", 1, 1)]])
        statements: list[str] = []
        await store._file.run(
            lambda: store._file.connection().set_trace_callback(statements.append)
        )
        await store.read(["k", "j"])
        assert [s.split()[0] for s in statements] == ["SELECT"]
        statements.clear()
        await store.read([f"x/{i}" for i in range(600)])
        assert [s.split()[0] for s in statements] == ["BEGIN", "SELECT", "SELECT", "COMMIT"]
