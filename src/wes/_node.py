"""`Node`: the public API of a wes node, over its runtime (`_runtime.Runtime`)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any, Literal

from ._abc import Codec, Ident, Registry, Stats, Store, Transport
from ._actor import Actor
from ._arguments import Refused, binding_failed, check_read, invalid
from ._backends.memory import MemoryRegistry
from ._channel import Channel
from ._cluster import ABSENT, LOCAL
from ._codec import JsonCodec
from ._errors import (
    ActorNotHere,
    ChannelAlreadyStarted,
    ChannelNotHere,
    InvalidName,
    UnknownRead,
)
from ._loader import read_stored
from ._node_lifecycle import Lifecycle
from ._runtime import Runtime
from ._specs import Spec, as_specs, check_id
from ._starting import add_actors, start_channel
from ._stats import NullStats
from ._turn import holding
from ._types import ChannelRef, actor_conf, channel_conf

ENSURE_RACES = 8  # claims an ensure_channel may lose to other nodes before it gives up


class Node(Lifecycle):
    """Runs channels and their actors, alone or as one node of a cluster.

    Register types with `actor_type` and `channel_type`, then use the node inside
    `async with node:`; on exit every channel stops normally (saving) and the node closes
    its backends.

    Args:
        store: where actor states persist; default `SqliteStore("wes.db")`.
        registry: leases for channels and actors; default an in-process `MemoryRegistry`.
        stats: receives every event; default none.
        codec: turns states into bytes; default `JsonCodec`.
        address: this node's address in the registry; default host:pid:random.
        transport: makes the nodes sharing it, a registry and a store one system (every
            operation reaches its channel wherever it runs); default none: a lone node.
        call_timeout: seconds a call to another node may take.
    """

    def __init__(
        self,
        store: Store | None = None,
        registry: Registry | None = None,
        stats: Stats | None = None,
        codec: Codec | None = None,
        *,
        address: str | None = None,
        transport: Transport | None = None,
        call_timeout: float = 10.0,
    ) -> None:
        if store is None:
            from ._backends.sqlite import SqliteStore

            store = SqliteStore("wes.db")
        self.store = store
        self.registry = registry if registry is not None else MemoryRegistry()
        self.stats = stats if stats is not None else NullStats()
        self.codec = codec if codec is not None else JsonCodec()
        self.address = address or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._rt = rt = Runtime(self.store, self.registry, self.stats, self.codec, self.address)
        # What the operations' fast paths read, one attribute away (the runtime's own maps).
        self._stats_on = rt.counts_events
        self._channels = rt.channels
        self._actors = rt.actors
        self._loop: asyncio.AbstractEventLoop | None = None
        self._setup_cluster(transport, call_timeout)

    # -- configuration --------------------------------------------------------------------

    def actor_type(
        self,
        type: str,
        cls: type[Actor],
        *,
        store: Store | None = None,
        registry: Registry | None = None,
    ) -> None:
        """Register an actor class under `type`, optionally with its own store and registry."""
        store = store or self.store
        own_registry = registry is not None and registry is not self.registry
        conf = actor_conf(
            type,
            cls,
            store,
            registry or self.registry,
            self._rt.writer(store),
            own_registry=own_registry,
        )
        self._rt.actor_types[type] = conf

    def channel_type(
        self,
        type: str,
        *,
        idle_timeout: float | None = 300.0,
        save_interval: float | None = 60.0,
        lease: float = 30.0,
        durability: Literal["periodic", "command"] = "periodic",
        registry: Registry | None = None,
        placement: Literal["local", "hash"] = "local",
    ) -> None:
        """Register a channel type and its timeouts, lease and durability.

        `placement` says where a cluster starts a channel that runs nowhere: `"local"` on
        the calling node, `"hash"` on the live node that rendezvous hashing of its id picks.
        """
        self._rt.channel_types[type] = channel_conf(
            type,
            idle_timeout=idle_timeout,
            save_interval=save_interval,
            lease=lease,
            durability=durability,
            registry=registry or self.registry,
            runtime=self._rt,
            placement=placement,
        )

    # -- introspection --------------------------------------------------------------------

    @property
    def live_channels(self) -> int:
        """How many channels run on this node now."""
        return len(self._channels)

    @property
    def live_actors(self) -> int:
        """How many actors are in channels on this node now."""
        return len(self._actors)

    # -- checks ---------------------------------------------------------------------------

    def _check_specs(self, specs: Any) -> list[Spec]:
        out = as_specs(specs)
        for spec in out:
            self._rt.actor_conf_of(spec.actor)
        return out

    # -- operations -----------------------------------------------------------------------

    async def command(self, channel: Ident, name: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a command to every actor of the channel; returns once all handled it.

        Raises `ChannelNotStarted`, `UnknownCommand`, or the very exception an actor raised
        (then the channel stopped without saving). In a cluster, also `NodeUnreachable`
        (it did not run) or `OutcomeUnknown` (it may have run).
        """
        try:
            ch = self._channels.get(channel)
        except TypeError:
            ch = None
        if ch is None:
            return await self._command_elsewhere(channel, name, args, kwargs)
        # A name that is no str finds no handler: `apply_sync`, `unhandled` and
        # `_command_queued` raise `InvalidName` then, which costs this path nothing.
        loop = self._loop
        assert loop is not None
        started = loop.time()
        if started >= ch.lease_until:  # found frozen past its lease: execute nothing
            return await self._command_elsewhere(channel, name, args, kwargs, ch.lease_ran_out())
        try:
            if ch.busy or ch.has_async:
                return await self._command_queued(ch, name, args, kwargs)
            # The fast path: the channel is free and every handler is synchronous, so
            # nothing else can run on this loop until we are done; no lock, task or future.
            # It is `Channel._command_then_pass` inline, holding the turn unmarked (`_turn`).
            ch.last_active = started
            try:
                handled = ch.apply_sync(name, args, kwargs)
            except Refused as refused:  # nothing ran: the channel runs on unchanged
                raise refused.error from None
            except BaseException as exc:
                await ch.crash(exc)
                raise
            if not handled:
                return ch.unhandled(name)  # raises UnknownCommand unless the channel is empty
            if not ch.dirty:
                ch.mark_dirty(started)
            if ch.pending is not None or ch.conf.durable:
                ch.busy = True  # nothing was awaited since the check above: the turn is ours
                await asyncio.shield(self._rt.spawn(ch.finish_then_pass()))
        finally:
            # Every command a running channel received, raising or not (a name refused as
            # no str is not one).
            if self._stats_on and isinstance(name, str):
                seconds = loop.time() - started if self.stats.timed else None
                self._rt.event("command", name, ch.id, seconds)

    async def _command_queued(
        self, ch: Channel, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if not isinstance(name, str):
            raise InvalidName(f"command name must be a str, not {name!r}")
        try:
            return await ch.run_command(name, args, kwargs)
        except ChannelNotHere as gone:  # it stopped, or lost its lease, before our turn
            if gone.ident != ch.id:
                raise
            return await self._command_elsewhere(ch.id, name, args, kwargs, gone)

    async def read(self, actor: Ident, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Ask one actor for a view of its state. Raises `ActorNotActive`, `UnknownRead`, or
        what the handler raised (the channel keeps running)."""
        try:
            a = self._actors.get(actor)
        except TypeError:
            a = None
        if a is None:
            return await self._read_elsewhere(actor, name, args, kwargs)
        if self._stats_on:
            return await self._read_counted(a, name, args, kwargs)
        try:
            handler = a._wes_reads.get(name)  # a name that is no str finds none: `_read_slow`
        except TypeError:
            handler = None
        ch: Channel = a._wes_ch  # type: ignore[assignment]  # a Channel: see `_actor.Host`
        if handler is None or ch.busy:
            return await self._read_slow(a, ch, name, args, kwargs)
        now = self._loop.time()  # type: ignore[union-attr]
        if now >= ch.lease_until:  # found frozen past its lease: answer nothing stale
            return await self._read_slow(a, ch, name, args, kwargs)
        ch.last_active = now
        try:
            return handler(a, *args, **kwargs)
        except TypeError as exc:
            if binding_failed(exc):  # Python's own binding is the check (see `_arguments`)
                raise invalid("read", name, a, handler, args, kwargs) from None
            raise

    async def _read_counted(
        self, a: Actor, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not isinstance(name, str):
            raise InvalidName(f"read name must be a str, not {name!r}")
        ch: Channel = a._wes_ch  # type: ignore[assignment]  # a Channel: see `_actor.Host`
        started = self._rt.now()
        try:
            return await self._read_slow(a, ch, name, args, kwargs)
        finally:
            seconds = self._rt.now() - started if self.stats.timed else None
            self._rt.event("read", name, a._wes_id, seconds)

    async def _read_slow(
        self, a: Actor, ch: Channel, name: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not isinstance(name, str):
            raise InvalidName(f"read name must be a str, not {name!r}")
        try:
            return await self._read_in_turn(a, ch, name, args, kwargs)
        except ActorNotHere as gone:  # its channel stopped, or lost its lease, before our turn
            if gone.ident != a._wes_id:
                raise
            return await self._read_elsewhere(a._wes_id, name, args, kwargs, gone)

    async def _read_in_turn(
        self, a: Actor, ch: Channel, name: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        handler = a._wes_reads.get(name) or a._wes_async_reads.get(name)
        if handler is None:
            raise UnknownRead(f"actor {a._wes_id!r} has no read {name!r}")
        check_read(name, a, args, kwargs)
        try:
            await ch.take_turn()
        except ChannelNotHere:
            raise ActorNotHere(a._wes_id, f"channel {ch.id!r} of {a._wes_id!r} stopped") from None
        try:
            if a._wes_ch is not ch:
                raise ActorNotHere(a._wes_id, f"actor {a._wes_id!r} left channel {ch.id!r}")
            ch.last_active = now = self._rt.now()
            if now >= ch.lease_until:
                raise ActorNotHere(a._wes_id, str(ch.lease_ran_out()))
            return await holding(ch, handler(a, *args, **kwargs))
        finally:
            ch.pass_turn()

    async def status(self, channel: Ident) -> ChannelRef | None:
        """The running channel, or `None`."""
        self._rt.check_running()
        self._rt.channel_conf_of(channel)
        ch = self._channels.get(channel)
        if ch is None:
            return await self._status_elsewhere(channel)
        return self._ref(ch)

    async def stored(self, actor: Ident) -> Actor | None:
        """The actor as its store holds it (decoded and migrated), or `None` if the store
        does not hold it. It is not activated: no claim, no channel, no hooks, so it says
        nothing of an active copy's unsaved changes. Raises `StateNotLoadable` or
        `StoreUnavailable`."""
        self._rt.check_running()
        conf = self._rt.actor_conf_of(check_id(actor, "actor"))
        return await read_stored(self.codec, conf, actor)

    def _ref(self, ch: Channel) -> ChannelRef:
        return ChannelRef(ch.id, self.address, tuple(a._wes_id for a in ch.actors))

    async def stop_channel(self, channel: Ident) -> None:
        """Stop the channel normally: save (where `should_save`), release every claim."""
        ch = self._here(channel)
        if ch is None:
            return await self._elsewhere("stop_channel", channel)
        await ch.in_turn(lambda: ch.stop_in_turn("normal"))

    def _here(self, channel: Any) -> Channel | None:
        try:
            return self._channels.get(channel)
        except TypeError:
            return None

    async def create_channel(self, channel: Ident, specs: Any = ()) -> ChannelRef:
        """Start a channel with its actors. Fails with `ChannelAlreadyStarted` or a spec
        error; then nothing started and every claim taken was released."""
        self._rt.check_running()
        conf = self._rt.channel_conf_of(channel)
        spec_list = self._check_specs(specs)
        if channel in self._channels or channel in self._rt.starting:
            raise ChannelAlreadyStarted(f"channel {channel!r} is already running")
        cluster = self._routed(channel)
        if cluster is not None:
            got = await cluster.place("create_channel", channel, conf, spec_list)
            if got is not LOCAL:
                return cluster.ref(got)
        return self._ref(await start_channel(self._rt, channel, conf, spec_list))

    async def ensure_channel(self, channel: Ident, specs: Any = ()) -> ChannelRef:
        """The running channel (given the specs' missing actors), or a new one."""
        self._rt.check_running()
        conf = self._rt.channel_conf_of(channel)
        spec_list = self._check_specs(specs)
        races = 0
        while True:
            ch = self._channels.get(channel)
            if ch is not None:
                try:
                    await add_actors(self._rt, ch, spec_list, ensure=True)
                except ChannelNotHere:
                    if ch.running:
                        raise
                    continue  # it stopped while we waited for its turn: start it anew
                return self._ref(ch)
            starting = self._rt.starting.get(channel)
            if starting is not None:
                await asyncio.shield(starting)
                continue
            try:
                return await self._ensure_started(channel, conf, spec_list)
            except ChannelAlreadyStarted:
                races += 1
                if self._routed(channel) is None or races > ENSURE_RACES:
                    raise
                # Lost the race for the claim to another node: reach the winner.

    async def _ensure_started(self, channel: Ident, conf: Any, specs: list[Spec]) -> ChannelRef:
        """`ensure_channel` of a channel not running here: at its owner, else started."""
        cluster = self._routed(channel)
        if cluster is not None:
            got = await cluster.at_owner("ensure_channel", channel, conf, specs=specs)
            if got is LOCAL:
                return await self.ensure_channel(channel, specs)
            if got is ABSENT:
                got = await cluster.place("ensure_channel", channel, conf, specs)
            if got is not LOCAL:
                return cluster.ref(got)
        return self._ref(await start_channel(self._rt, channel, conf, specs))

    async def create_actor(self, channel: Ident, specs: Any) -> None:
        """Add new actors to a running channel. Fails with `ChannelNotStarted`,
        `ActorAlreadyInChannel` or a spec error; the channel stays as it was."""
        spec_list = self._check_specs(specs)
        ch = self._here(channel)
        if ch is None:
            return await self._elsewhere("create_actor", channel, spec_list)
        await add_actors(self._rt, ch, spec_list, ensure=False)

    async def ensure_actor(self, channel: Ident, specs: Any) -> None:
        """Like `create_actor`, but actors already in the channel are fine."""
        spec_list = self._check_specs(specs)
        ch = self._here(channel)
        if ch is None:
            return await self._elsewhere("ensure_actor", channel, spec_list)
        await add_actors(self._rt, ch, spec_list, ensure=True)
