"""The node: where channels run, and the operations users call."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from ._abc import Claim, ClaimKind, Codec, Ident, Registry, Stats, Store
from ._actor import Actor, has_own_key
from ._arguments import Refused, binding_failed, check_read, invalid
from ._backends.memory import MemoryRegistry
from ._channel import ActorConf, Channel, ChannelConf
from ._codec import JsonCodec
from ._errors import (
    ActorAlreadyInChannel,
    ActorAlreadyLocked,
    ActorNotActive,
    ChannelAlreadyStarted,
    ChannelNotStarted,
    InvalidConfig,
    InvalidName,
    InvalidSpec,
    NodeNotRunning,
    UnknownActorType,
    UnknownChannelType,
    UnknownRead,
    WesError,
)
from ._leases import Leases
from ._lifecycle import activate
from ._loader import build_actors, read_stored
from ._specs import Spec, as_specs, check_id
from ._stats import NullStats
from ._sweep import SaveSweep
from ._turn import holding
from ._wheel import Wheel
from ._writer import Writer

log = logging.getLogger("wes")
_type = type  # `type` is a parameter name below
_CLOSE_CHUNK = 1000  # channels stopped at once when the node closes


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A running channel as seen when asked: its id, the address of the node that owns it,
    and the ids of its actors at that moment."""

    id: Ident
    owner: str
    actors: tuple[Ident, ...]


def _check_type_name(kind: str, name: Any) -> None:
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


