"""The `wes.abc.Store` contract, run against every store implementation.

A new backend joins the suite with one line in `STORES`. SQLite-only behaviour (persistence
across reopen, WAL, event-loop friendliness, driver errors) is tested at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import wes
from wes.abc import Record, Store, Write

# name -> factory(tmp_path, *fixtures) -> a fresh, empty store. Later backends are one line
# each; a factory's parameters after the first name the fixtures it needs (a server's URL).
STORES: dict[str, Callable[..., Store]] = {
    "memory": lambda tmp: wes.MemoryStore(),
    "sqlite": lambda tmp: wes.SqliteStore(tmp / "s.db"),
    "redis": lambda tmp, redis_url: wes.RedisStore(redis_url, prefix=f"wes-test:{tmp}:"),
    "postgres": lambda tmp, postgres_dsn: wes.PostgresStore(postgres_dsn, table=unique_table()),
}


def unique_table() -> str:
    """A table name no other test uses, so each PostgreSQL store starts empty."""
    return f"wes_test_{uuid.uuid4().hex}"


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each implementation; each test closes it with `async with`."""
    factory = STORES[request.param]
    needs = list(inspect.signature(factory).parameters)[1:]
    yield factory(tmp_path, *(request.getfixturevalue(name) for name in needs))


def w(key: str, data: bytes, token: int, version: int = 1) -> Write:
    return Write(key=key, data=data, version=version, token=token)


async def scan_all(store: Store, prefix: str = "") -> list[tuple[str, Record]]:
    return [item async for item in store.scan(prefix)]


async def write_ok(store: Store, *batches: list[Write]) -> None:
    result = await store.write(list(batches))
    assert result == [None] * len(batches)


# --- reads and writes -------------------------------------------------------------------------


async def test_read_of_missing_keys_is_empty(store: Store) -> None:
    """Reading keys that were never written returns an empty dict, not an error."""
    async with store:
        assert await store.read(["nope", "counter/1"]) == {}
        assert await store.read([]) == {}


async def test_read_returns_only_existing_keys(store: Store) -> None:
    """A read of present and missing keys returns exactly the present ones."""
    async with store:
        await write_ok(store, [w("a", b"1", 1)])
        got = await store.read(["a", "b"])
        assert got == {"a": Record(data=b"1", version=1, token=1)}


async def test_write_then_read_roundtrips_record(store: Store) -> None:
    """A written key reads back with the same data, version and token."""
    async with store:
        await write_ok(store, [w("counter/a", b'{"value": 2}', 7, version=3)])
        got = await store.read(["counter/a"])
        assert got == {"counter/a": Record(data=b'{"value": 2}', version=3, token=7)}
        assert type(got["counter/a"].data) is bytes


async def test_binary_data_roundtrips_exactly(store: Store) -> None:
    """Values are binary safe: NUL bytes, every byte value, the empty value and 1 MB values."""
    values = {
        "nul": b"\x00",
        "bytes": bytes(range(256)) * 4,
        "empty": b"",
        "big": os.urandom(1 << 20),
        "nul-big": b"\x00" * (1 << 20),
    }
    async with store:
        await write_ok(store, [w(k, v, 1) for k, v in values.items()])
        got = await store.read(list(values))
        assert {k: r.data for k, r in got.items()} == values
        assert all(type(r.data) is bytes for r in got.values())


async def test_unicode_keys_roundtrip(store: Store) -> None:
    """Keys with non-ASCII text, spaces and symbols are stored and read back as given."""
    keys = ["счёт/я", "user/ünïcödé", "emoji/🙂🚀", "space key/1", "quote'\"/%_*"]
    async with store:
        await write_ok(store, [w(k, k.encode(), 1) for k in keys])
        got = await store.read(keys)
        assert {k: r.data for k, r in got.items()} == {k: k.encode() for k in keys}
        assert [k for k, _ in await scan_all(store)] == sorted(keys)


async def test_overwrite_replaces_data_and_version(store: Store) -> None:
    """A second write of a key replaces its data and version."""
    async with store:
        await write_ok(store, [w("k", b"old", 1, version=1)])
        await write_ok(store, [w("k", b"new", 2, version=2)])
        assert await store.read(["k"]) == {"k": Record(b"new", 2, 2)}


async def test_write_of_no_batches_returns_empty_list(store: Store) -> None:
    """Writing no batches returns an empty result list; an empty batch succeeds."""
    async with store:
        assert await store.write([]) == []
        assert await store.write([[]]) == [None]


