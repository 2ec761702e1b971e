"""Type configuration: what `Node.actor_type` and `Node.channel_type` register, checked, and
the services every channel of a type runs on (`Services`, which `Runtime` provides)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._abc import Claim, Codec, Ident, Registry, Stats, Store
from ._actor import Actor, has_own_key
from ._errors import InvalidConfig
from ._wheel import Wheel
from ._writer import Writer

_type = type  # `type` is a parameter name below


class Sweep(Protocol):
    """What a channel asks of the save sweep (`_sweep.SaveSweep`). Channels are `Any` here:
    the sweep works on channels, so naming their class would make the two modules import
    each other."""

    failing: dict[Any, Any]

    def schedule(self, ch: Any, when: float, now: float | None = None) -> None: ...
    def save_failed(self, ch: Any, exc: BaseException) -> None: ...
    def save_worked(self, ch: Any, now: float) -> None: ...


class Releaser(Protocol):
    """What a channel asks of the node's leases (`_leases.Leases`)."""

    async def release(self, claims: Sequence[Claim]) -> None: ...


class Services(Protocol):
    """What channels, the sweeps and the loader run on: `_runtime.Runtime`."""

    address: str
    codec: Codec
    stats: Stats
    counts_events: bool  # whether `event` reaches a stats sink (not `NullStats`)
    actor_types: dict[str, ActorConf]  # by type name; `actor_conf` without the call

    @property
    def sweep(self) -> Sweep: ...
    @property
    def leases(self) -> Releaser: ...
    @property
    def wheel(self) -> Wheel: ...
    @property
    def is_running(self) -> bool: ...
    def now(self) -> float: ...
    def stamp(self, t: float) -> float: ...
    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
    def actor_conf(self, actor_type: str) -> ActorConf: ...
    def forget_channel(self, ch: Any) -> None: ...
    def forget_actor(self, actor: Actor) -> None: ...


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A running channel as seen when asked: its id, the address of the node that owns it,
    and the ids of its actors at that moment."""

    id: Ident
    owner: str
    actors: tuple[Ident, ...]


@dataclass(frozen=True, slots=True)
class ChannelConf:
    """The settings of a channel type."""

    name: str
    idle_timeout: float | None
    save_interval: float | None
    lease: float
    durable: bool
    registry: Registry
    runtime: Services
    placement: Literal["local", "hash"] = "local"


@dataclass(frozen=True, slots=True)
class ActorConf:
    """The settings of an actor type."""

    name: str
    cls: type[Actor]
    store: Store
    registry: Registry
    own_key: bool
    writer: Writer  # the node's writer for `store`
    # Actor claims are named by storage key, so two ids with one key exclude each other: in
    # the node's registry under "" (across every type), in a type's own registry under the
    # type's name (`Runtime.registry_of` finds the registry from it).
    scope: str

    def key(self, name: str | int) -> str:
        return self.cls.key(name) if self.own_key else f"{self.name}/{name}"

    def claim_ident(self, name: str | int) -> Ident:
        """The registry name of the actor `name`'s claim: its scope and storage key."""
        return (self.scope, self.key(name))


def actor_conf(
    type: str,
    cls: Any,
    store: Store,
    registry: Registry,
    writer: Writer,
    *,
    own_registry: bool,
) -> ActorConf:
    """A checked actor type; raises `InvalidConfig` naming what is wrong."""
    check_type_name("actor", type)
    if not (isinstance(cls, _type) and issubclass(cls, Actor)):
        raise InvalidConfig(f"actor type {type!r}: {cls!r} is not a wes.Actor subclass")
    scope = type if own_registry else ""
    return ActorConf(type, cls, store, registry, has_own_key(cls), writer, scope)


def channel_conf(
    type: str,
    *,
    idle_timeout: Any,
    save_interval: Any,
    lease: Any,
    durability: Literal["periodic", "command"],
    registry: Registry,
    runtime: Services,
    placement: Literal["local", "hash"] = "local",
) -> ChannelConf:
    """A checked channel type; raises `InvalidConfig` naming what is wrong."""
    check_type_name("channel", type)
    where = f"channel type {type!r}"
    idle = _positive(f"{where}: idle_timeout", idle_timeout, optional=True)
    interval = _positive(f"{where}: save_interval", save_interval, optional=True)
    lease_s = _positive(f"{where}: lease", lease, optional=False)
    if durability not in ("periodic", "command"):
        raise InvalidConfig(
            f"{where}: durability must be 'periodic' or 'command', not {durability!r}"
        )
    if placement not in ("local", "hash"):
        raise InvalidConfig(f"{where}: placement must be 'local' or 'hash', not {placement!r}")
    assert lease_s is not None
    durable = durability == "command"
    return ChannelConf(type, idle, interval, lease_s, durable, registry, runtime, placement)


def check_type_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidConfig(f"{kind} type must be a non-empty str, not {name!r}")
    if "/" in name:
        # A storage key is f"{type}/{name}": a "/" in the type would let two ids share one.
        raise InvalidConfig(f"{kind} type {name!r} contains '/', which separates storage keys")


def _positive(what: str, value: Any, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        allowed = "a positive number or None" if optional else "a positive number"
        raise InvalidConfig(f"{what} must be {allowed}, not {value!r}")
    return float(value)
