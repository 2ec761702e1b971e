"""Durability and leases: periodic and per-command saves, unencodable states, fencing tokens,
registry lease expiry, lease renewal by running channels, lost leases, custom codecs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
from collections.abc import Sequence
from typing import Any

import pytest

import wes
from tests.support import counters
from tests.support.backends import Backend, stored
from tests.support.claims import actor_claim
from tests.support.delegating import DelegatingRegistry, DelegatingStore
from tests.support.nodes import OTHER, SESSION, A, node_of
from tests.support.recorder import Recorder
from tests.support.waiting import wait_until
from wes.abc import Claim, NameTaken, Record, Registry, Store, Write

SPOILT = ("counter", "spoilt")


class Counter(counters.Counter):
    @wes.command
    def spoil(self) -> None:
        self.bad: set[int] | list[int] = {1, 2}  # a set: JSON cannot encode it

    @wes.command
    def heal(self) -> None:
        self.bad = [1, 2]


def make_node(
    store: Store | None = None,
    registry: Registry | None = None,
    stats: wes.abc.Stats | None = None,
    **kw: Any,
) -> wes.Node:
    return node_of({"counter": Counter}, store, registry, stats or wes.MemoryStats(), **kw)


# --- durability="periodic" ---------------------------------------------------------------


async def test_periodic_durability_saves_after_save_interval(backend: Backend) -> None:
    """With durability="periodic" changed states are written within about save_interval."""
    store = backend.store()
    stats = wes.MemoryStats()
    node = make_node(store, stats=stats, save_interval=0.1)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr", 2)
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) >= 1)
        assert await stored(store, "counter/a") == {"value": 3}
        await node.command(SESSION, "incr", 4)
        before = stats.counts()[("save", "ok")]
        await wait_until(lambda: stats.counts()[("save", "ok")] > before)
        assert await stored(store, "counter/a") == {"value": 7}
        assert await node.status(SESSION) is not None


async def test_without_save_interval_states_are_written_on_stop_only(backend: Backend) -> None:
    """With save_interval=None a command does not write; the normal stop does."""
    store = backend.store()
    node = make_node(store)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr")
        await asyncio.sleep(0.1)
        assert await stored(store, "counter/a") is None
        await node.stop_channel(SESSION)
        assert await stored(store, "counter/a") == {"value": 2}


# --- durability="command" ----------------------------------------------------------------


async def test_command_durability_stores_before_the_command_returns(backend: Backend) -> None:
    """With durability="command" the store holds a command's new states when it returns."""
    store = backend.store()
    node = make_node(store, durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        for expected in (2, 3, 4):
            await node.command(SESSION, "incr")
            assert await stored(store, "counter/a") == {"value": expected}


async def test_command_durability_holds_for_concurrent_channels(backend: Backend) -> None:
    """With durability="command" every concurrently acknowledged command of many channels is
    stored when its call returns."""
    store = backend.store()
    node = make_node(store, durability="command")
    async with node:
        for i in range(10):
            await node.create_channel(("session", i), [wes.create(("counter", i), i)])

        async def bump(i: int) -> None:
            await node.command(("session", i), "incr", 100)
            assert await stored(store, f"counter/{i}") == {"value": 100 + i}

        await asyncio.gather(*(bump(i) for i in range(10)))


@pytest.mark.registries
async def test_restart_after_command_durability_sees_acknowledged_commands(
    backend: Backend,
) -> None:
    """A new node on the same store sees every command acknowledged under durability="command",
    even when the old node's channel died before any normal stop."""
    node = make_node(backend.store(), backend.registry(), durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr", 5)
        with pytest.raises(wes.StateNotEncodable):
            await node.command(SESSION, "spoil")  # the channel dies without saving
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(SESSION, [wes.load(A)])
        assert await node.read(A, "value") == 6


# --- unencodable states ------------------------------------------------------------------


async def test_unencodable_state_fails_the_periodic_save_and_channel_keeps_running(
    backend: Backend,
) -> None:
    """Under periodic durability a state the codec cannot encode fails that save with an error
    naming the actor, stats count ("save", "error"), and the channel keeps running."""
    store = backend.store()
    stats = Recorder()
    node = make_node(store, stats=stats, save_interval=0.05)
    async with node:
        await node.create_channel(SESSION, [wes.create(SPOILT, 1)])
        await node.command(SESSION, "spoil")
        await wait_until(lambda: stats.count("save", "error") >= 1)
        error = stats.errors("save", "error")[0]
        assert isinstance(error, wes.StateNotEncodable)
        assert "spoilt" in str(error)
        assert await node.status(SESSION) is not None
        await node.command(SESSION, "incr")
        assert await node.read(SPOILT, "value") == 2
        await node.command(SESSION, "heal")
        oks = stats.count("save", "ok")
        await wait_until(lambda: stats.count("save", "ok") > oks)
        assert await stored(store, "counter/spoilt") == {"value": 2, "bad": [1, 2]}
        assert not [e for e in stats.events if e[0] == "stop"]


async def test_unencodable_state_under_command_durability_fails_the_command(
    backend: Backend,
) -> None:
    """Under durability="command" a command leaving a state the codec cannot encode raises an
    error naming the actor, and the channel stops without saving."""
    store = backend.store()
    node = make_node(store, durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(SPOILT, 1)])
        await node.command(SESSION, "incr")
        with pytest.raises(wes.StateNotEncodable, match="spoilt") as info:
            await node.command(SESSION, "spoil")
        assert info.value.actor == SPOILT
        assert await node.status(SESSION) is None
        assert await stored(store, "counter/spoilt") == {"value": 2}


class Looped(wes.Actor):
    """`loop_back` makes its state refer to itself, which no codec can write."""

    def __init__(self) -> None:
        self.value: Any = 0

    @wes.command
    def ping(self) -> None:
        pass

    @wes.command
    def loop_back(self) -> None:
        self.value = [self]  # to_state sees a list holding the actor itself

    def to_state(self) -> dict[str, Any]:
        if isinstance(self.value, list):
            state: dict[str, Any] = {}
            state["me"] = state  # refers to itself: no codec can write it
            return state
        return {"value": self.value}


async def test_a_state_that_refers_to_itself_fails_its_save_and_the_channel_runs_on() -> None:
    """A self-referring state cannot be encoded: the periodic save fails naming the actor,
    counted as ("save", "error"), and the channel keeps serving."""
    stats = wes.MemoryStats()
    node = wes.Node(store=wes.MemoryStore(), stats=stats)
    node.actor_type("looped", Looped)
    node.channel_type("s")
    async with node:
        await node.create_channel(("s", 1), wes.create(("looped", "a")))
        await node.command(("s", 1), "loop_back")
        with pytest.raises(wes.StateNotEncodable, match="'looped', 'a'"):
            await node.stop_channel(("s", 1))
        assert stats.counts()[("save", "error")] == 1
        assert await node.status(("s", 1)) is not None
        await node.command(("s", 1), "ping")  # the channel still serves commands
        assert await node.status(("s", 1)) is not None


class Refuser(wes.Actor):
    """A `to_state` of its own that raises once `refuse` ran."""

    def __init__(self) -> None:
        self.refusing = False

    @wes.command
    def refuse(self) -> None:
        self.refusing = True

    def to_state(self) -> dict[str, Any]:
        if self.refusing:
            raise LookupError("no state today")
        return {"refusing": False}


async def test_a_to_state_that_raises_fails_the_save_naming_the_actor() -> None:
    """An exception from an actor's own `to_state` is a `StateNotEncodable` naming the actor,
    chaining the exception, as the codec's own errors are."""
    node = wes.Node(store=wes.MemoryStore())
    node.actor_type("refuser", Refuser)
    node.channel_type("s", durability="command")
    async with node:
        await node.create_channel(("s", 1), wes.create(("refuser", "r")))
        with pytest.raises(wes.StateNotEncodable, match="'refuser', 'r'") as info:
            await node.command(("s", 1), "refuse")
        assert isinstance(info.value.__cause__, LookupError)


class Mixed(wes.Actor):
    """Public and private attributes, the default `to_state`."""

    def __init__(self) -> None:
        self.value = 1
        self._cache = [1, 2]

    @wes.command
    def incr(self) -> None:
        self.value += 1


@pytest.mark.parametrize("private", [False, True])
async def test_the_default_state_saved_is_the_public_attributes(private: bool) -> None:
    """Saves write what the default `to_state` returns (the public attributes), whether or
    not the actor has private ones, and leave the actor's attributes as they were."""
    store = wes.MemoryStore()
    node = wes.Node(store=store)
    node.actor_type("mixed", Mixed)
    node.channel_type("s", durability="command")
    async with node:
        await node.create_channel(("s", 1), wes.create(("mixed", "m")))
        actor = node._rt.actors[("mixed", "m")]
        assert isinstance(actor, Mixed)
        if not private:
            del actor._cache
        await node.command(("s", 1), "incr")
        assert await stored(store, "mixed/m") == actor.to_state() == {"value": 2}
        assert vars(actor) == ({"value": 2, "_cache": [1, 2]} if private else {"value": 2})


# --- custom codec ------------------------------------------------------------------------


class Tagged(wes.abc.Codec):
    def encode(self, state: dict[str, Any]) -> bytes:
        return b"TAG:" + json.dumps(state).encode()

    def decode(self, data: bytes) -> dict[str, Any]:
        assert data.startswith(b"TAG:")
        result: dict[str, Any] = json.loads(data[4:])
        return result


async def test_node_codec_encodes_and_decodes_states(backend: Backend) -> None:
    """The node's codec turns states into the stored bytes and back."""
    store = backend.store()
    node = wes.Node(store=store, registry=wes.MemoryRegistry(), codec=Tagged())
    node.actor_type("counter", Counter)
    node.channel_type("session", idle_timeout=None, save_interval=None)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 3)])
        await node.stop_channel(SESSION)
        record = (await store.read(["counter/a"]))["counter/a"]
        assert record.data.startswith(b"TAG:")
        assert json.loads(record.data[4:]) == {"value": 3}
        await node.create_channel(SESSION, [wes.load(A)])
        assert await node.read(A, "value") == 3


