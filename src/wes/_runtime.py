"""The runtime under a node: what channels, the sweeps, the leases and the loader run on.

`Node` is the public API; this is its machinery: the loop clock and the shared wheel, the
save and renewal sweeps, the writers, the tasks it tracks, stats dispatch, the codec, the
registered types, and the maps of running channels and active actors. Everything below
`Node` depends on this (or on its protocol, `_types.Services`), never on `Node`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from typing import Any, Literal

from ._abc import Claim, Codec, Ident, Registry, Stats, Store
from ._actor import Actor
from ._channel import Channel
from ._errors import NodeNotRunning, UnknownActorType, UnknownChannelType
from ._leases import Leases
from ._specs import check_id
from ._stats import NullStats
from ._sweep import SaveSweep
from ._types import ActorConf, ChannelConf
from ._wheel import Wheel
from ._writer import Writer

log = logging.getLogger("wes")

DEFAULT_LEASE = 30.0  # the renewal sweep's period before any channel type is registered
_STAMPS = 64  # recent times `stamp` keeps to share


class Runtime:
    """A node's machinery; see the module docstring. Implements `_types.Services`."""

    def __init__(
        self, store: Store, registry: Registry, stats: Stats, codec: Codec, address: str
    ) -> None:
        self.store = store
        self.registry = registry
        self.stats = stats
        self.codec = codec
        self.address = address
        self.counts_events = not isinstance(stats, NullStats)
        self.channel_types: dict[str, ChannelConf] = {}
        self.actor_types: dict[str, ActorConf] = {}
        self.channels: dict[Ident, Channel] = {}
        self.actors: dict[Ident, Actor] = {}
        self.starting: dict[Ident, asyncio.Future[None]] = {}  # channels being started
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: dict[int, Writer] = {}
        self.leases = Leases(self, self.registry_of, self.channels, self.shortest_lease)
        self.sweep = SaveSweep(self)
        self.loop: asyncio.AbstractEventLoop | None = None
        # The shared wheel, from `start` on: a plain attribute, not a checked property, as
        # every tick of every timer reaches it (100 k ticks a second in the benchmark).
        self.wheel: Wheel
        self.state: Literal["new", "running", "closing", "closed"] = "new"
        self._stamps: dict[float, float] = {}

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> asyncio.AbstractEventLoop:
        """Bind to the running loop and start the sweeps; returns the loop."""
        self.loop = asyncio.get_running_loop()
        self.wheel = Wheel(self.loop)
        self.state = "running"
        self.leases.start()
        return self.loop

    @property
    def is_running(self) -> bool:
        return self.state == "running"

    def now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def stamp(self, t: float) -> float:
        """`t` rounded down to the millisecond, as the very float object an earlier call
        returned for it lately: channels started in the same millisecond share their start
        and lease times (a float is 24 bytes, and a million idle channels keep two).
        Rounding down keeps a lease on the safe side."""
        rounded = math.floor(t * 1000.0) / 1000.0
        shared = self._stamps.get(rounded)
        if shared is None:
            if len(self._stamps) >= _STAMPS:
                self._stamps.clear()
            shared = self._stamps[rounded] = rounded
        return shared

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task the node tracks, cancels and awaits on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # already delivered to its caller or counted; don't log twice

    async def wind_down(self) -> None:
        """Cancel every tracked task and wait for them, let the releases settle, and close
        the wheel: what closing leaves once every channel has stopped."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.leases.settle()
        self.wheel.close()

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Hand an event to the stats sink; a sink that raises is logged, never fatal."""
        if self.counts_events:
            try:
                self.stats.event(kind, name, ident, seconds, error)
            except Exception:  # a broken stats sink must not break channels
                log.exception("stats sink failed on %s %s", kind, name)

    # -- types, writers, registries -------------------------------------------------------

    def writer(self, store: Store) -> Writer:
        """The one writer (group commit) of `store` on this node."""
        writer = self.writers.get(id(store))
        if writer is None:
            writer = self.writers[id(store)] = Writer(store, self.spawn)
        return writer

    def actor_conf(self, actor_type: str) -> ActorConf:
        return self.actor_types[actor_type]

    def shortest_lease(self) -> float:
        leases = (conf.lease for conf in self.channel_types.values())
        return min(leases, default=DEFAULT_LEASE)

    def registry_of(self, claim: Claim) -> Registry:
        """The registry that holds `claim`."""
        if claim.kind == "channel":
            return self.channel_types[claim.ident[0]].registry
        scope = claim.ident[0]  # see `ActorConf.scope`
        return self.registry if not scope else self.actor_types[scope].registry

    def backends(self) -> list[Any]:
        """Every store and registry the node uses, each once."""
        found: dict[int, Any] = {id(self.store): self.store, id(self.registry): self.registry}
        for conf in self.actor_types.values():
            found.setdefault(id(conf.store), conf.store)
            found.setdefault(id(conf.registry), conf.registry)
        for conf_c in self.channel_types.values():
            found.setdefault(id(conf_c.registry), conf_c.registry)
        return list(found.values())

    # -- the maps -------------------------------------------------------------------------

    def forget_channel(self, ch: Channel) -> None:
        if self.channels.get(ch.id) is ch:
            del self.channels[ch.id]
        for actor in ch.actors:
            self.forget_actor(actor)

    def forget_actor(self, actor: Actor) -> None:
        if self.actors.get(actor._wes_id) is actor:
            del self.actors[actor._wes_id]

    # -- checks ---------------------------------------------------------------------------

    def check_running(self) -> None:
        if self.state != "running":
            raise NodeNotRunning(
                f"node {self.address} is {self.state}: use it inside `async with node:`"
            )

    def channel_conf_of(self, channel: Any) -> ChannelConf:
        """The configuration of a channel id's type; raises `InvalidId` or
        `UnknownChannelType`."""
        check_id(channel, "channel")
        conf = self.channel_types.get(channel[0])
        if conf is None:
            raise UnknownChannelType(
                f"channel type {channel[0]!r} of {channel!r} is not registered: "
                f"call node.channel_type({channel[0]!r}) first"
            )
        return conf

    def actor_conf_of(self, actor: Any) -> ActorConf:
        """The configuration of a checked actor id's type, or `UnknownActorType`."""
        conf = self.actor_types.get(actor[0])
        if conf is None:
            raise UnknownActorType(
                f"actor type {actor[0]!r} of {actor!r} is not registered: "
                f"call node.actor_type({actor[0]!r}, cls) first"
            )
        return conf