async def test_write_returns_one_slot_per_batch(store: Store) -> None:
    """Several batches in one call each get a `None` slot and each is fully written."""
    async with store:
        batches = [[w(f"b{i}/{j}", f"{i}.{j}".encode(), 1) for j in range(3)] for i in range(5)]
        assert await store.write(batches) == [None] * 5
        got = await store.read([x.key for batch in batches for x in batch])
        assert len(got) == 15
        assert got["b3/2"].data == b"3.2"


# --- atomicity and fencing --------------------------------------------------------------------


async def test_batch_with_one_stale_key_writes_nothing(store: Store) -> None:
    """A batch is all or nothing: one stale key makes the store keep every key of it unchanged."""
    async with store:
        await write_ok(store, [w("a", b"a5", 5), w("b", b"b1", 1)])
        result = await store.write([[w("b", b"b-new", 4), w("a", b"a-stale", 4), w("c", b"c", 4)]])
        assert len(result) == 1
        assert isinstance(result[0], wes.StaleToken)
        got = await store.read(["a", "b", "c"])
        assert got == {"a": Record(b"a5", 1, 5), "b": Record(b"b1", 1, 1)}


async def test_stale_batch_refused_while_others_in_same_call_succeed(store: Store) -> None:
    """A stale batch gets `StaleToken` in its own slot; the batches around it are written."""
    async with store:
        await write_ok(store, [w("x", b"x9", 9)])
        result = await store.write(
            [
                [w("p", b"p", 1), w("q", b"q", 1)],
                [w("x", b"x-stale", 8), w("y", b"y", 8)],
                [w("r", b"r", 3)],
            ]
        )
        assert len(result) == 3
        assert result[0] is None
        assert isinstance(result[1], wes.StaleToken)
        assert result[2] is None
        got = await store.read(["p", "q", "r", "x", "y"])
        assert {k: r.data for k, r in got.items()} == {
            "p": b"p",
            "q": b"q",
            "r": b"r",
            "x": b"x9",
        }
        assert got["x"].token == 9


async def test_large_call_refuses_only_its_stale_batch(store: Store) -> None:
    """A call of thousands of one-key batches, as a save sweep makes, with one stale batch in
    the middle: that batch alone is refused, every other one is written with its own data."""
    n = 2 * 1024 + 3  # more rows than one statement of the SQLite store takes, not a power of 2
    async with store:
        await write_ok(store, [w("s/1000", b"newer", 50)])
        batches = [[w(f"s/{i}", b"%d" % i, 10)] for i in range(n)]
        result = await store.write(batches)
        assert [i for i, r in enumerate(result) if r is not None] == [1000]
        assert isinstance(result[1000], wes.StaleToken)
        got = await store.read([f"s/{i}" for i in range(n)])
        assert got.pop("s/1000") == Record(b"newer", 1, 50)
        assert got == {f"s/{i}": Record(b"%d" % i, 1, 10) for i in range(n) if i != 1000}


async def test_stale_token_error_is_a_wes_error(store: Store) -> None:
    """The refusal is a `wes.StaleToken`, a `WesError`, returned rather than raised."""
    async with store:
        await write_ok(store, [w("k", b"v", 2)])
        [slot] = await store.write([[w("k", b"v", 1)]])
        assert isinstance(slot, wes.StaleToken)
        assert isinstance(slot, wes.WesError)


async def test_equal_token_is_accepted(store: Store) -> None:
    """A write carrying the same token as the stored one is accepted (the owner saves again)."""
    async with store:
        await write_ok(store, [w("k", b"first", 5)])
        await write_ok(store, [w("k", b"second", 5)])
        assert await store.read(["k"]) == {"k": Record(b"second", 1, 5)}


async def test_newer_token_is_accepted_and_then_fences_older(store: Store) -> None:
    """A newer token is accepted, and from then on the previous token is refused."""
    async with store:
        await write_ok(store, [w("k", b"old-owner", 5)])
        await write_ok(store, [w("k", b"new-owner", 6)])
        [slot] = await store.write([[w("k", b"late-old-owner", 5)]])
        assert isinstance(slot, wes.StaleToken)
        assert await store.read(["k"]) == {"k": Record(b"new-owner", 1, 6)}