# --- stores refuse stale tokens ------------------------------------------------------------


async def test_store_refuses_a_write_with_an_older_token(backend: Backend) -> None:
    """A batch holding a key whose stored token is newer is refused whole with StaleToken in its
    slot; other batches of the same call are written."""
    async with backend.store() as store:
        assert await store.write([[Write("k", b"new", 1, 10)]]) == [None]
        result = await store.write(
            [[Write("k2", b"x", 1, 5), Write("k", b"old", 1, 5)], [Write("o", b"y", 1, 1)]]
        )
        assert isinstance(result[0], wes.StaleToken)
        assert result[1] is None
        records = await store.read(["k", "k2", "o"])
        assert records["k"] == Record(b"new", 1, 10)
        assert "k2" not in records
        assert records["o"] == Record(b"y", 1, 1)


async def test_store_accepts_equal_and_newer_tokens(backend: Backend) -> None:
    """A write carrying the stored token or a newer one replaces the record."""
    async with backend.store() as store:
        assert await store.write([[Write("k", b"one", 1, 10)]]) == [None]
        assert await store.write([[Write("k", b"two", 2, 10)]]) == [None]
        assert (await store.read(["k"]))["k"] == Record(b"two", 2, 10)
        assert await store.write([[Write("k", b"three", 2, 11)]]) == [None]
        assert (await store.read(["k"]))["k"] == Record(b"three", 2, 11)


