"""Redis-only behaviour of `RedisRegistry` and `RedisStore`, beyond the shared contract suites:
the lazy driver import, errors when the server is away, key prefixes, fencing tokens shared by
several instances, exact token comparison in Lua, and a node running on both."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

import wes
from tests.support.counters import Counter
from tests.support.servers import _binary, _wait_for_port, free_port, redis_server
from wes.abc import Claim, ClaimKind, Ident, NameTaken, Record, Write

CH_A: tuple[ClaimKind, Ident] = ("channel", ("session", "a"))
LONG = 30.0


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone, so tests share the session's server without clashing."""
    return f"wes-test:{uuid.uuid4().hex}:"


def w(key: str, data: bytes, token: int, version: int = 1) -> Write:
    return Write(key=key, data=data, version=version, token=token)


async def keys_under(url: str, prefix: str) -> list[bytes]:
    """Every Redis key under `prefix`, straight from the server."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        return sorted([k async for k in client.scan_iter(match=prefix.encode() + b"*")])
    finally:
        await client.aclose()


@contextlib.contextmanager
def redis_on(port: int) -> Iterator[str]:
    """A private redis-server on a given port (so a test can start it again on the same one)."""
    proc = subprocess.Popen(
        [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


# --- the optional driver ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["RedisStore", "RedisRegistry"])
def test_missing_driver_says_what_to_install(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, constructing a Redis backend raises an ImportError naming the extra."""
    cls = getattr(wes, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=rf"{name} needs: pip install 'wes-actors\[redis\]'"):
        cls("redis://127.0.0.1:1/0")


@pytest.mark.subprocess
def test_module_imports_without_driver() -> None:
    """`wes` and the Redis backend module import in a process where redis-py cannot be found."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import wes, wes._backends.redis\n"
        "try:\n    wes.RedisStore('redis://x')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "RedisStore needs: pip install 'wes-actors[redis]'"


def test_repr_hides_the_password_and_timeout_is_checked() -> None:
    """A URL's password never shows in a backend's repr; a timeout must be positive."""
    store = wes.RedisStore("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in repr(store)
    assert "user:***@127.0.0.1:1" in repr(store)
    with pytest.raises(wes.InvalidConfig):
        wes.RedisRegistry("redis://127.0.0.1:1/0", timeout=0)


# --- the server away --------------------------------------------------------------------------


async def test_store_with_no_server_raises_store_unavailable() -> None:
    """Every store operation against a port where nothing listens raises `StoreUnavailable`,
    with the driver's error chained."""
    async with wes.RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0) as store:
        with pytest.raises(wes.StoreUnavailable) as info:
            await store.read(["k"])
        assert isinstance(info.value.__cause__, RedisConnectionError)
        with pytest.raises(wes.StoreUnavailable):
            await store.write([[w("k", b"v", 1)]])
        with pytest.raises(wes.StoreUnavailable):
            _ = [item async for item in store.scan()]


async def test_registry_with_no_server_raises_registry_unavailable() -> None:
    """Every registry operation against a port where nothing listens raises
    `RegistryUnavailable`."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with wes.RedisRegistry(url, timeout=1.0) as reg:
        with pytest.raises(wes.RegistryUnavailable) as info:
            await reg.claim([CH_A], "n", LONG)
        assert isinstance(info.value.__cause__, RedisConnectionError)
        with pytest.raises(wes.RegistryUnavailable):
            await reg.holder(*CH_A)
        claim = Claim("channel", ("session", "a"), "n", 1, LONG, 0.0)
        with pytest.raises(wes.RegistryUnavailable):
            await reg.renew([claim])
        with pytest.raises(wes.RegistryUnavailable):
            await reg.release([claim])


async def test_silent_server_times_out_as_unavailable() -> None:
    """A server that accepts but never answers gives `StoreUnavailable` after the timeout,
    not a hang."""
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with wes.RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.2) as store:
            start = time.monotonic()
            with pytest.raises(wes.StoreUnavailable):
                await store.read(["k"])
            assert time.monotonic() - start < 2.0
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.redis
async def test_server_stopped_mid_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store and a registry whose server stops raise the wes errors, not the driver's."""
    monkeypatch.delenv("WES_REDIS_URL", raising=False)
    with redis_server() as url:
        store = wes.RedisStore(url, timeout=1.0)
        reg = wes.RedisRegistry(url, timeout=1.0)
        await store.write([[w("k", b"v", 1)]])
        [claim] = await reg.claim([CH_A], "n", LONG)
    async with store, reg:
        with pytest.raises(wes.StoreUnavailable):
            await store.read(["k"])
        with pytest.raises(wes.RegistryUnavailable):
            await reg.renew([claim])


