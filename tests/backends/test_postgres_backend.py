"""PostgreSQL specifics of `wes.PostgresStore`; shared behaviour is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
import uuid
from collections.abc import Sequence

import psycopg
import pytest

import wes
from tests.support.servers import free_port, postgres_server
from wes._writer import flat_write_of, writes_on_thread
from wes.abc import Record, Write


def w(key: str, data: bytes, token: int, version: int = 1) -> Write:
    return Write(key=key, data=data, version=version, token=token)


def table() -> str:
    return f"wes_pg_{uuid.uuid4().hex}"


async def table_exists(dsn: str, name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{name}"',))
        row = await cur.fetchone()
        return bool(row and row[0])


async def test_schema_created_on_first_use_not_before(postgres_dsn: str) -> None:
    """Constructing a store touches nothing; its first operation creates the table."""
    name = table()
    async with wes.PostgresStore(postgres_dsn, table=name) as store:
        assert not await table_exists(postgres_dsn, name)
        assert await store.read(["k"]) == {}
        assert await table_exists(postgres_dsn, name)


async def test_schema_created_by_concurrent_stores(postgres_dsn: str) -> None:
    """Several stores creating the same new table at once all succeed and share it."""
    for _ in range(3):
        name = table()
        stores = [wes.PostgresStore(postgres_dsn, table=name) for _ in range(4)]
        try:
            results = await asyncio.gather(
                *(s.write([[w(f"k{i}", bytes([i]), 1)]]) for i, s in enumerate(stores))
            )
            assert results == [[None]] * 4
            got = await stores[0].read([f"k{i}" for i in range(4)])
            assert {k: r.data for k, r in got.items()} == {f"k{i}": bytes([i]) for i in range(4)}
        finally:
            for s in stores:
                await s.aclose()


async def test_state_and_fencing_shared_across_instances(postgres_dsn: str) -> None:
    """A second store on the same table sees the first one's writes and is fenced by them."""
    name = table()
    async with wes.PostgresStore(postgres_dsn, table=name) as a:
        await a.write([[w("k", b"\x00a\xff", 9, version=3)]])
    async with wes.PostgresStore(postgres_dsn, table=name) as b:
        assert await b.read(["k"]) == {"k": Record(b"\x00a\xff", 3, 9)}
        [slot] = await b.write([[w("k", b"late", 8)]])
        assert isinstance(slot, wes.StaleToken)
        assert "'k'" in str(slot) and "8" in str(slot) and "9" in str(slot)


async def test_large_call_of_5000_rows(postgres_dsn: str) -> None:
    """One call of 5,000 rows over many batches is written whole, also when one batch is stale."""
    async with wes.PostgresStore(postgres_dsn, table=table()) as store:
        batches = [[w(f"big/{b:02}/{i:03}", b"v" * 200, 5) for i in range(100)] for b in range(50)]
        assert await store.write(batches) == [None] * 50
        one_batch = [w(f"one/{i:04}", b"x", 1) for i in range(5000)]
        assert await store.write([one_batch]) == [None]
        # The stale batch forces the per-batch path over all 5,000 rows.
        rewrite = [[w(x.key, b"new", 6) for x in batch] for batch in batches]
        rewrite[17][50] = w(rewrite[17][50].key, b"stale", 4)
        results = await store.write(rewrite)
        assert [i for i, r in enumerate(results) if r is not None] == [17]
        assert isinstance(results[17], wes.StaleToken)
        got = await store.read([x.key for batch in batches for x in batch])
        assert len(got) == 5000
        assert {r.data for k, r in got.items() if k.startswith("big/17/")} == {b"v" * 200}
        assert {r.data for k, r in got.items() if not k.startswith("big/17/")} == {b"new"}
        assert len([k async for k, _ in store.scan("one/")]) == 5000