async def test_final_save_refused_at_node_exit_is_counted_not_raised(backend: Backend) -> None:
    """When leaving `async with node`, a final save the store refuses (a newer owner wrote) is
    counted as ("save", "error") and not raised, and the newer state stays."""
    store = backend.store()
    stats = wes.MemoryStats()
    node = make_node(store, stats=stats)
    newer = wes.JsonCodec().encode({"value": 999})
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr")
        assert await store.write([[Write("counter/a", newer, 1, 2**62)]]) == [None]
    assert stats.counts().get(("save", "error"), 0) >= 1
    store = backend.store()
    async with store:
        assert (await store.read(["counter/a"]))["counter/a"].data == newer


# --- registry leases ---------------------------------------------------------------------


async def test_registry_claim_names_the_holder() -> None:
    """A claim records its holder; `holder` reports it and a claimed name cannot be claimed
    again, not even by the same holder."""
    async with wes.MemoryRegistry() as registry:
        [claim] = await registry.claim([("channel", SESSION)], "node-1", 5.0)
        assert (claim.kind, claim.ident, claim.holder) == ("channel", SESSION, "node-1")
        assert await registry.holder("channel", SESSION) == "node-1"
        with pytest.raises(NameTaken):
            await registry.claim([("channel", SESSION)], "node-2", 5.0)
        with pytest.raises(NameTaken):
            await registry.claim([("channel", SESSION)], "node-1", 5.0)


