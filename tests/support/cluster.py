"""Clusters in one process: nodes sharing a `MemoryTransport`, a `MemoryRegistry` and a
`MemoryStore` (or the ones given), each built like `nodes.node_of`.

    async with cluster_of({"counter": Counter}, 3) as (a, b, c):
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr", 2)  # runs on a

`sides_of(mode, ...)` gives a test the node that runs its channels (`owner`) and the one it
issues operations from (`caller`): the same lone node in the `local` mode, two nodes of a
cluster in the `remote` mode, so one test holds both paths to one contract.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import wes
from tests.support.nodes import node_of
from wes.abc import Registry, Stats, Store, Transport

Mode = Literal["local", "remote"]
MODES: tuple[Mode, ...] = ("local", "remote")


def nodes_of(
    actors: Mapping[str, type[wes.Actor]],
    count: int,
    *,
    store: Store | None = None,
    registry: Registry | None = None,
    transport: Transport | None = None,
    **settings: Any,
) -> list[wes.Node]:
    """`count` nodes, addressed `n0`, `n1`, ..., sharing one store, registry and transport."""
    store = store if store is not None else wes.MemoryStore()
    registry = registry if registry is not None else wes.MemoryRegistry()
    transport = transport if transport is not None else wes.MemoryTransport()
    return [
        node_of(actors, store, registry, transport=transport, address=f"n{i}", **settings)
        for i in range(count)
    ]


@contextlib.asynccontextmanager
async def cluster_of(
    actors: Mapping[str, type[wes.Actor]], count: int = 2, **settings: Any
) -> AsyncIterator[list[wes.Node]]:
    """`nodes_of(...)`, started; closed (each channel stopped normally) on exit."""
    nodes = nodes_of(actors, count, **settings)
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        yield nodes


class CountingTransport(wes.MemoryTransport):
    """A `MemoryTransport` that keeps every request it carried, to show what was not sent."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.sent: list[bytes] = []

    async def request(self, address: str, data: bytes, within: float) -> bytes:
        self.sent.append(data)
        return await super().request(address, data, within)


@dataclass(frozen=True)
class Sides:
    """The node a test starts its channels on and the node it calls them from."""

    owner: wes.Node
    caller: wes.Node
    transport: CountingTransport  # the remote mode's; the local mode's carries nothing

    @property
    def nodes(self) -> tuple[wes.Node, ...]:
        """Each node once."""
        return (self.owner,) if self.owner is self.caller else (self.owner, self.caller)

    @property
    def live_channels(self) -> int:
        """How many channels run on the nodes, all told."""
        return sum(node.live_channels for node in self.nodes)


@contextlib.asynccontextmanager
async def sides_of(
    mode: Mode,
    actors: Mapping[str, type[wes.Actor]],
    *,
    stats: Stats | None = None,
    max_payload: int | None = None,
    **settings: Any,
) -> AsyncIterator[Sides]:
    """`local`: one lone node (no transport) as both sides; `remote`: `n0` the owner and
    `n1` the caller over one `CountingTransport`. `stats` is the owner's; `settings` go to
    `node_of` (the `session` channel type's settings among them)."""
    transport = CountingTransport(**({} if max_payload is None else {"max_payload": max_payload}))
    if mode == "local":
        async with node_of(actors, stats=stats, address="n0", **settings) as node:
            yield Sides(node, node, transport)
        return
    store, registry = wes.MemoryStore(), wes.MemoryRegistry()
    owner = node_of(actors, store, registry, stats, transport=transport, address="n0", **settings)
    caller = node_of(actors, store, registry, transport=transport, address="n1", **settings)
    async with owner, caller:
        yield Sides(owner, caller, transport)