async def test_repeated_keys_across_batches_of_one_call(postgres_dsn: str) -> None:
    """A key in several batches of one call (and twice in one batch) is applied in order."""
    async with wes.PostgresStore(postgres_dsn, table=table()) as store:
        results = await store.write(
            [
                [w("a", b"a1", 1), w("b", b"b1", 1)],
                [w("a", b"a2", 2)],
                [w("b", b"b0", 0), w("c", b"c0", 0)],
                [w("c", b"c1", 1), w("c", b"c2", 2)],
            ]
        )
        assert results[:2] == [None, None]
        assert isinstance(results[2], wes.StaleToken)
        assert results[3] is None
        got = await store.read(["a", "b", "c"])
        assert got == {"a": Record(b"a2", 1, 2), "b": Record(b"b1", 1, 1), "c": Record(b"c2", 1, 2)}


async def test_down_server_gives_store_unavailable_quickly() -> None:
    """A server that does not listen gives `StoreUnavailable` within the connect timeout."""
    dsn = f"postgresql://wes@127.0.0.1:{free_port()}/postgres"
    async with wes.PostgresStore(dsn, connect_timeout=0.5) as store:
        start = time.monotonic()
        with pytest.raises(wes.StoreUnavailable) as info:
            await store.write([[w("k", b"v", 1)]])
        assert time.monotonic() - start < 3.0
        assert isinstance(info.value.__cause__, psycopg.Error)
        with pytest.raises(wes.StoreUnavailable):
            await store.read(["k"])
        with pytest.raises(wes.StoreUnavailable):
            _ = [item async for item in store.scan()]


@pytest.mark.postgres
async def test_server_gone_after_use_gives_store_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store whose server stops while the store is open reports `StoreUnavailable` for
    every operation, within its connect timeout, and closes cleanly."""
    monkeypatch.delenv("WES_POSTGRES_DSN", raising=False)  # a private server this test can stop
    with postgres_server() as dsn:
        store = wes.PostgresStore(dsn, connect_timeout=0.5)
        await store.write([[w("k", b"v", 1)]])
    try:
        for op in (
            store.write([[w("k", b"v2", 2)]]),
            store.read(["k"]),
            anext(aiter(store.scan())),
        ):
            start = time.monotonic()
            with pytest.raises(wes.StoreUnavailable) as info:
                await op
            assert time.monotonic() - start < 3.0
            assert isinstance(info.value.__cause__, psycopg.Error)
    finally:
        await store.aclose()


async def test_store_recovers_after_its_connections_are_killed(postgres_dsn: str) -> None:
    """When the server drops the pool's idle connections (as on a restart), the next
    operations still succeed: dead connections are replaced, not reported."""
    async with wes.PostgresStore(postgres_dsn, table=table(), min_size=3) as store:
        await asyncio.gather(*(store.read(["k"]) for _ in range(5)))  # several connections
        await store.write([[w("k", b"v1", 1)]])
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                " AND backend_type = 'client backend'"
            )
            await wait_until_gone(admin)
        assert await store.write([[w("k", b"v2", 2)]]) == [None]
        assert await store.read(["k"]) == {"k": Record(b"v2", 1, 2)}
        assert [k async for k, _ in store.scan()] == ["k"]


async def wait_until_gone(admin: psycopg.AsyncConnection[tuple[int]]) -> None:
    """Wait until the admin connection is the only client left."""
    for _ in range(200):
        cur = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND datname = current_database()"
        )
        if await cur.fetchone() == (1,):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("terminated connections did not go away")


async def test_closed_store_gives_store_unavailable(postgres_dsn: str) -> None:
    """Using a store after `aclose` gives `StoreUnavailable`; closing again is fine."""
    store = wes.PostgresStore(postgres_dsn, table=table())
    await store.write([[w("k", b"v", 1)]])
    await store.aclose()
    with pytest.raises(wes.StoreUnavailable):
        await store.read(["k"])
    await store.aclose()


async def test_odd_table_name_is_quoted(postgres_dsn: str) -> None:
    """A table name needing quotes (capitals, spaces, a quote) works and is not injected."""
    name = f'Wes "states"; DROP TABLE x {uuid.uuid4().hex[:8]}'
    async with wes.PostgresStore(postgres_dsn, table=name) as store:
        await store.write([[w("k", b"v", 1)]])
        assert (await store.read(["k"]))["k"].data == b"v"
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (name,))
        assert await cur.fetchone() == (1,)


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg the module still imports, and the constructor says what to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    monkeypatch.delitem(sys.modules, "wes._backends.postgres", raising=False)
    module = importlib.import_module("wes._backends.postgres")
    with pytest.raises(ImportError, match=r"pip install 'wes-actors\[postgres\]'"):
        module.PostgresStore("postgresql://localhost/db")
    with pytest.raises(ImportError, match=r"wes-actors\[postgres\]"):
        wes.PostgresStore("postgresql://localhost/db")


def test_bad_settings_are_invalid_config() -> None:
    """Impossible pool sizes, timeouts, table names or DSNs raise `InvalidConfig` at once."""
    dsn = "postgresql://localhost/db"
    for kwargs in (
        {"min_size": 3, "max_size": 2},
        {"max_size": 0, "min_size": 0},
        {"connect_timeout": 0},
        {"table": ""},
    ):
        with pytest.raises(wes.InvalidConfig):
            wes.PostgresStore(dsn, **kwargs)
    with pytest.raises(wes.InvalidConfig):
        wes.PostgresStore("host=localhost port='unterminated")


def test_repr_hides_the_password() -> None:
    """The store's repr (which error messages quote) never shows the password."""
    url = wes.PostgresStore("postgresql://u:s3cret@localhost:5432/db")
    kv = wes.PostgresStore("host=localhost user=u password=s3cret dbname=db")
    for store in (url, kv):
        assert "s3cret" not in repr(store)
        assert "***" in repr(store)