async def test_registry_claim_is_all_or_nothing() -> None:
    """A claim of several names of which one is taken claims none of them."""
    async with wes.MemoryRegistry() as registry:
        await registry.claim([("actor", A)], SESSION, 5.0)
        with pytest.raises(NameTaken) as info:
            await registry.claim([("actor", SPOILT), ("actor", A)], OTHER, 5.0)
        assert info.value.ident == A
        assert await registry.holder("actor", SPOILT) is None
        assert await registry.holder("actor", A) == SESSION


async def test_registry_claim_expires_when_not_renewed() -> None:
    """A claim not renewed within its lease is free again and can be claimed by another."""
    async with wes.MemoryRegistry() as registry:
        [first] = await registry.claim([("actor", A)], SESSION, 0.1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while await registry.holder("actor", A) is not None:
            assert loop.time() < deadline, "claim never expired"
            await asyncio.sleep(0.02)
        [second] = await registry.claim([("actor", A)], OTHER, 5.0)
        assert await registry.holder("actor", A) == OTHER
        assert second.token > first.token


async def test_registry_renewal_of_an_expired_claim_fails() -> None:
    """Renewing a claim that expired fails even when nobody took the name, and does not
    re-acquire it."""
    async with wes.MemoryRegistry() as registry:
        claims = await registry.claim([("actor", A)], SESSION, 0.1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while await registry.holder("actor", A) is not None:
            assert loop.time() < deadline, "claim never expired"
            await asyncio.sleep(0.02)
        assert await registry.renew(claims) == [False]
        assert await registry.holder("actor", A) is None


async def test_registry_renewal_extends_a_live_claim() -> None:
    """Renewing a claim in time keeps it held past several lease periods."""
    async with wes.MemoryRegistry() as registry:
        claims = await registry.claim([("actor", A)], SESSION, 0.3)
        for _ in range(8):
            await asyncio.sleep(0.08)
            assert await registry.renew(claims) == [True]
        assert await registry.holder("actor", A) == SESSION


async def test_registry_release_frees_only_the_current_claim() -> None:
    """Releasing a claim frees it; releasing or renewing a superseded claim leaves the newer
    holder's claim alone."""
    async with wes.MemoryRegistry() as registry:
        old = await registry.claim([("actor", A)], SESSION, 0.1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while await registry.holder("actor", A) is not None:
            assert loop.time() < deadline, "claim never expired"
            await asyncio.sleep(0.02)
        new = await registry.claim([("actor", A)], OTHER, 5.0)
        await registry.release(old)
        assert await registry.renew(old) == [False]
        assert await registry.holder("actor", A) == OTHER
        await registry.release(new)
        assert await registry.holder("actor", A) is None


async def test_fencing_tokens_strictly_increase_across_registry_instances() -> None:
    """Tokens for a name strictly increase over claims, also across MemoryRegistry instances."""
    first, second = wes.MemoryRegistry(), wes.MemoryRegistry()
    tokens = []
    for registry in (first, second, first, second, second, first):
        claims = await registry.claim([("channel", SESSION)], "node", 5.0)
        tokens.append(claims[0].token)
        await registry.release(claims)
    assert all(a < b for a, b in itertools.pairwise(tokens)), tokens
    late = wes.MemoryRegistry()
    [claim] = await late.claim([("channel", SESSION)], "node", 5.0)
    assert claim.token > tokens[-1]


@pytest.mark.subprocess
async def test_fencing_tokens_outrank_those_of_an_earlier_process() -> None:
    """A MemoryRegistry outranks the tokens a registry of an earlier process handed out."""
    code = (
        "import asyncio, wes\n"
        "async def main():\n"
        "    claims = await wes.MemoryRegistry().claim([('actor', ('counter', 'a'))], 'x', 5.0)\n"
        "    print(claims[0].token)\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    earlier = int(out)
    [claim] = await wes.MemoryRegistry().claim([("actor", A)], "y", 5.0)
    assert claim.token > earlier


# --- leases of running channels ------------------------------------------------------------


@pytest.mark.registries
async def test_running_channel_keeps_its_lease_renewed(backend: Backend) -> None:
    """A running channel with a short lease renews its own and its actors' claims past several
    lease periods, and stays exclusive."""
    registry = backend.registry()
    stats = wes.MemoryStats()
    # Half a second: a claim is renewed once half its lease is left, so a renewal a loaded
    # machine delays by up to 0.25 s keeps it (0.3 s leases left 0.15 s, lost once in CI).
    node = make_node(backend.store(), registry, stats, lease=0.5)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        for _ in range(15):  # 1.5 s: three lease periods
            await asyncio.sleep(0.1)
        assert await registry.holder("channel", SESSION) is not None
        assert await registry.holder("actor", actor_claim(A)) == SESSION
        assert ("stop", "lease_lost") not in stats.counts()
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 2
        rival = make_node(backend.store(), backend.registry())
        async with rival:
            with pytest.raises(wes.ChannelAlreadyStarted):
                await rival.create_channel(SESSION)
            with pytest.raises(wes.ActorAlreadyLocked):
                await rival.create_channel(OTHER, [wes.load_or_create(A)])


class Refusing(DelegatingRegistry):
    """Delegates to a registry; its renewals can be made to fail."""

    def __init__(self, inner: Registry) -> None:
        super().__init__(inner)
        self.refuse = False

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        if self.refuse:
            return [False] * len(claims)
        return await self.inner.renew(claims)


@pytest.mark.registries
async def test_channel_that_loses_its_lease_stops_without_saving(backend: Backend) -> None:
    """A channel whose lease renewal fails stops without saving, counted as ("stop",
    "lease_lost")."""
    store = backend.store()
    registry = Refusing(backend.registry())
    stats = wes.MemoryStats()
    node = make_node(store, registry, stats, lease=0.3, save_interval=None)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.stop_channel(SESSION)
        await node.create_channel(SESSION, [wes.load(A)])
        await node.command(SESSION, "incr", 10)
        registry.refuse = True
        await wait_until(lambda: stats.counts().get(("stop", "lease_lost"), 0) == 1)
        assert await node.status(SESSION) is None
        assert await stored(store, "counter/a") == {"value": 1}
        with pytest.raises(wes.ChannelNotStarted):
            await node.command(SESSION, "incr")
    assert stats.counts().get(("stop", "lease_lost")) == 1


class Failing(DelegatingStore):
    """Delegates to a store; its writes can be made to fail: raising, or refusing each batch."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.mode: str | None = None

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        if self.mode == "raise":
            raise wes.StoreUnavailable("disk on fire")
        if self.mode == "refuse":
            return [wes.StaleToken("newer owner") for _ in batches]
        return await self.inner.write(batches)


@pytest.mark.parametrize("mode", ["raise", "refuse"])
async def test_failed_write_under_command_durability_fails_the_command(
    backend: Backend, mode: str
) -> None:
    """Under durability="command" a command whose write fails raises a WesError and stops the
    channel without saving; the store keeps the last acknowledged state."""
    store = Failing(backend.store())
    node = make_node(store, durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr")
        store.mode = mode
        with pytest.raises(wes.WesError):
            await node.command(SESSION, "incr", 10)
        assert await node.status(SESSION) is None
        store.mode = None
        assert await stored(store, "counter/a") == {"value": 2}
        await node.create_channel(SESSION, [wes.load(A)])
        assert await node.read(A, "value") == 2


async def test_periodic_save_failure_is_counted_and_retried(backend: Backend) -> None:
    """Under periodic durability a save the store fails is counted as ("save", "error"); the
    channel keeps running and a later save writes the state."""
    store = Failing(backend.store())
    stats = wes.MemoryStats()
    node = make_node(store, stats=stats, save_interval=0.05)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        store.mode = "raise"
        await node.command(SESSION, "incr", 4)
        await wait_until(lambda: stats.counts().get(("save", "error"), 0) >= 1)
        assert await node.status(SESSION) is not None
        store.mode = None
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) >= 1)
        assert await stored(store, "counter/a") == {"value": 5}
        assert not any(kind == "stop" for kind, _ in stats.counts())


class Lying(Refusing):
    """A registry that reports every renewal as done without renewing anything: its channels
    believe they hold leases that have long expired."""

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        return [True] * len(claims)


@pytest.mark.registries
async def test_stale_owner_cannot_overwrite_a_newer_owners_state(backend: Backend) -> None:
    """A channel whose claims expired unnoticed cannot overwrite the state a newer owner of its
    actor saved: the store refuses the stale write and the stale channel stops."""
    lying = Lying(backend.registry())
    stale = make_node(backend.store(), lying, lease=0.2)
    fresh = make_node(backend.store(), backend.registry())
    async with stale, fresh:
        await stale.create_channel(SESSION, [wes.create(A, 1)])
        await stale.command(SESSION, "incr", 1)  # 2, not saved yet
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while await lying.inner.holder("actor", actor_claim(A)) is not None:
            assert loop.time() < deadline, "the stale claim never expired"
            await asyncio.sleep(0.02)
        await fresh.create_channel(OTHER, [wes.create(A, 100)])
        await fresh.stop_channel(OTHER)
        # The stale node may also find its lease run out by its own clock (a renewal sweep
        # late on a loaded machine) and refuse the command unexecuted: stale either way.
        with contextlib.suppress(wes.ChannelNotStarted):
            await stale.command(SESSION, "incr", 1)
        with contextlib.suppress(wes.WesError):
            await stale.stop_channel(SESSION)
        assert await stale.status(SESSION) is None
    store = backend.store()
    async with store:
        assert await stored(store, "counter/a") == {"value": 100}


class Answering(Refusing):
    """Delegates to a registry; its renewals can be answered "lost" (`"lost"`) or left
    unanswered (`"raise"`), and are counted."""

    def __init__(self, inner: Registry) -> None:
        super().__init__(inner)
        self.answer = "renew"
        self.renewals = 0

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        self.renewals += 1
        if self.answer == "lost":
            return [False] * len(claims)
        if self.answer == "raise":
            raise wes.RegistryUnavailable("no answer, for the test")
        return await self.inner.renew(claims)


def two_registry_node(recorder: Recorder) -> tuple[wes.Node, Answering, Answering]:
    """A node whose channels claim in one registry and whose actors claim in another."""
    channels, actors = Answering(wes.MemoryRegistry()), Answering(wes.MemoryRegistry())
    node = wes.Node(store=wes.MemoryStore(), registry=channels, stats=recorder)
    node.actor_type("counter", Counter, registry=actors)
    node.channel_type("session", idle_timeout=None, save_interval=None, lease=0.3)
    return node, channels, actors


@pytest.mark.parametrize(
    ("channel_answer", "actor_answer", "message"),
    [
        ("raise", "lost", "lost its lease"),
        ("lost", "raise", "lost its lease"),
        ("raise", "renew", "could not renew its lease"),
    ],
    ids=["unanswered-then-lost", "lost-then-unanswered", "unanswered-then-renewed"],
)
async def test_a_lost_claim_in_any_registry_loses_the_channel_whatever_the_order(
    channel_answer: str, actor_answer: str, message: str
) -> None:
    """A channel whose claims live in two registries stops at the first renewal where one of
    them answers "lost", whichever registry's claim comes first; when one only fails to
    answer, it serves on and retries until its lease runs out."""
    recorder = Recorder()
    node, channels, actors = two_registry_node(recorder)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        channels.answer, actors.answer = channel_answer, actor_answer
        await wait_until(lambda: recorder.count("stop", "lease_lost") == 1)
        [(_, _, error)] = recorder.of("stop", "lease_lost")
        assert str(error) == f"channel {SESSION!r} {message}"
        renewals = (channels.renewals, actors.renewals)
        assert renewals == (1, 1) if message == "lost its lease" else min(renewals) > 1
        assert await node.status(SESSION) is None


async def test_a_channel_with_claims_in_two_registries_renews_in_both() -> None:
    """A channel whose claims live in two registries, both renewing, runs on past several
    lease periods."""
    recorder = Recorder()
    node, channels, actors = two_registry_node(recorder)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await wait_until(lambda: min(channels.renewals, actors.renewals) >= 4)  # > 0.6 s
        assert recorder.count("stop", "lease_lost") == 0
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 1