async def test_tokens_are_compared_per_key(store: Store) -> None:
    """A high token on one key does not fence a lower token on another key."""
    async with store:
        await write_ok(store, [w("hi", b"h", 1_000_000)])
        await write_ok(store, [w("lo", b"l", 1)])
        assert (await store.read(["lo"]))["lo"].token == 1


async def test_large_tokens_roundtrip_and_compare(store: Store) -> None:
    """Clock-derived tokens (nanoseconds, above 2**62) are stored and compared exactly."""
    base = time.time_ns() * 4
    async with store:
        await write_ok(store, [w("k", b"a", base + 1)])
        [slot] = await store.write([[w("k", b"b", base)]])
        assert isinstance(slot, wes.StaleToken)
        await write_ok(store, [w("k", b"c", base + 2)])
        assert await store.read(["k"]) == {"k": Record(b"c", 1, base + 2)}


async def test_later_batch_in_same_call_is_fenced_by_earlier_one(store: Store) -> None:
    """Batches of one call apply in order: a stale batch after a newer one for the same key is
    refused, so grouping writes into one commit never lets an old owner win."""
    async with store:
        result = await store.write([[w("k", b"new", 6)], [w("k", b"old", 5)]])
        assert result[0] is None
        assert isinstance(result[1], wes.StaleToken)
        assert await store.read(["k"]) == {"k": Record(b"new", 1, 6)}


async def test_newer_batch_after_older_in_same_call_wins(store: Store) -> None:
    """Two batches of one call for the same key with rising tokens are both accepted."""
    async with store:
        result = await store.write([[w("k", b"old", 5)], [w("k", b"new", 6)]])
        assert result == [None, None]
        assert await store.read(["k"]) == {"k": Record(b"new", 1, 6)}


async def test_concurrent_readers_see_whole_batches(store: Store) -> None:
    """A read of a batch's keys racing its writes sees all of one write or all of another."""
    keys = [f"acct/{i:03}" for i in range(100)]
    async with store:
        await write_ok(store, [w(k, b"0", 1) for k in keys])
        stop = False

        async def writer() -> None:
            nonlocal stop
            for gen in range(1, 41):
                await write_ok(store, [w(k, str(gen).encode(), 1) for k in keys])
                await asyncio.sleep(0)  # a store that never suspends still lets the reader in
            stop = True

        async def reader() -> int:
            reads = 0
            while not stop:
                got = await store.read(keys)
                values = {r.data for r in got.values()}
                assert len(got) == len(keys)
                assert len(values) == 1, f"torn read: {sorted(values)}"
                reads += 1
                await asyncio.sleep(0)
            return reads

        _, reads = await asyncio.gather(writer(), reader())
        assert reads > 0


async def test_concurrent_reads_each_get_exactly_their_own_keys(store: Store) -> None:
    """Many reads in flight at once, of overlapping and missing keys (a store may serve them
    together), each get the records of their own keys and nothing else."""
    async with store:
        await write_ok(store, [w(f"r/{i}", b"%d" % i, i + 1) for i in range(20)])
        wants = [[f"r/{i}", f"r/{(i * 7) % 20}", f"none/{i}"] for i in range(20)]
        got = await asyncio.gather(*(store.read(keys) for keys in wants))
        for keys, records in zip(wants, got, strict=True):
            assert records == {
                k: Record(b"%d" % int(k[2:]), 1, int(k[2:]) + 1) for k in keys if k[0] == "r"
            }


async def test_concurrent_write_calls_all_land(store: Store) -> None:
    """Many write calls in flight at once (as many channels saving) all succeed and persist."""
    async with store:
        results = await asyncio.gather(
            *(
                store.write([[w(f"c/{i}/{j}", bytes([i, j]), i + 1) for j in range(4)]])
                for i in range(50)
            )
        )
        assert results == [[None]] * 50
        assert len(await scan_all(store, "c/")) == 200


# --- scan -------------------------------------------------------------------------------------


async def test_scan_yields_prefix_matches_in_key_order(store: Store) -> None:
    """`scan(prefix)` yields exactly the keys starting with the prefix, in key order."""
    keys = ["a/2", "a/10", "b/1", "a/1", "ab/1", "a", "a/1/x", "A/1", "aa/1"]
    async with store:
        await write_ok(store, [w(k, k.encode(), 3, version=2) for k in keys])
        got = await scan_all(store, "a/")
        assert [k for k, _ in got] == ["a/1", "a/1/x", "a/10", "a/2"]
        assert dict(got)["a/10"] == Record(b"a/10", 2, 3)
        assert [k for k, _ in await scan_all(store)] == sorted(keys)
        assert [k for k, _ in await scan_all(store, "")] == sorted(keys)
        assert [k for k, _ in await scan_all(store, "zzz")] == []


