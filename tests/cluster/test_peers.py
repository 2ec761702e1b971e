"""Peers: which nodes are live (a hint for placement, kept by announcements) and the
rendezvous order every node computes alike."""

from __future__ import annotations

import json
from collections import Counter as Tally
from collections.abc import Coroutine
from typing import Any

import wes
from tests.support.waiting import wait_until
from wes._peers import INTERVAL, STALE_AFTER, Peers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def peers_of(address: str, clock: Clock, spawned: list[Any] | None = None) -> Peers:
    def spawn(coro: Coroutine[Any, Any, Any]) -> None:
        (spawned if spawned is not None else []).append(coro)
        coro.close()

    return Peers(address, wes.MemoryTransport(), clock, spawn)


def announcement(node: str, state: str = "up") -> bytes:
    return json.dumps({"wes": 1, "node": node, "state": state}).encode()


async def test_live_nodes_are_this_one_and_the_peers_heard_lately() -> None:
    clock = Clock()
    peers = peers_of("n0", clock)
    assert peers.live() == ["n0"]
    peers.heard(announcement("n2"))
    peers.heard(announcement("n1"))
    assert peers.live() == ["n0", "n1", "n2"]


async def test_a_peer_unheard_for_a_while_is_not_live() -> None:
    clock = Clock()
    peers = peers_of("n0", clock)
    peers.heard(announcement("n1"))
    clock.now += INTERVAL * STALE_AFTER + 0.01
    assert peers.live() == ["n0"]
    peers.heard(announcement("n1"))
    assert peers.live() == ["n0", "n1"]


async def test_a_peer_that_says_it_is_leaving_is_not_live_at_once() -> None:
    peers = peers_of("n0", Clock())
    peers.heard(announcement("n1"))
    peers.heard(announcement("n1", "leaving"))
    assert peers.live() == ["n0"]


async def test_a_leaving_node_counts_itself_out() -> None:
    peers = peers_of("n0", Clock())
    await peers.leave()
    assert peers.live() == []


async def test_a_newcomer_is_answered_with_an_announcement_at_once() -> None:
    spawned: list[Any] = []
    peers = peers_of("n0", Clock(), spawned)
    peers.heard(announcement("n1"))
    peers.heard(announcement("n1"))
    assert len(spawned) == 1  # once per newcomer, not per announcement


async def test_malformed_announcements_are_ignored() -> None:
    peers = peers_of("n0", Clock())
    for data in (b"", b"[]", b'{"node": 1, "state": "up"}', b'{"node": "n1"}', b"\xff"):
        peers.heard(data)
    peers.heard(announcement("n1", "dancing"))
    peers.heard(announcement("n0"))  # itself
    assert peers.live() == ["n0"]


async def test_every_node_ranks_an_id_alike_from_the_same_view() -> None:
    clocks = Clock()
    views = [peers_of(name, clocks) for name in ("n0", "n1", "n2")]
    for view in views:
        for name in ("n0", "n1", "n2"):
            view.heard(announcement(name))
    for i in range(50):
        ranks = {tuple(view.rank(("session", i))) for view in views}
        assert len(ranks) == 1


async def test_rendezvous_spreads_ids_over_the_nodes_and_moves_few_when_one_leaves() -> None:
    peers = peers_of("n0", Clock())
    for name in ("n1", "n2", "n3"):
        peers.heard(announcement(name))
    before = {i: peers.rank(("session", i))[0] for i in range(2000)}
    assert min(Tally(before.values()).values()) > 350  # about 500 each
    peers.heard(announcement("n3", "leaving"))
    after = {i: peers.rank(("session", i))[0] for i in range(2000)}
    moved = [i for i in before if before[i] != after[i]]
    assert all(before[i] == "n3" for i in moved)  # only n3's ids move


async def test_nodes_over_one_transport_hear_each_other() -> None:
    transport = wes.MemoryTransport()
    nodes = [wes.Node(wes.MemoryStore(), transport=transport, address=f"n{i}") for i in range(2)]
    async with nodes[0], nodes[1]:
        # Within milliseconds, not an announcement interval: a newcomer is answered at once.
        await wait_until(
            lambda: all(node._cluster.peers.live() == ["n0", "n1"] for node in nodes),  # type: ignore[union-attr]
            timeout=INTERVAL / 2,
        )