@pytest.mark.redis
async def test_backends_recover_when_the_server_returns() -> None:
    """After the server went away and came back on its address, the same instances work again."""
    port = free_port()
    with redis_on(port) as url:
        store = wes.RedisStore(url, timeout=1.0)
        reg = wes.RedisRegistry(url, timeout=1.0)
        await store.write([[w("k", b"v", 1)]])
        await reg.claim([CH_A], "n", LONG)
    with pytest.raises(wes.StoreUnavailable):
        await store.read(["k"])
    with redis_on(port):
        async with store, reg:
            await store.write([[w("k", b"again", 2)]])
            assert await store.read(["k"]) == {"k": Record(b"again", 1, 2)}
            await reg.claim([CH_A], "m", LONG)  # the server kept no data: the name is free
            assert await reg.holder(*CH_A) == "m"


async def test_closed_backends_raise_unavailable(redis_url: str, prefix: str) -> None:
    """Using a store or registry after `aclose` raises the unavailable error."""
    store = wes.RedisStore(redis_url, prefix=prefix)
    reg = wes.RedisRegistry(redis_url, prefix=prefix)
    await store.write([[w("k", b"v", 1)]])
    await store.aclose()
    await reg.aclose()
    with pytest.raises(wes.StoreUnavailable, match="closed"):
        await store.read(["k"])
    with pytest.raises(wes.RegistryUnavailable, match="closed"):
        await reg.holder(*CH_A)


# --- prefixes and keys ------------------------------------------------------------------------


async def test_prefixes_isolate_stores_and_registries(redis_url: str) -> None:
    """Backends with different prefixes on one database never see each other's keys or claims."""
    p1, p2 = f"wes-test:{uuid.uuid4().hex}:", f"wes-test:{uuid.uuid4().hex}:"
    async with (
        wes.RedisStore(redis_url, prefix=p1) as s1,
        wes.RedisStore(redis_url, prefix=p2) as s2,
        wes.RedisRegistry(redis_url, prefix=p1) as r1,
        wes.RedisRegistry(redis_url, prefix=p2) as r2,
    ):
        await s1.write([[w("a/1", b"one", 1)]])
        assert await s2.read(["a/1"]) == {}
        assert [k async for k, _ in s2.scan()] == []
        assert [k async for k, _ in s1.scan()] == ["a/1"]
        await r1.claim([CH_A], "n1", LONG)
        await r2.claim([CH_A], "n2", LONG)
        assert await r1.holder(*CH_A) == "n1"
        assert await r2.holder(*CH_A) == "n2"


async def test_store_and_registry_share_a_prefix(redis_url: str, prefix: str) -> None:
    """A store and a registry with the same prefix keep apart: claims are no stored keys."""
    async with (
        wes.RedisStore(redis_url, prefix=prefix) as store,
        wes.RedisRegistry(redis_url, prefix=prefix) as reg,
    ):
        await reg.claim([CH_A], "n", LONG)
        await store.write([[w("claim:x", b"v", 1), w("token", b"t", 1)]])
        assert await reg.holder(*CH_A) == "n"
        assert [k async for k, _ in store.scan()] == ["claim:x", "token"]


async def test_prefix_with_glob_characters(redis_url: str) -> None:
    """A prefix holding `*`, `?` and `[` works: nothing treats it as a pattern."""
    prefix = f"wes-test:{uuid.uuid4().hex}[*?]:"
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        await store.write([[w("a*", b"1", 1), w("a?", b"2", 1), w("b", b"3", 1)]])
        assert [k async for k, _ in store.scan("a")] == ["a*", "a?"]
        assert [k async for k, _ in store.scan("a?")] == ["a?"]