async def test_scan_prefix_is_literal_and_case_sensitive(store: Store) -> None:
    """A prefix is matched literally: `%`, `_` and `*` are no wildcards and case matters."""
    keys = ["a_/1", "ab/1", "a%/1", "aXY/1", "a*/1", "A_/1", "a[/1"]
    async with store:
        await write_ok(store, [w(k, b"", 1) for k in keys])
        assert [k for k, _ in await scan_all(store, "a_")] == ["a_/1"]
        assert [k for k, _ in await scan_all(store, "a%")] == ["a%/1"]
        assert [k for k, _ in await scan_all(store, "a*")] == ["a*/1"]
        assert [k for k, _ in await scan_all(store, "a[")] == ["a[/1"]
        assert [k for k, _ in await scan_all(store, "A")] == ["A_/1"]


async def test_scan_with_unicode_prefix(store: Store) -> None:
    """A non-ASCII prefix selects the right keys, in code point order."""
    keys = ["ü/2", "ü/1", "u/1", "üb/1", "v/1", "\U0001f642/1"]
    async with store:
        await write_ok(store, [w(k, b"", 1) for k in keys])
        assert [k for k, _ in await scan_all(store, "ü")] == ["ü/1", "ü/2", "üb/1"]
        assert [k for k, _ in await scan_all(store)] == sorted(keys)


async def test_scan_sees_large_key_sets(store: Store) -> None:
    """A scan over thousands of keys yields every one of them exactly once, in order."""
    keys = [f"n/{i}" for i in range(3000)]
    async with store:
        await write_ok(store, [w(k, b"x", 1) for k in keys])
        assert [k for k, _ in await scan_all(store, "n/")] == sorted(keys)


# --- lifecycle --------------------------------------------------------------------------------


async def test_aclose_is_idempotent(store: Store) -> None:
    """Closing a store twice (also after `async with`) silently succeeds."""
    async with store:
        await write_ok(store, [w("k", b"v", 1)])
    await store.aclose()
    await store.aclose()


async def test_async_with_returns_the_store(store: Store) -> None:
    """`async with store as s` binds the store itself."""
    async with store as s:
        assert s is store


async def test_is_a_store(store: Store) -> None:
    """Every implementation is a `wes.abc.Store`."""
    async with store:
        assert isinstance(store, Store)


# --- SQLite specifics -------------------------------------------------------------------------


def test_sqlite_store_refuses_an_unknown_synchronous_setting(tmp_path: Path) -> None:
    """`SqliteStore(synchronous=...)` accepts only SQLite's levels and names the bad one."""
    with pytest.raises(wes.InvalidConfig, match="'SOMETIMES'"):
        wes.SqliteStore(tmp_path / "s.db", synchronous="SOMETIMES")  # type: ignore[arg-type]


async def test_sqlite_data_persists_across_reopen(tmp_path: Path) -> None:
    """What a SqliteStore wrote is there, with token and version, after closing and reopening."""
    path = tmp_path / "s.db"
    async with wes.SqliteStore(path) as s:
        await write_ok(s, [w("k", b"\x00v\xff", 11, version=4), w("j", b"", 2)])
    async with wes.SqliteStore(path) as s:
        got = await s.read(["k", "j"])
        assert got == {"k": Record(b"\x00v\xff", 4, 11), "j": Record(b"", 1, 2)}


async def test_sqlite_fencing_survives_reopen(tmp_path: Path) -> None:
    """Stored tokens still fence after a reopen: a restarted store refuses an older token."""
    path = tmp_path / "s.db"
    async with wes.SqliteStore(path) as s:
        await write_ok(s, [w("k", b"v", 11)])
    async with wes.SqliteStore(path) as s:
        [slot] = await s.write([[w("k", b"late", 10)]])
        assert isinstance(slot, wes.StaleToken)
        assert (await s.read(["k"]))["k"].data == b"v"


async def test_sqlite_accepts_str_path(tmp_path: Path) -> None:
    """`SqliteStore` takes a `str` path as well as a `Path`."""
    async with wes.SqliteStore(str(tmp_path / "s.db")) as s:
        await write_ok(s, [w("k", b"v", 1)])
    assert (tmp_path / "s.db").exists()


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    """The SQLite file is in WAL journal mode, while open and after closing."""
    path = tmp_path / "s.db"
    async with wes.SqliteStore(path) as s:
        await write_ok(s, [w("k", b"v", 1)])
        # sqlite3's own context manager commits but does not close (Python 3.13 warns).
        with contextlib.closing(sqlite3.connect(path)) as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


