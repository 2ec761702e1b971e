"""The node most tests build: memory backends unless given, and a `session` channel type that
neither idles out nor saves periodically unless told.

A test module binds its actor types once, `make_node = partial(node_of, {"counter": Counter})`,
and calls `make_node(store, registry, stats, lease=0.2)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import wes
from wes.abc import Registry, Stats, Store, Transport

# The ids most tests use: channels of the `session` type, actors of the `counter` type.
SESSION = ("session", "s1")
OTHER = ("session", "s2")
EMPTY = ("session", "empty")
A = ("counter", "a")
B = ("counter", "b")
C = ("counter", "c")


def node_of(
    actors: Mapping[str, type[wes.Actor]],
    store: Store | None = None,
    registry: Registry | None = None,
    stats: Stats | None = None,
    *,
    transport: Transport | None = None,
    address: str | None = None,
    call_timeout: float = 10.0,
    **channel: Any,
) -> wes.Node:
    """A node with `actors` (type name -> class) and the `session` channel type; `channel`
    overrides its settings. `stats=None` is the node's no-op default, the uncounted path."""
    node = wes.Node(
        store=store if store is not None else wes.MemoryStore(),
        registry=registry if registry is not None else wes.MemoryRegistry(),
        stats=stats,
        transport=transport,
        address=address,
        call_timeout=call_timeout,
    )
    for name, cls in actors.items():
        node.actor_type(name, cls)
    node.channel_type("session", **{"idle_timeout": None, "save_interval": None, **channel})
    return node