async def test_token_key_does_not_grow_per_name(redis_url: str, prefix: str) -> None:
    """Claiming and releasing many names leaves one key behind: the shared token counter."""
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        for i in range(50):
            claims = await reg.claim([("channel", ("s", i)), ("actor", ("a", str(i)))], "n", LONG)
            await reg.release(claims)
    assert await keys_under(redis_url, prefix) == [prefix.encode() + b"token"]


# --- registry specifics -----------------------------------------------------------------------


async def test_holders_roundtrip_losslessly(redis_url: str, prefix: str) -> None:
    """Holders come back with their types: tuples as tuples, ints as ints, unicode intact."""
    holders: list[Any] = [
        "node-1",
        ("session", 1),
        ("session", "1"),
        ("séance", "🙂 x"),
        ("nested", ("t", 2)),
        7,
    ]
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        for i, holder in enumerate(holders):
            await reg.claim([("actor", ("account", i))], holder, LONG)
        for i, holder in enumerate(holders):
            got = await reg.holder("actor", ("account", i))
            assert got == holder
            assert type(got) is type(holder)
        with pytest.raises(NameTaken) as info:
            await reg.claim([("actor", ("account", 1))], "other", LONG)
        assert info.value.holder == ("session", 1)


async def test_claim_retried_after_a_lost_reply_gets_its_own_names(
    redis_url: str, prefix: str
) -> None:
    """The claim script run again with the same call's nonce (the driver retrying after a broken
    connection) returns the tokens it already handed out; another call's nonce finds them taken."""
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        keys = [reg._token_key, reg._key(*CH_A), reg._key("actor", ("a", 1))]
        first = await reg._eval("claim", keys, [30_000, b'"n"', "00aa"])
        again = await reg._eval("claim", keys, [30_000, b'"n"', "00aa"])
        assert first[0] == again[0] == 0
        assert first[3:] == again[3:]
        other = await reg._eval("claim", keys, [30_000, b'"n"', "00bb"])
        assert other[0] == 1
        assert await reg.holder(*CH_A) == "n"


async def test_unsupported_holder_is_a_usage_error(redis_url: str, prefix: str) -> None:
    """A holder that cannot be serialized losslessly is refused before anything is claimed."""
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        with pytest.raises(wes.InvalidId):
            await reg.claim([CH_A], frozenset({"x"}), LONG)
        assert await reg.holder(*CH_A) is None


async def test_unicode_idents_are_names(redis_url: str, prefix: str) -> None:
    """Idents with non-ASCII text are claimed and looked up like any other."""
    name: tuple[ClaimKind, Ident] = ("actor", ("счёт", "ü/🙂 [*]"))
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        await reg.claim([name], ("канал", 1), LONG)
        assert await reg.holder(*name) == ("канал", 1)
        assert await reg.holder("actor", ("счёт", "ü/🙂 [x]")) is None


async def test_tokens_interleaved_across_instances_strictly_increase(
    redis_url: str, prefix: str
) -> None:
    """Two registry instances claiming one name in turn, and at once, hand out rising tokens."""
    async with (
        wes.RedisRegistry(redis_url, prefix=prefix) as r1,
        wes.RedisRegistry(redis_url, prefix=prefix) as r2,
    ):
        tokens = []
        for i in range(100):
            reg = (r1, r2)[i % 2]
            [claim] = await reg.claim([CH_A], f"n{i}", LONG)
            tokens.append(claim.token)
            await (r2, r1)[i % 2].release([claim])
        assert all(a < b for a, b in itertools.pairwise(tokens))
        many = await asyncio.gather(
            *(
                reg.claim([("channel", ("s", f"{i}-{j}"))], "n", LONG)
                for i in range(40)
                for j, reg in enumerate((r1, r2))
            )
        )
        fresh = [c.token for batch in many for c in batch]
        assert len(set(fresh)) == len(fresh)
        assert min(fresh) > tokens[-1]


async def test_tokens_derive_from_the_server_clock(redis_url: str, prefix: str) -> None:
    """Tokens are nanosecond-scale clock values like the in-process registry's, and a claim's
    `expires` is the server's time plus the lease."""
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        before = time.time_ns()
        [claim] = await reg.claim([CH_A], "n", 10.0)
        after = time.time_ns()
        # the server shares this host's clock; allow for its microsecond resolution
        assert before - 1_000_000 <= claim.token <= after + 1_000_000
        assert abs(claim.expires - (time.time() + 10.0)) < 1.0