class Node:
    """Runs channels and their actors.

    Register types with `actor_type` and `channel_type`, then use the node inside
    `async with node:`; on exit every channel stops normally (saving) and the node closes
    its backends.

    Args:
        store: where actor states persist; default `SqliteStore("wes.db")`.
        registry: leases for channels and actors; default an in-process `MemoryRegistry`.
        stats: receives every event; default none.
        codec: turns states into bytes; default `JsonCodec`.
        address: this node's address in the registry; default host:pid:random.
    """

    def __init__(
        self,
        store: Store | None = None,
        registry: Registry | None = None,
        stats: Stats | None = None,
        codec: Codec | None = None,
        *,
        address: str | None = None,
    ) -> None:
        if store is None:
            from ._backends.sqlite import SqliteStore

            store = SqliteStore("wes.db")
        self.store = store
        self.registry = registry if registry is not None else MemoryRegistry()
        self.stats = stats if stats is not None else NullStats()
        self.codec = codec if codec is not None else JsonCodec()
        self.address = address or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stats_on = not isinstance(self.stats, NullStats)
        self._channel_types: dict[str, ChannelConf] = {}
        self._actor_types: dict[str, ActorConf] = {}
        self._channels: dict[Ident, Channel] = {}
        self._actors: dict[Ident, Actor] = {}
        self._starting: dict[Ident, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: dict[int, Writer] = {}
        self.leases = Leases(self, self._registry_of)
        self.sweep = SaveSweep(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wheel: Wheel | None = None
        self._state: Literal["new", "running", "closing", "closed"] = "new"

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
        _check_type_name("actor", type)
        if not (isinstance(cls, _type) and issubclass(cls, Actor)):
            raise InvalidConfig(f"actor type {type!r}: {cls!r} is not a wes.Actor subclass")
        store = store or self.store
        own_registry = registry is not None and registry is not self.registry
        self._actor_types[type] = ActorConf(
            type,
            cls,
            store,
            registry or self.registry,
            has_own_key(cls),
            self.writer(store),
            type if own_registry else "",
        )

    def channel_type(
        self,
        type: str,
        *,
        idle_timeout: float | None = 300.0,
        save_interval: float | None = 60.0,
        lease: float = 30.0,
        durability: Literal["periodic", "command"] = "periodic",
        registry: Registry | None = None,
    ) -> None:
        """Register a channel type and its timeouts, lease and durability."""
        _check_type_name("channel", type)
        where = f"channel type {type!r}"
        idle = _positive(f"{where}: idle_timeout", idle_timeout, optional=True)
        interval = _positive(f"{where}: save_interval", save_interval, optional=True)
        lease_s = _positive(f"{where}: lease", lease, optional=False)
        if durability not in ("periodic", "command"):
            raise InvalidConfig(
                f"{where}: durability must be 'periodic' or 'command', not {durability!r}"
            )
        assert lease_s is not None
        self._channel_types[type] = ChannelConf(
            type, idle, interval, lease_s, durability == "command", registry or self.registry, self
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

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the node; `async with node` calls this."""
        if self._state != "new":
            raise NodeNotRunning(f"node {self.address} was already started ({self._state})")
        self._loop = asyncio.get_running_loop()
        self._wheel = Wheel(self._loop)
        self._state = "running"
        self.leases.start()

    async def aclose(self) -> None:
        """Stop every channel normally (saving), then close the backends. Idempotent."""
        if self._state in ("closing", "closed"):
            return
        if self._state == "new":
            self._state = "closed"
            await self._close_backends()
            return
        self._state = "closing"
        # Stop channels many at a time so that their final saves share commits.
        idents = list(self._channels)
        for start in range(0, len(idents), _CLOSE_CHUNK):
            chunk = idents[start : start + _CLOSE_CHUNK]
            await asyncio.gather(*(self._stop_at_close(ident) for ident in chunk))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.leases.settle()
        assert self._wheel is not None
        self._wheel.close()
        self._state = "closed"
        await self._close_backends()

    async def _stop_at_close(self, ident: Ident) -> None:
        ch = self._channels.get(ident)
        if ch is None:
            return
        try:
            await ch.take_turn()
            try:
                await ch.stop_in_turn("normal")
            finally:
                ch.pass_turn()
        except ChannelNotStarted:
            pass
        except Exception as exc:  # counted by the channel; dropping state silently is worse
            log.error("channel %r could not save when the node stopped: %r", ident, exc)
            if ch.running:
                await ch.crash(exc)

    async def _close_backends(self) -> None:
        seen: set[int] = set()
        backends: list[Any] = [self.store, self.registry]
        for conf in self._actor_types.values():
            backends += [conf.store, conf.registry]
        for conf_c in self._channel_types.values():
            backends.append(conf_c.registry)
        for backend in backends:
            if id(backend) not in seen:
                seen.add(id(backend))
                await backend.aclose()

    # -- services for channels ------------------------------------------------------------

    @property
    def wheel(self) -> Wheel:
        assert self._wheel is not None
        return self._wheel

    @property
    def counts_events(self) -> bool:
        """Whether `event` reaches a stats sink (not `NullStats`)."""
        return self._stats_on

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self._stats_on:
            try:
                self.stats.event(kind, name, ident, seconds, error)
            except Exception:  # a broken stats sink must not break channels
                log.exception("stats sink failed on %s %s", kind, name)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task the node tracks, cancels and awaits on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # already delivered to its caller or counted; don't log twice

    def writer(self, store: Store) -> Writer:
        writer = self._writers.get(id(store))
        if writer is None:
            writer = self._writers[id(store)] = Writer(store, self.spawn)
        return writer

    def actor_conf(self, actor_type: str) -> ActorConf:
        return self._actor_types[actor_type]

    def forget_channel(self, ch: Channel) -> None:
        if self._channels.get(ch.id) is ch:
            del self._channels[ch.id]
        for actor in ch.actors:
            self.forget_actor(actor)

    def forget_actor(self, actor: Actor) -> None:
        if self._actors.get(actor._wes_id) is actor:
            del self._actors[actor._wes_id]

    @property
    def is_running(self) -> bool:
        return self._state == "running"

    def running_channels(self) -> list[Channel]:
        return list(self._channels.values())

    def shortest_lease(self) -> float:
        return min((conf.lease for conf in self._channel_types.values()), default=30.0)

    def _registry_of(self, claim: Claim) -> Registry:
        if claim.kind == "channel":
            return self._channel_types[claim.ident[0]].registry
        scope = claim.ident[0]  # see `ActorConf.scope`
        return self.registry if not scope else self._actor_types[scope].registry

    # -- checks ---------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != "running":
            raise NodeNotRunning(
                f"node {self.address} is {self._state}: use it inside `async with node:`"
            )

    def _channel_conf(self, channel: Any) -> ChannelConf:
        check_id(channel, "channel")
        conf = self._channel_types.get(channel[0])
        if conf is None:
            raise UnknownChannelType(
                f"channel type {channel[0]!r} of {channel!r} is not registered: "
                f"call node.channel_type({channel[0]!r}) first"
            )
        return conf

    def _registered_type(self, actor: Any) -> ActorConf:
        """The configuration of a checked actor id's type, or `UnknownActorType`."""
        conf = self._actor_types.get(actor[0])
        if conf is None:
            raise UnknownActorType(
                f"actor type {actor[0]!r} of {actor!r} is not registered: "
                f"call node.actor_type({actor[0]!r}, cls) first"
            )
        return conf

    def _check_specs(self, specs: Any) -> list[Spec]:
        out = as_specs(specs)
        for spec in out:
            self._registered_type(spec.actor)
        return out

    def _not_started(self, channel: Any, name: Any = "") -> WesError:
        self._check_running()
        try:
            self._channel_conf(channel)
        except WesError as exc:
            return exc
        if not isinstance(name, str):
            return InvalidName(f"command name must be a str, not {name!r}")
        return ChannelNotStarted(f"channel {channel!r} is not running on this node")

    # -- operations -----------------------------------------------------------------------

    async def command(self, channel: Ident, name: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a command to every actor of the channel; returns once all handled it.

        Raises `ChannelNotStarted`, `UnknownCommand`, or the very exception an actor raised
        (then the channel stopped without saving).
        """
        try:
            ch = self._channels.get(channel)
        except TypeError:
            ch = None
        if ch is None:
            raise self._not_started(channel, name)
        if not isinstance(name, str):
            raise InvalidName(f"command name must be a str, not {name!r}")
        loop = self._loop
        assert loop is not None
        started = loop.time()
        try:
            if ch.busy or ch.has_async:
                return await ch.run_command(name, args, kwargs)
            # The fast path: the channel is free and every handler is synchronous, so
            # nothing else can run on this loop until we are done; no lock, task or future.
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
                await asyncio.shield(self.spawn(ch.finish_in_turn()))
        finally:
            if self._stats_on:  # every command a running channel received, raising or not
                seconds = loop.time() - started if self.stats.timed else None
                self.event("command", name, ch.id, seconds)

    async def read(self, actor: Ident, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Ask one actor for a view of its state. Raises `ActorNotActive`, `UnknownRead`, or
        what the handler raised (the channel keeps running)."""
        try:
            a = self._actors.get(actor)
        except TypeError:
            a = None
        if a is None:
            self._check_running()
            self._registered_type(check_id(actor, "actor"))
            if not isinstance(name, str):
                raise InvalidName(f"read name must be a str, not {name!r}")
            raise ActorNotActive(f"actor {actor!r} is in no channel on this node")
        if not isinstance(name, str):
            raise InvalidName(f"read name must be a str, not {name!r}")
        if self._stats_on:
            return await self._read_counted(a, name, args, kwargs)
        handler = a._wes_reads.get(name)
        ch = a._wes_ch
        assert ch is not None
        if handler is None or ch.busy:
            return await self._read_slow(a, ch, name, args, kwargs)
        ch.last_active = self._loop.time()  # type: ignore[union-attr]
        try:
            return handler(a, *args, **kwargs)
        except TypeError as exc:
            if binding_failed(exc):  # Python's own binding is the check (see `_arguments`)
                raise invalid("read", name, a, handler, args, kwargs) from None
            raise

    async def _read_counted(
        self, a: Actor, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        ch = a._wes_ch
        assert ch is not None
        started = self.now()
        try:
            return await self._read_slow(a, ch, name, args, kwargs)
        finally:
            seconds = self.now() - started if self.stats.timed else None
            self.event("read", name, a._wes_id, seconds)

    async def _read_slow(
        self, a: Actor, ch: Channel, name: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        handler = a._wes_reads.get(name) or a._wes_async_reads.get(name)
        if handler is None:
            raise UnknownRead(f"actor {a._wes_id!r} has no read {name!r}")
        check_read(name, a, args, kwargs)
        await ch.take_turn()
        try:
            if a._wes_ch is not ch:
                raise ActorNotActive(f"actor {a._wes_id!r} left channel {ch.id!r}")
            ch.last_active = self.now()
            return await holding(ch, handler(a, *args, **kwargs))
        finally:
            ch.pass_turn()

    async def status(self, channel: Ident) -> ChannelRef | None:
        """The running channel, or `None`."""
        self._check_running()
        conf_error = None
        try:
            self._channel_conf(channel)
        except WesError as exc:
            conf_error = exc
        if conf_error is not None:
            raise conf_error
        ch = self._channels.get(channel)
        return None if ch is None else self._ref(ch)

    async def stored(self, actor: Ident) -> Actor | None:
        """The actor as its store holds it (decoded and migrated), or `None` if the store
        does not hold it. It is not activated: no claim, no channel, no hooks, so it says
        nothing of an active copy's unsaved changes. Raises `StateNotLoadable` or
        `StoreUnavailable`."""
        self._check_running()
        conf = self._registered_type(check_id(actor, "actor"))
        return await read_stored(self.codec, conf, actor)

    def _ref(self, ch: Channel) -> ChannelRef:
        return ChannelRef(ch.id, self.address, tuple(a._wes_id for a in ch.actors))

    async def stop_channel(self, channel: Ident) -> None:
        """Stop the channel normally: save (where `should_save`), release every claim."""
        ch = self._running(channel)
        await ch.take_turn()
        try:
            await ch.stop_in_turn("normal")
        finally:
            ch.pass_turn()

    def _running(self, channel: Any) -> Channel:
        try:
            ch = self._channels.get(channel)
        except TypeError:
            ch = None
        if ch is None:
            raise self._not_started(channel)
        return ch

    async def create_channel(self, channel: Ident, specs: Any = ()) -> ChannelRef:
        """Start a channel with its actors. Fails with `ChannelAlreadyStarted` or a spec
        error; then nothing started and every claim taken was released."""
        self._check_running()
        conf = self._channel_conf(channel)
        spec_list = self._check_specs(specs)
        if channel in self._channels or channel in self._starting:
            raise ChannelAlreadyStarted(f"channel {channel!r} is already running")
        return self._ref(await self._start(channel, conf, spec_list))

    async def ensure_channel(self, channel: Ident, specs: Any = ()) -> ChannelRef:
        """The running channel (given the specs' missing actors), or a new one."""
        self._check_running()
        conf = self._channel_conf(channel)
        spec_list = self._check_specs(specs)
        while True:
            ch = self._channels.get(channel)
            if ch is not None:
                try:
                    await self._add_actors(ch, spec_list, ensure=True)
                except ChannelNotStarted:
                    if ch.running:
                        raise
                    continue  # it stopped while we waited for its turn: start it anew
                return self._ref(ch)
            starting = self._starting.get(channel)
            if starting is None:
                return self._ref(await self._start(channel, conf, spec_list))
            await asyncio.shield(starting)

    async def create_actor(self, channel: Ident, specs: Any) -> None:
        """Add new actors to a running channel. Fails with `ChannelNotStarted`,
        `ActorAlreadyInChannel` or a spec error; the channel stays as it was."""
        ch = self._running(channel)
        await self._add_actors(ch, self._check_specs(specs), ensure=False)

    async def ensure_actor(self, channel: Ident, specs: Any) -> None:
        """Like `create_actor`, but actors already in the channel are fine."""
        ch = self._running(channel)
        await self._add_actors(ch, self._check_specs(specs), ensure=True)

    # -- starting channels and adding actors ----------------------------------------------

    async def _start(self, channel: Ident, conf: ChannelConf, specs: list[Spec]) -> Channel:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting[channel] = done
        try:
            await self.leases.settle()  # a stopped channel's claims may be on their way out
            self._check_local_locks(specs, channel)
            sent_at = self.now()  # the lease runs from the request, not the reply
            claims = await self.leases.claim(
                [("channel", channel)], self.address, conf.registry, conf.lease
            )
            ch = Channel(channel, conf, claims[0], sent_at)
            try:
                actors = await self._load(ch, specs)
            except BaseException:
                ch.claim = None  # never started: a wheel entry its hooks made finds it stopped
                await self.leases.release(claims)
                raise
            self._channels[channel] = ch
            self._attach(ch, actors)
            self.event("start", "channel", channel)
            ch.reschedule()
            if ch.pending is not None:  # an on_activate hook asked to stop or to leave
                await ch.take_turn()
                try:
                    await ch.finish()
                finally:
                    ch.pass_turn()
            return ch
        finally:
            del self._starting[channel]
            done.set_result(None)

    async def _add_actors(self, ch: Channel, specs: list[Spec], *, ensure: bool) -> None:
        await ch.take_turn()
        try:
            present = {a._wes_id for a in ch.actors}
            missing = []
            for spec in specs:
                if spec.actor in present:
                    if not ensure:
                        raise ActorAlreadyInChannel(
                            f"actor {spec.actor!r} is already in channel {ch.id!r}"
                        )
                else:
                    missing.append(spec)
            if not missing:
                return
            self._check_local_locks(missing, ch.id)
            actors = await self._load(ch, missing)
            if not ch.running:
                await self.leases.release([a._wes_claim for a in actors])
                raise ChannelNotStarted(f"channel {ch.id!r} stopped")
            self._attach(ch, actors)
            if ch.pending is not None:  # an on_activate hook asked to stop or to leave
                await ch.finish()
        finally:
            ch.pass_turn()

    def _attach(self, ch: Channel, actors: list[Actor]) -> None:
        ch.add(actors)
        for actor in actors:
            self._actors[actor._wes_id] = actor
            self.event("start", "actor", actor._wes_id)
            if actor._wes_dirty:
                ch.mark_dirty()

    def _check_local_locks(self, specs: list[Spec], channel: Ident) -> None:
        for spec in specs:
            actor = self._actors.get(spec.actor)
            if actor is not None and actor._wes_ch is not None:
                raise ActorAlreadyLocked(
                    f"actor {spec.actor!r} is active in channel {actor._wes_ch.id!r}"
                )

    async def _load(self, ch: Channel, specs: list[Spec]) -> list[Actor]:
        """Claim the actors for the channel, build them, run their `on_activate` hooks; all
        or nothing."""
        by_registry: dict[Registry, list[tuple[ClaimKind, Ident]]] = {}
        actor_of: dict[Ident, Ident] = {}  # claim name -> actor id
        for spec in specs:
            conf = self._actor_types[spec.actor[0]]
            name = conf.claim_ident(spec.actor[1])
            other = actor_of.setdefault(name, spec.actor)
            if other != spec.actor:
                raise InvalidSpec(
                    f"actors {other!r} and {spec.actor!r} have one storage key {name[1]!r}: "
                    f"they are one stored state, and only one of them can be active"
                )
            by_registry.setdefault(conf.registry, []).append(("actor", name))
        claims: list[Claim] = []
        try:
            for registry, names in by_registry.items():
                claims += await self.leases.claim(
                    names, ch.id, registry, ch.conf.lease, actor_of=actor_of
                )
            by_actor = {actor_of[c.ident]: c for c in claims}
            actors = await build_actors(self, specs, by_actor)
            await activate(ch, actors)
            return actors
        except BaseException:
            await self.leases.release(claims)
            raise
