"""Clusters in one process: nodes sharing a `MemoryTransport`, a `MemoryRegistry` and a
`MemoryStore` (or the ones given), each built like `nodes.node_of`.

    async with cluster_of({"counter": Counter}, 3) as (a, b, c):
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr", 2)  # runs on a
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import wes
from tests.support.nodes import node_of
from wes.abc import Registry, Store, Transport


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