async def test_tokens_never_fall_below_the_last_one(redis_url: str, prefix: str) -> None:
    """If the last token is ahead of the clock (a clock stepped back), tokens go on from it."""
    ahead = (time.time_ns() // 1000 + 3_600_000_000) * 1000 + 998  # an hour ahead, counter at 998
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set(prefix.encode() + b"token", str(ahead))
    finally:
        await client.aclose()
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        first, second, third = await reg.claim(
            [CH_A, ("channel", ("s", 2)), ("channel", ("s", 3))], "n", LONG
        )
        assert (first.token, second.token, third.token) == (ahead + 1, ahead + 2, ahead + 3)


async def test_renew_uses_each_claims_lease(redis_url: str, prefix: str) -> None:
    """A renewal extends each claim by its own lease, on the server's clock."""
    async with wes.RedisRegistry(redis_url, prefix=prefix) as reg:
        [short] = await reg.claim([CH_A], "n", 0.3)
        [long] = await reg.claim([("channel", ("s", "b"))], "n", LONG)
        assert await reg.renew([short, long]) == [True, True]
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            ttls = [await client.pttl(key) for key in await keys_under(redis_url, prefix)]
        finally:
            await client.aclose()
        assert sorted(t for t in ttls if t >= 0)[0] <= 300
        assert max(ttls) > 25_000


# --- store specifics --------------------------------------------------------------------------


async def test_tokens_compare_exactly_beyond_64_bits(redis_url: str, prefix: str) -> None:
    """Tokens are compared exactly in Lua, as decimal strings: huge and negative ones too."""
    big = 10**30
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        assert await store.write([[w("k", b"a", big + 1)]]) == [None]
        [slot] = await store.write([[w("k", b"b", big)]])
        assert isinstance(slot, wes.StaleToken)
        assert await store.write([[w("k", b"c", big + 1)], [w("k", b"d", big + 10)]]) == [None] * 2
        assert await store.read(["k"]) == {"k": Record(b"d", 1, big + 10)}
        assert await store.write([[w("n", b"x", -4)]]) == [None]
        [slot] = await store.write([[w("n", b"y", -5)]])
        assert isinstance(slot, wes.StaleToken)
        assert await store.write([[w("n", b"z", 0)], [w("n", b"q", 9)]]) == [None, None]
        [slot] = await store.write([[w("n", b"r", 8)]])
        assert isinstance(slot, wes.StaleToken)
        assert (await store.read(["n"]))["n"] == Record(b"q", 1, 9)


async def test_equal_and_differently_sized_tokens(redis_url: str, prefix: str) -> None:
    """An equal token is accepted, and tokens of other lengths or signs compare as numbers."""
    big = 2**70
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        for token in (big, -(10**25), 0, 99, -1):
            key = f"k{token}"
            assert await store.write([[w(key, b"a", token)]]) == [None]
            assert await store.write([[w(key, b"b", token)]]) == [None]  # the same owner again
            assert (await store.read([key]))[key] == Record(b"b", 1, token)
        assert await store.write([[w("k99", b"c", 100)]]) == [None]  # longer and greater
        [slot] = await store.write([[w("k99", b"d", 99)]])  # shorter and smaller
        assert isinstance(slot, wes.StaleToken)
        assert await store.write([[w("k-1", b"c", -1 + 10**20)]]) == [None]
        [slot] = await store.write([[w("k0", b"c", -(10**30))]])  # longer but negative
        assert isinstance(slot, wes.StaleToken)
        assert await store.write([[w(f"k{-(10**25)}", b"c", -(10**24))]]) == [None]
        [slot] = await store.write([[w(f"k{-(10**25)}", b"d", -(10**25))]])
        assert isinstance(slot, wes.StaleToken)
        assert await store.read(["k99", "k0", f"k{-(10**25)}"]) == {
            "k99": Record(b"c", 1, 100),
            "k0": Record(b"b", 1, 0),
            f"k{-(10**25)}": Record(b"c", 1, -(10**24)),
        }


async def test_stale_batch_between_written_ones(redis_url: str, prefix: str) -> None:
    """A stale batch amid others is refused whole, naming its stale key, while the batches
    before and after it, also of other sizes, are written."""
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        assert await store.write([[w("held", b"old", 10)]]) == [None]
        batches = [
            [w("a", b"a1", 5), w("b", b"b1", 5)],
            [w("c", b"c1", 5)],
            [w("new", b"never", 5), w("held", b"stale", 9), w("d", b"never", 5)],
            [],
            [w("e", b"e1", 5), w("f", b"", 5), w("g", b"g 1 2", 5)],
        ]
        result = await store.write(batches)
        assert [type(slot) for slot in result] == [
            type(None),
            type(None),
            wes.StaleToken,
            type(None),
            type(None),
        ]
        assert "'held' with fencing token 9" in str(result[2])
        assert "holds token 10" in str(result[2])
        assert await store.read(["a", "b", "c", "new", "held", "d", "e", "f", "g"]) == {
            "a": Record(b"a1", 1, 5),
            "b": Record(b"b1", 1, 5),
            "c": Record(b"c1", 1, 5),
            "held": Record(b"old", 1, 10),
            "e": Record(b"e1", 1, 5),
            "f": Record(b"", 1, 5),
            "g": Record(b"g 1 2", 1, 5),
        }
        assert [k async for k, _ in store.scan()] == ["a", "b", "c", "e", "f", "g", "held"]


async def test_index_holds_each_key_once(redis_url: str, prefix: str) -> None:
    """A key rewritten many times appears once in `scan`, and a key first written in a call
    among rewritten ones joins the index."""
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        assert await store.write([[w("b", b"1", 1)], [w("d", b"1", 1)]]) == [None, None]
        for i in range(3):
            assert await store.write([[w("b", b"%d" % i, 1)], [w("d", b"%d" % i, 2)]]) == [None] * 2
        result = await store.write([[w("d", b"x", 2)], [w("a", b"x", 1), w("b", b"x", 1)]])
        assert result == [None, None]
        assert await store.write([[w("c", b"y", 1)], [w("e", b"y", 1)]]) == [None, None]
        assert [(k, r.data) async for k, r in store.scan()] == [
            ("a", b"x"),
            ("b", b"x"),
            ("c", b"y"),
            ("d", b"x"),
            ("e", b"y"),
        ]
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            assert await client.zcard(prefix.encode() + b"store-index") == 5
        finally:
            await client.aclose()


async def test_write_keeps_every_bytes_value_and_version(redis_url: str, prefix: str) -> None:
    """Data of any bytes and length, versions and tokens survive the packed arguments, in
    batches of mixed sizes, and a call of only empty batches writes nothing."""
    values = [b"", b" ", b"\x00\xff 1 2 3", "é 🙂".encode(), bytes(range(256)) * 40, b"x" * 70_000]
    batches = [
        [
            w(f"v{i}/{j}", values[(i + j) % len(values)], 10**20 + i, version=i * 7 + j)
            for j in range(i % 3)
        ]
        for i in range(12)
    ]
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        assert await store.write([[], []]) == [None, None]
        assert await store.write(batches) == [None] * len(batches)
        expected = {x.key: Record(x.data, x.version, x.token) for batch in batches for x in batch}
        assert await store.read(list(expected)) == expected
        assert [k async for k, _ in store.scan()] == sorted(expected)


async def test_write_of_many_batches_is_one_script_call(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All batches of one `write` go to the server in one round trip."""
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        calls: list[str] = []
        original = store._eval

        async def counting(script: str, *args: Any) -> Any:
            calls.append(script)
            return await original(script, *args)

        monkeypatch.setattr(store, "_eval", counting)
        batches = [[w(f"b{i}/{j}", b"x", 1) for j in range(3)] for i in range(20)]
        assert await store.write(batches) == [None] * 20
        assert calls == ["write"]


async def test_scan_pages_stay_in_order_across_page_boundaries(redis_url: str, prefix: str) -> None:
    """A scan longer than a page yields every key once, in order, for a prefix and for all."""
    keys = [f"p/{i:04}" for i in range(600)] + ["p", "p0", "q/1", "o/1"]
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        await store.write([[w(k, k.encode(), 1) for k in keys]])
        got = [(k, r.data) async for k, r in store.scan("p/")]
        assert got == [(k, k.encode()) for k in sorted(keys) if k.startswith("p/")]
        assert [k async for k, _ in store.scan()] == sorted(keys)


async def test_unicode_and_surrogate_keys(redis_url: str, prefix: str) -> None:
    """Any str is a key, a lone surrogate too, and scans sort by code point."""
    keys = ["\ud800x", "\uffff", "\U00010000", "é", "z"]
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        await store.write([[w(k, b"v", 1) for k in keys]])
        assert set(await store.read(keys)) == set(keys)
        assert [k async for k, _ in store.scan()] == sorted(keys)


# --- a node on Redis --------------------------------------------------------------------------


async def test_node_runs_on_redis_store_and_registry(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """A node on Redis saves on every command, and a second node later loads the state."""

    def node() -> wes.Node:
        n = wes.Node(
            store=wes.RedisStore(redis_url, prefix=prefix),
            registry=wes.RedisRegistry(redis_url, prefix=prefix),
        )
        n.actor_type("counter", Counter)
        n.channel_type("session", lease=2.0, durability="command")
        return n

    async with node() as first:
        await first.create_channel(("session", "s"), [wes.create(("counter", "c"))])
        await first.command(("session", "s"), "incr", 5)
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        assert (await store.read(["counter/c"]))["counter/c"].data
    async with node() as second:
        await second.create_channel(("session", "s"), [wes.load(("counter", "c"))])
        await second.command(("session", "s"), "incr", 2)
        assert await second.read(("counter", "c"), "value") == 7


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "ab" * 20, 3, b"k1", b"k\x00\xff", "k\u00e9", 7, "", "1 2 3", b""),
        ("GET", b"x" * 100_000),  # one argument beyond redis-py's buffer cutoff
        ("SET", "k", -5),
        ("SCRIPT LOAD", "return 1"),  # a command name with a space: split by redis-py
        ("SET", "k", 1.5),  # a float: left to redis-py
        ("SET", "k", memoryview(b"abc")),  # a memoryview: left to redis-py
        (b"GET", "k"),
    ],
)
def test_fast_packing_sends_the_bytes_redis_py_would(args: tuple[Any, ...]) -> None:
    """The store's connections put on the wire exactly what redis-py's own packing would."""
    from redis.asyncio.connection import Connection

    from wes._backends._redis_client import with_fast_packing

    fast = with_fast_packing(Connection)()
    plain = Connection()
    assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))


async def test_store_connections_use_fast_packing(redis_url: str, prefix: str) -> None:
    """A store's client packs commands with the faster packer, and its writes round-trip."""
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        assert await store.write([[w("k", b"v", 1)]]) == [None]
        client = store._client()
        assert client.connection_pool.connection_class.__name__.startswith("FastPacking")
        assert (await store.read(["k"]))["k"] == Record(b"v", 1, 1)


async def test_a_write_larger_than_one_call_is_split_and_stays_exact(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose states exceed what one script call carries goes out in several calls;
    every batch is still written whole or refused whole, each with its own result."""
    monkeypatch.setattr("wes._backends.redis._CALL_BYTES", 100)
    async with wes.RedisStore(redis_url, prefix=prefix) as store:
        assert await store.write([[w("k/7", b"newer", 50)]]) == [None]
        batches = [[w(f"k/{i}", b"%030d" % i, 10), w(f"j/{i}", b"j", 10)] for i in range(20)]
        result = await store.write(batches)
        assert [i for i, r in enumerate(result) if r is not None] == [7]
        assert isinstance(result[7], wes.StaleToken)
        got = await store.read([f"{k}/{i}" for i in range(20) for k in "kj"])
        assert got.pop("k/7") == Record(b"newer", 1, 50)
        expected = {f"k/{i}": Record(b"%030d" % i, 1, 10) for i in range(20) if i != 7}
        expected |= {f"j/{i}": Record(b"j", 1, 10) for i in range(20) if i != 7}
        assert got == expected
