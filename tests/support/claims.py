"""How the node names an actor's claim in its registry: by storage key (see `ActorConf`)."""

from __future__ import annotations

from wes.abc import Ident


def actor_claim(actor: Ident, *, scope: str = "") -> Ident:
    """The claim name of `actor` with a default key: `("", key)` in the node's registry, or
    `(type, key)` in a type's own registry (pass `scope=type`)."""
    return (scope, f"{actor[0]}/{actor[1]}")
