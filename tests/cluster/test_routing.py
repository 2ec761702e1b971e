"""Routing: an operation reaches the node that runs its channel; the registry decides, the
hints only save look-ups, and a call is retried only when it certainly did not run."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial
from typing import Any, ClassVar

import pytest

import wes
from tests.support.cluster import cluster_of, nodes_of
from tests.support.counters import Counter
from tests.support.nodes import OTHER, SESSION, A, B
from tests.support.waiting import wait_until
from wes.abc import Ident

ACTORS = {"counter": Counter}
cluster = partial(cluster_of, ACTORS)


class Slow(Counter):
    @wes.command
    async def nap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_a_command_from_another_node_runs_on_the_owner() -> None:
    async with cluster() as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr", 5)
        assert a._actors[A].value == 5  # type: ignore[attr-defined]
        assert b.live_channels == 0


async def test_a_stale_hint_is_dropped_and_the_owner_looked_up_again() -> None:
    async with cluster(count=3) as (a, b, c):
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr")  # b now holds the hint "a"
        await a.stop_channel(SESSION)
        await c.ensure_channel(SESSION, [wes.load(A)])
        await b.command(SESSION, "incr")  # a refuses "not here"; b finds c
        assert await b.read(A, "value") == 2
        assert (await b.status(SESSION)) == wes.ChannelRef(SESSION, "n2", (A,))


async def test_runs_nowhere_is_never_cached() -> None:
    async with cluster() as (a, b):
        assert await b.status(SESSION) is None
        with pytest.raises(wes.ChannelNotStarted, match="not running on any node"):
            await b.command(SESSION, "incr")
        await a.create_channel(SESSION, [wes.create(A)])
        assert (await b.status(SESSION)) == wes.ChannelRef(SESSION, "n0", (A,))
        await b.command(SESSION, "incr")


async def test_a_read_finds_the_actors_channel_through_the_registry() -> None:
    async with cluster() as (a, b):
        await a.create_channel(OTHER, [wes.create(B, 7)])
        assert await b.read(B, "value") == 7
        with pytest.raises(wes.ActorNotActive, match="in no channel"):
            await b.read(A, "value")


async def test_an_owner_that_answers_no_more_is_node_unreachable_within_call_timeout() -> None:
    transport = wes.MemoryTransport()
    async with cluster(transport=transport, call_timeout=0.3) as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        await transport.unlisten("n0")  # a vanishes from the transport, its claim held
        started = time.monotonic()
        with pytest.raises(wes.NodeUnreachable):
            await b.command(SESSION, "incr")
        assert time.monotonic() - started < 2.0
        assert a._actors[A].value == 0  # type: ignore[attr-defined]


async def test_a_call_sent_and_unanswered_in_time_is_outcome_unknown() -> None:
    async with cluster_of({"counter": Slow}, call_timeout=0.2) as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.OutcomeUnknown, match="may have run"):
            await b.command(SESSION, "nap", 1.0)


async def test_create_channel_of_a_channel_running_elsewhere_is_already_started() -> None:
    async with cluster() as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.ChannelAlreadyStarted):
            await b.create_channel(SESSION, [wes.create(B)])
        assert b.live_channels == 0


async def test_ensure_channel_races_across_nodes_end_with_one_owner() -> None:
    async with cluster(count=3) as nodes:
        refs = await asyncio.gather(
            *(node.ensure_channel(("session", i)) for node in nodes for i in range(20))
        )
        for i in range(20):
            owners = {ref.owner for ref in refs if ref.id == ("session", i)}
            assert len(owners) == 1
        assert sum(node.live_channels for node in nodes) == 20


async def test_ensure_channel_reaches_the_owner_and_adds_the_missing_actors_there() -> None:
    async with cluster() as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        ref = await b.ensure_channel(SESSION, [wes.load_or_create(A), wes.create(B)])
        assert ref == wes.ChannelRef(SESSION, "n0", (A, B))
        assert set(a._actors) == {A, B}


async def test_a_channel_past_its_lease_executes_nothing_and_stops_unsaved() -> None:
    async with cluster() as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        a._channels[SESSION].lease_until = 0.0  # as a process frozen past its lease finds it
        with pytest.raises(wes.ChannelNotStarted):
            await b.command(SESSION, "incr")
        assert SESSION not in a._channels
        assert await a.stored(A) is None  # never saved: created, then stopped unsaved


async def test_a_local_command_on_a_channel_past_its_lease_executes_nothing() -> None:
    stats = wes.MemoryStats()
    async with cluster(stats=stats) as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        actor = a._actors[A]
        a._channels[SESSION].lease_until = 0.0
        with pytest.raises(wes.ChannelNotStarted, match="not running on any node"):
            await a.command(SESSION, "incr")
        assert actor.value == 0  # type: ignore[attr-defined]
        assert stats.counts()[("stop", "lease_lost")] == 1


async def test_a_local_read_of_an_actor_past_its_lease_goes_nowhere() -> None:
    async with cluster() as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        a._channels[SESSION].lease_until = 0.0
        with pytest.raises(wes.ActorNotActive):
            await a.read(A, "value")


async def test_a_lone_node_says_not_running_on_this_node() -> None:
    async with wes.Node(wes.MemoryStore()) as node:
        node.channel_type("session")
        with pytest.raises(wes.ChannelNotStarted, match="not running on this node"):
            await node.command(SESSION, "incr")


async def test_hash_placement_starts_a_channel_on_the_node_rendezvous_hashing_picks() -> None:
    async with cluster(count=3, placement="hash") as nodes:
        await _heard_each_other(nodes)
        for i in range(12):
            channel = ("session", i)
            ref = await nodes[0].create_channel(channel)
            assert ref.owner == nodes[0]._cluster.peers.rank(channel)[0]  # type: ignore[union-attr]
        assert all(node.live_channels > 0 for node in nodes)


async def test_hash_placement_skips_a_node_that_is_stopping() -> None:
    nodes = nodes_of(ACTORS, 3, placement="hash")
    async with nodes[0], nodes[1]:
        async with nodes[2]:
            await _heard_each_other(nodes)
            to_c = _placed_first_on(nodes[0], "n2")
        # n2 left: n0 and n1 place its channels on the next node in rendezvous order.
        await _placed_elsewhere(nodes[0], to_c, ("n0", "n1"))


async def test_closing_a_node_stops_its_channels_normally_and_callers_find_them_gone() -> None:
    store = wes.MemoryStore()
    a, b = nodes_of(ACTORS, 2, store=store)
    async with b:
        async with a:
            await a.create_channel(SESSION, [wes.create(A)])
            await b.command(SESSION, "incr", 3)
        assert (await b.stored(A)).value == 3  # type: ignore[union-attr]
        with pytest.raises(wes.ChannelNotStarted):
            await b.command(SESSION, "incr")
        ref = await b.ensure_channel(SESSION, [wes.load(A)])
        assert ref.owner == "n1"


async def test_call_timeout_must_be_a_positive_number() -> None:
    for bad in (0, -1.0, "10", True, float("nan")):
        for transport in (wes.MemoryTransport(), None):  # a lone node checks it too
            with pytest.raises(wes.InvalidConfig, match="call_timeout"):
                wes.Node(wes.MemoryStore(), transport=transport, call_timeout=bad)  # type: ignore[arg-type]


async def test_transport_must_be_a_transport() -> None:
    with pytest.raises(wes.InvalidConfig, match=r"wes\.abc\.Transport"):
        wes.Node(wes.MemoryStore(), transport="nats://x")  # type: ignore[arg-type]


async def test_placement_must_be_local_or_hash() -> None:
    node = wes.Node(wes.MemoryStore())
    with pytest.raises(wes.InvalidConfig, match="placement must be 'local' or 'hash'"):
        node.channel_type("session", placement="random")  # type: ignore[arg-type]


async def _heard_each_other(nodes: list[wes.Node]) -> None:
    want = sorted(node.address for node in nodes)
    await wait_until(
        lambda: all(node._cluster.peers.live() == want for node in nodes),  # type: ignore[union-attr]
        timeout=5.0,
    )


class GoneSilent(wes.MemoryTransport):
    """A hub on which a node's host vanished with its connection left open: its
    announcements stop, and requests to it are delivered but never answered."""

    def __init__(self) -> None:
        super().__init__()
        self.silent: set[str] = set()
        self.sent_to_silent = 0

    async def announce(self, data: bytes) -> None:
        if json.loads(data)["node"] not in self.silent:
            await super().announce(data)

    async def request(self, address: str, data: bytes, within: float) -> bytes:
        if address in self.silent:
            self.sent_to_silent += 1
            await asyncio.sleep(within)
            raise wes.OutcomeUnknown("no answer")
        return await super().request(address, data, within)


async def test_an_owner_unheard_for_seconds_gets_no_call_and_is_node_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("wes._peers.STALE_AFTER", 0.3)  # intervals: 0.3 s instead of 3.5 s
    transport = GoneSilent()
    async with cluster(transport=transport, call_timeout=0.5) as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr")
        transport.silent.add("n0")
        await wait_until(lambda: "n0" not in b.peers)
        with pytest.raises(wes.NodeUnreachable, match="not live"):
            await b.command(SESSION, "incr")
        assert transport.sent_to_silent == 0  # certainly not run: never sent
        assert a._actors[A].value == 1  # type: ignore[attr-defined]


async def test_an_unanswered_call_drops_the_owner_hint() -> None:
    async with cluster_of({"counter": Slow}, call_timeout=0.2) as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr")
        assert b._cluster is not None and SESSION in b._cluster._owners
        with pytest.raises(wes.OutcomeUnknown):
            await b.command(SESSION, "nap", 1.0)
        assert SESSION not in b._cluster._owners  # the next call asks the registry again


async def test_a_read_whose_hint_names_a_channel_here_without_the_actor_looks_again() -> None:
    async with cluster() as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        assert await b.read(A, "value") == 0  # b remembers: A is in SESSION
        await a.stop_channel(SESSION)
        await b.create_channel(SESSION, [wes.create(B)])  # SESSION runs on b, without A
        with pytest.raises(wes.ActorNotActive, match="in no channel"):
            await b.read(A, "value")


class Asker(Counter):
    """Its async command reads another actor through the node it runs on."""

    nodes: ClassVar[dict[str, wes.Node]] = {}

    @wes.command
    async def ask(self, node: str, actor: list[Any]) -> None:
        self.value = await self.nodes[node].read(tuple(actor), "value")


async def test_a_call_served_for_a_channel_still_routes_an_actor_of_the_same_id() -> None:
    async with cluster_of({"counter": Asker, "session": Counter}) as (a, b):
        Asker.nodes.update(n0=a, n1=b)
        await a.create_channel(SESSION, [wes.create(A)])
        await b.create_channel(OTHER, [wes.create(("session", "s1"), 7)])  # an actor, on n1
        await b.command(SESSION, "ask", "n0", ["session", "s1"])  # served by n0 for SESSION
        assert await b.read(A, "value") == 7


async def test_hash_placement_skips_a_node_that_refuses_as_stopping() -> None:
    async with cluster(count=3, placement="hash") as nodes:
        await _heard_each_other(nodes)
        assert nodes[2]._server is not None
        nodes[2]._server.accepting = False  # the first step of closing: it refuses calls
        to_c = _placed_first_on(nodes[0], "n2")
        await _placed_elsewhere(nodes[0], to_c, ("n0", "n1"))
        assert nodes[2].live_channels == 0
        nodes[2]._server.accepting = True


def _placed_first_on(node: wes.Node, address: str) -> list[Ident]:
    """Channels of 30 whose rendezvous order, as `node` hears its peers, starts at `address`."""
    assert node._cluster is not None
    channels: list[Ident] = [("session", i) for i in range(30)]
    chosen = [ch for ch in channels if node._cluster.peers.rank(ch)[0] == address]
    assert chosen
    return chosen


async def _placed_elsewhere(node: wes.Node, channels: list[Ident], owners: tuple[str, ...]) -> None:
    """`ensure_channel` from `node` places each of `channels` on one of `owners`."""
    for channel in channels:
        ref = await node.ensure_channel(channel)
        assert ref.owner in owners