async def test_sqlite_first_open_waits_for_a_writer_of_a_new_file(tmp_path: Path) -> None:
    """A store opening a new file that another connection is writing, before anyone switched
    it to WAL, waits for the writer instead of failing (SQLite answers that switch with
    SQLITE_BUSY at once, without its busy handler)."""
    path = tmp_path / "s.db"
    locked = threading.Event()

    def hold() -> None:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as con:
            con.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.3)
            con.execute("COMMIT")

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait()
    try:
        async with wes.SqliteStore(path) as s:
            await write_ok(s, [w("k", b"v", 1)])
            assert (await s.read(["k"]))["k"].data == b"v"
    finally:
        thread.join()


async def test_sqlite_write_does_not_block_event_loop(tmp_path: Path) -> None:
    """A big write runs off the event loop: a ticker task keeps ticking while it is in flight."""
    async with wes.SqliteStore(tmp_path / "s.db") as s:
        n_keys = 2000
        value = os.urandom(8 * 1024)
        duration = 0.0
        for attempt in range(6):  # grow the write until it takes long enough to measure
            ticks: list[float] = []
            done = asyncio.Event()

            async def ticker(ticks: list[float] = ticks, done: asyncio.Event = done) -> None:
                while not done.is_set():
                    ticks.append(time.perf_counter())
                    await asyncio.sleep(0.002)

            batch = [w(f"big/{attempt}/{i}", value + bytes([attempt]), 1) for i in range(n_keys)]
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            start = time.perf_counter()
            await write_ok(s, batch)
            duration = time.perf_counter() - start
            done.set()
            await task
            if duration >= 0.25:
                break
            n_keys *= 2
        assert duration >= 0.1, f"write too fast to measure ({duration:.3f}s)"
        during = [t for t in ticks if start <= t <= start + duration]
        gaps = [b - a for a, b in itertools.pairwise(ticks) if b > start]
        max_gap = max(gaps, default=duration)
        assert len(during) >= 5, f"{len(during)} ticks during a {duration:.3f}s write"
        assert max_gap < duration / 2, f"loop blocked {max_gap:.3f}s of a {duration:.3f}s write"


async def test_sqlite_read_does_not_block_event_loop(tmp_path: Path) -> None:
    """A big read runs off the event loop: a ticker task keeps ticking while it is in flight."""
    async with wes.SqliteStore(tmp_path / "s.db") as s:
        keys = [f"big/{i}" for i in range(4000)]
        value = os.urandom(16 * 1024)
        for i in range(0, len(keys), 500):
            await write_ok(s, [w(k, value, 1) for k in keys[i : i + 500]])
        ticks: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.002)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        for _ in range(3):
            assert len(await s.read(keys)) == len(keys)
        duration = time.perf_counter() - start
        done.set()
        await task
        gaps = [b - a for a, b in itertools.pairwise(ticks) if b > start]
        if duration >= 0.1:
            assert max(gaps, default=duration) < duration / 2, (
                f"loop blocked during a {duration:.3f}s read"
            )


def _not_a_database(path: Path, *, drop_journal: bool = False) -> None:
    if drop_journal:
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database, just text\n" * 200)


async def _expect_unavailable_on_write(make: Callable[[], Store]) -> None:
    """Opening may fail at once or on first use; either way the error is `StoreUnavailable`."""
    with pytest.raises(wes.StoreUnavailable) as info:
        async with make() as s:
            await s.write([[w("k", b"v", 1)]])
    assert not isinstance(info.value, sqlite3.Error)


async def test_sqlite_corrupt_file_gives_store_unavailable(tmp_path: Path) -> None:
    """A file that is not an SQLite database gives `StoreUnavailable`, not a raw sqlite3 error."""
    path = tmp_path / "s.db"
    _not_a_database(path)
    await _expect_unavailable_on_write(lambda: wes.SqliteStore(path))


async def test_sqlite_corrupt_file_read_gives_store_unavailable(tmp_path: Path) -> None:
    """A read from a file that is not an SQLite database gives `StoreUnavailable`."""
    path = tmp_path / "s.db"
    _not_a_database(path)
    with pytest.raises(wes.StoreUnavailable):
        async with wes.SqliteStore(path) as s:
            await s.read(["k"])