class _Counting(wes.PostgresStore):
    """Notes the states its `write` is given."""

    seen: set[tuple[str, bytes]]

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        self.seen.update((w.key, w.data) for batch in batches for w in batch)
        return await super().write(batches)


class Tally(wes.Actor):
    def __init__(self) -> None:
        self.value = 0

    @wes.command
    def incr(self) -> None:
        self.value += 1


async def _sweep_twice(store: wes.PostgresStore, n: int) -> dict[str, Record]:
    """`n` channels of a `Tally` each, saved periodically, made dirty once more; returns
    the stored records once every second state is there."""
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("tally", Tally)
    node.channel_type("c", idle_timeout=None, save_interval=0.01)
    keys = [f"tally/{i}" for i in range(n)]
    async with node:
        for i in range(n):
            await node.create_channel(("c", i), wes.create(("tally", i)))
        for i in range(n):
            await node.command(("c", i), "incr")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = await store.read(keys)
            if all(r.data == b'{"value":1}' for r in got.values()) and len(got) == n:
                return got
            await asyncio.sleep(0.01)
    raise AssertionError("the second states were not all stored")


async def test_a_node_saves_through_the_flat_write(postgres_dsn: str) -> None:
    """The node's writer hands `PostgresStore` its rows flat (columns sliced, no `Write` per
    row); a sweep of many channels stores every state, each under its own token."""
    assert flat_write_of(wes.PostgresStore(postgres_dsn)) is not None
    assert not writes_on_thread(wes.PostgresStore(postgres_dsn))  # its I/O is on the loop
    async with wes.PostgresStore(postgres_dsn, table=table()) as store:
        got = await _sweep_twice(store, 700)
        assert {(r.version, r.token > 0) for r in got.values()} == {(1, True)}


async def test_a_subclass_that_changes_write_sees_every_save(postgres_dsn: str) -> None:
    """A subclass that overrides `write` gets no flat writes: every save goes through it."""
    async with _Counting(postgres_dsn, table=table()) as store:
        store.seen = set()
        assert flat_write_of(store) is None
        await _sweep_twice(store, 50)
        assert {(f"tally/{i}", b'{"value":1}') for i in range(50)} <= store.seen