async def test_sqlite_file_corrupted_between_runs_gives_store_unavailable(tmp_path: Path) -> None:
    """A database whose file is overwritten with garbage gives `StoreUnavailable` on reopen."""
    path = tmp_path / "s.db"
    async with wes.SqliteStore(path) as s:
        await write_ok(s, [w("k", b"v", 1)])
    _not_a_database(path, drop_journal=True)
    await _expect_unavailable_on_write(lambda: wes.SqliteStore(path))


async def test_sqlite_unopenable_path_gives_store_unavailable(tmp_path: Path) -> None:
    """A path under a regular file (no directory can be made there) gives `StoreUnavailable`."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    await _expect_unavailable_on_write(lambda: wes.SqliteStore(blocker / "s.db"))


async def test_sqlite_directory_path_gives_store_unavailable(tmp_path: Path) -> None:
    """A path that is a directory gives `StoreUnavailable`."""
    await _expect_unavailable_on_write(lambda: wes.SqliteStore(tmp_path))


async def test_sqlite_error_chains_the_cause(tmp_path: Path) -> None:
    """The `StoreUnavailable` of a broken file chains the driver error as its cause."""
    path = tmp_path / "s.db"
    _not_a_database(path)
    with pytest.raises(wes.StoreUnavailable) as info:
        async with wes.SqliteStore(path) as s:
            await s.write([[w("k", b"v", 1)]])
    assert info.value.__cause__ is not None


async def test_sqlite_read_is_one_snapshot_across_connections(tmp_path: Path) -> None:
    """A read of many keys (more than one SQL statement's worth) is one snapshot: while another
    store on the same file rewrites them all, it sees one whole write, never a mix."""
    path = tmp_path / "s.db"
    keys = [f"acct/{i:04}" for i in range(1500)]
    async with wes.SqliteStore(path) as writer, wes.SqliteStore(path) as reader:
        await write_ok(writer, [w(k, b"0", 1) for k in keys])
        stop = False

        async def write_generations() -> None:
            nonlocal stop
            for gen in range(1, 31):
                await write_ok(writer, [w(k, str(gen).encode(), 1) for k in keys])
            stop = True

        async def read_all() -> int:
            reads = 0
            while not stop:
                got = await reader.read(keys)
                values = sorted({r.data for r in got.values()})
                assert len(got) == len(keys)
                assert len(values) == 1, f"torn read, generations {values}"
                reads += 1
            return reads

        _, reads = await asyncio.gather(write_generations(), read_all())
        assert reads > 0


async def test_sqlite_call_of_several_statements_refuses_only_its_stale_batch(
    tmp_path: Path,
) -> None:
    """A call of more rows than one SQLite statement takes is one transaction: all written,
    or, with a stale batch in its last statement, that batch alone refused and every other
    row of the earlier statements written once, with its own data."""
    n = 2 * 4096 + 5
    async with wes.SqliteStore(tmp_path / "s.db") as store:
        await write_ok(store, *[[w(f"s/{i}", b"%d" % i, 10)] for i in range(n)])
        await write_ok(store, [w(f"s/{n - 2}", b"newer", 50)])
        result = await store.write([[w(f"s/{i}", b"again %d" % i, 20)] for i in range(n)])
        assert [i for i, r in enumerate(result) if r is not None] == [n - 2]
        got = await store.read([f"s/{i}" for i in range(n)])
        assert got.pop(f"s/{n - 2}") == Record(b"newer", 1, 50)
        assert got == {f"s/{i}": Record(b"again %d" % i, 1, 20) for i in range(n) if i != n - 2}
        assert len(await scan_all(store, "s/")) == n


def test_sqlite_statements_fit_the_parameter_limit() -> None:
    """Rows per statement shrink to what SQLite's bound-parameter limit allows (999 before
    SQLite 3.32), a power of two; the rest of a write is padded to at most a quarter more."""
    from wes._backends import sqlite

    conn = sqlite3.connect(":memory:")
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        assert sqlite._max_rows(conn) == 128
    finally:
        conn.close()
    for rows in range(1, 3 * 128):
        sizes = sqlite._statements(rows, 128)
        assert sizes[:-1] == [128] * (len(sizes) - 1)
        assert rows <= sum(sizes) <= rows + max(1, (rows % 128 or 128) // 4)
