"""Channels: passive serial executors holding the states of their actors.

A channel owns no task. A caller that finds the channel free runs the handlers itself (the
event loop already serializes them); a caller that finds it busy queues for its turn. Timers
and idle timeouts come from the node's shared wheel; periodic saves from the node's save
sweep; lease renewals from the node's renewal sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ._abc import Claim, Ident, Registry, Store, Write
from ._actor import Actor, note_expected
from ._arguments import Refused, binding_failed, check_command, invalid
from ._errors import (
    ChannelNotStarted,
    LeaseLost,
    ReentrantCall,
    StaleToken,
    StateNotEncodable,
    UnknownCommand,
)
from ._lifecycle import deactivate
from ._turn import _holding, holding

if TYPE_CHECKING:
    from ._node import Node
    from ._writer import Ticket, Writer


_NEVER = float("inf")
# `Write(...)` runs the named tuple's Python-level __new__; saves build one per actor state.
_write: Callable[[tuple[str, bytes, int, int]], Write] = partial(tuple.__new__, Write)
RETRY_BACKOFF = (0.05, 2.0)  # first and largest delay between retries of a failed save


@dataclass(frozen=True, slots=True)
class ChannelConf:
    """The settings of a channel type."""

    name: str
    idle_timeout: float | None
    save_interval: float | None
    lease: float
    durable: bool
    registry: Registry
    node: Node


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
    # type's name (`Node._registry_of` finds the registry from it).
    scope: str

    def key(self, name: str | int) -> str:
        return self.cls.key(name) if self.own_key else f"{self.name}/{name}"

    def claim_ident(self, name: str | int) -> Ident:
        """The registry name of the actor `name`'s claim: its scope and storage key."""
        return (self.scope, self.key(name))


class Timer:
    """A periodic actor timer."""

    __slots__ = ("actor", "due", "interval", "name")

    def __init__(self, actor: Actor, name: str, interval: float, due: float) -> None:
        self.actor = actor
        self.name = name
        self.interval = interval
        self.due = due


class Pending:
    """What a command asked of its channel for after it (rare, so kept out of the channel)."""

    __slots__ = ("leaving", "stopping")

    def __init__(self) -> None:
        self.stopping = False
        self.leaving: list[Actor] = []


class Channel:
    """A running channel. Created and driven by its node.

    A million idle channels must fit in little memory, so a channel keeps few fields: the
    rare ones (requests from handlers, save retries, timers, waiters) are `None` until used,
    and the lease needs no wheel entry: the node's renewal sweep watches it.
    """

    __slots__ = (
        "actors",
        "busy",
        "claim",
        "conf",
        "dirty",
        "has_async",
        "id",
        "last_active",
        "lease_until",
        "pending",
        "renewing",
        "save_retry",
        "timers",
        "waiters",
        "wake_slot",
    )

    def __init__(self, ident: Ident, conf: ChannelConf, claim: Claim, now: float):
        self.id = ident
        self.conf = conf
        self.claim: Claim | None = claim  # None once stopped
        self.actors: tuple[Actor, ...] = ()
        self.has_async = False
        self.busy = False
        self.waiters: deque[asyncio.Future[None]] | None = None
        self.dirty = False
        self.pending: Pending | None = None
        self.timers: dict[tuple[Actor, str], Timer] | None = None
        self.last_active = now
        self.save_retry: float | None = None  # the last backoff delay after a failed save
        self.lease_until = now + conf.lease
        self.renewing = False
        self.wake_slot: list[Any] | None = None

    @property
    def node(self) -> Node:
        return self.conf.node

    @property
    def running(self) -> bool:
        return self.claim is not None

    def __repr__(self) -> str:
        return f"<Channel {self.id!r} actors={len(self.actors)} running={self.running}>"

    # -- membership -----------------------------------------------------------------------

    def add(self, actors: Sequence[Actor]) -> None:
        for actor in actors:
            actor._wes_ch = self
        self.actors = self.actors + tuple(actors)
        self.has_async = any(a._wes_async_commands for a in self.actors)

    def remove(self, actor: Actor) -> None:
        actor._wes_ch = None
        self.actors = tuple(a for a in self.actors if a is not actor)
        self.has_async = any(a._wes_async_commands for a in self.actors)
        self.drop_timers([actor])

    def drop_timers(self, actors: Sequence[Actor]) -> None:
        """Cancel every timer of these actors."""
        if self.timers:
            for key in [k for k in self.timers if any(k[0] is a for a in actors)]:
                del self.timers[key]

    def claims(self) -> list[Claim]:
        assert self.claim is not None
        return [self.claim, *(a._wes_claim for a in self.actors)]

    # -- requests from actors -------------------------------------------------------------

    def request_stop(self) -> None:
        if self.pending is None:
            self.pending = Pending()
        self.pending.stopping = True

    def request_leave(self, actor: Actor) -> None:
        if self.pending is None:
            self.pending = Pending()
        if actor not in self.pending.leaving:
            self.pending.leaving.append(actor)

    def set_timer(self, actor: Actor, name: str, seconds: float) -> None:
        if self.timers is None:
            self.timers = {}
        due = self.node.now() + seconds
        self.timers[actor, name] = Timer(actor, name, seconds, due)
        self.node.wheel.schedule(self, due)

    def cancel_timer(self, actor: Actor, name: str) -> None:
        if self.timers:
            self.timers.pop((actor, name), None)

    # -- the turn -------------------------------------------------------------------------

    def check_reentry(self) -> None:
        if self in _holding.get():
            raise ReentrantCall(
                f"a handler of channel {self.id!r} awaited an operation on its own channel, "
                f"which would wait for itself forever"
            )

    async def take_turn(self) -> None:
        """Wait for the turn; on return the caller holds it (`busy` is true)."""
        if not self.busy:
            self.busy = True
        else:
            self.check_reentry()
            if self.waiters is None:
                self.waiters = deque()
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.pass_turn()  # the turn was handed to us as we were cancelled
                raise
        if not self.running:
            self.pass_turn()
            raise ChannelNotStarted(f"channel {self.id!r} stopped")

    def pass_turn(self) -> None:
        """Hand the turn to the next waiter, or free the channel."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.waiters = None
        self.busy = False

    # -- commands ---------------------------------------------------------------------------

    def apply_sync(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Apply a command whose handlers are all synchronous; raises what a handler raised,
        or `Refused` (nothing ran) if the arguments do not bind. Returns whether any actor
        handled it."""
        actors = self.actors
        if len(actors) == 1:
            # The usual channel: Python's own binding is the check (see `_arguments`).
            actor = actors[0]
            handler = actor._wes_commands.get(name)
            if handler is None:
                return False
            try:
                handler(actor, *args, **kwargs)
            except TypeError as exc:
                if binding_failed(exc):
                    raise Refused(invalid("command", name, actor, handler, args, kwargs)) from None
                raise
            actor._wes_dirty = True
            return True
        check_command(name, actors, args, kwargs)
        handled = False
        for actor in actors:
            handler = actor._wes_commands.get(name)
            if handler is not None:
                actor._wes_dirty = True
                handler(actor, *args, **kwargs)
                handled = True
        return handled

    async def apply(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Apply a command that may have async handlers; the caller holds the turn. Raises
        `Refused` (nothing ran) if the arguments do not bind to a handler."""
        check_command(name, self.actors, args, kwargs)
        handled = False
        for actor in self.actors:
            handler = actor._wes_commands.get(name)
            if handler is None:
                handler = actor._wes_async_commands.get(name)
                if handler is None:
                    continue
                actor._wes_dirty = True
                handled = True
                await holding(self, handler(actor, *args, **kwargs))
            else:
                actor._wes_dirty = True
                handled = True
                handler(actor, *args, **kwargs)
        return handled

    def unhandled(self, name: str) -> None:
        if self.actors:
            raise UnknownCommand(f"no actor of channel {self.id!r} handles command {name!r}")
        self.node.event("dead_letter", name, self.id)

    async def run_command(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The general path: wait for the turn, then apply and finish in a task of its own,
        so that cancelling the caller cannot cut a command in half."""
        await self.take_turn()
        task = self.node.spawn(self._command_in_turn(name, args, kwargs))
        await asyncio.shield(task)

    async def _command_in_turn(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            self.last_active = self.node.now()
            try:
                handled = await self.apply(name, args, kwargs)
            except Refused as refused:
                raise refused.error from None
            except BaseException as exc:
                await self.crash(exc)
                raise
            if not handled:
                self.unhandled(name)
                return
            self.mark_dirty()
            await self.finish()
        finally:
            self.pass_turn()

    async def finish_in_turn(self) -> None:
        """After a command applied on the fast path: durable save, leave, stop. The caller
        took the turn (set `busy`) before spawning this."""
        try:
            await self.finish()
        finally:
            self.pass_turn()

    async def finish(self) -> None:
        """Complete a command that left work behind: a durable save, leaving actors, a stop."""
        if self.conf.durable and self.dirty:
            await self.save_or_die()  # acknowledged means durable, or the channel dies unsaved
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending.stopping:
            await self.stop_in_turn("normal")
        elif pending.leaving:
            await self.leave_in_turn(pending.leaving)

    # -- saving ---------------------------------------------------------------------------

    def mark_dirty(self, now: float | None = None) -> None:
        if not self.dirty:
            self.dirty = True
            conf = self.conf
            interval = conf.save_interval
            if interval is not None and not conf.durable:
                node = conf.node
                node.sweep.schedule(self, (node.now() if now is None else now) + interval)

    def snapshot(self) -> dict[Writer, list[Write]]:
        """Encode every dirty actor that should be saved, grouped by store; clears no flag."""
        node = self.conf.node
        encode = node.codec.encode
        actor_conf = node.actor_conf
        batches: dict[Writer, list[Write]] = {}
        for actor in self.actors:
            if not actor._wes_dirty or not actor.should_save():
                continue
            ident = actor._wes_id
            conf = actor_conf(ident[0])
            try:
                data = encode(actor.to_state())
            except Exception as exc:
                raise StateNotEncodable(
                    f"cannot encode the state of actor {ident!r}: {exc}", ident
                ) from exc
            claim = actor._wes_claim  # named by the storage key, computed once per actor
            write = _write((claim.ident[1], data, conf.cls.version, claim.token))
            batch = batches.get(conf.writer)
            if batch is None:
                batches[conf.writer] = [write]
            else:
                batch.append(write)
        return batches

    def take_snapshot(self, now: float) -> dict[Writer, list[Write]]:
        """Snapshot the dirty actors for a save (the caller holds the turn and writes the
        batches); they count as clean until `end_save` says otherwise. Raises `LeaseLost` or
        `StateNotEncodable`, and then nothing changed."""
        if now >= self.lease_until:
            raise LeaseLost(f"channel {self.id!r} lost its lease before it could save")
        batches = self.snapshot()
        for actor in self.actors:
            actor._wes_dirty = False
        self.dirty = False
        return batches

    async def save(self) -> None:
        """Write the dirty actors in one atomic write (per store); the caller holds the turn.

        Raises `StateNotEncodable`, `StaleToken`, `LeaseLost` or `StoreUnavailable`; then
        the actors stay dirty.
        """
        started = self.node.now()
        tickets = self.begin_save()
        if tickets is None:
            return
        error: BaseException | None = None
        try:
            for ticket in tickets:
                await ticket.result()
        except BaseException as exc:
            error = exc
        self.end_save(started, error)

    def begin_save(self) -> list[Ticket] | None:
        """Snapshot the dirty actors and hand their batches to the writers; `None` when there
        is nothing to write. The actors count as clean until `end_save` says otherwise."""
        if not self.dirty:
            return None
        batches = self.take_snapshot(self.conf.node.now())
        return [writer.submit(batch) for writer, batch in batches.items()]

    def end_save(
        self, started: float, error: BaseException | None, now: float | None = None
    ) -> None:
        """Conclude a save `begin_save` started: raise its error (the actors are dirty again
        and a periodic retry is scheduled), or count it. `now` is the loop time, if at hand."""
        if error is not None:
            for actor in self.actors:
                actor._wes_dirty = True
            self.dirty = True
            self.retry_save_later()
            raise error
        node = self.conf.node
        if now is None:
            now = node.now()
        if now >= self.lease_until:
            # The write may have landed after a new owner read the store: it cannot count.
            raise LeaseLost(f"channel {self.id!r} lost its lease while it was saving")
        node.event("save", "ok", self.id, now - started if node.stats.timed else None)
        failing = node.sweep.failing
        if failing and self in failing:
            node.sweep.save_worked(self, now)

    async def save_or_die(self) -> None:
        """A durable save: if it fails, memory is ahead of the store, so the channel stops
        without saving and the error reaches the caller."""
        try:
            await self.save()
        except BaseException as exc:
            self.node.event("save", "error", self.id, error=exc)
            await self.crash(exc, lease_lost=isinstance(exc, StaleToken | LeaseLost))
            raise

    def periodic_save_failed(self, exc: BaseException) -> None:
        """A periodic save (or a final one that leaves the channel running) failed: a fenced
        or late write stops the channel (lease lost); anything else is counted, logged and
        retried while the channel runs on."""
        if isinstance(exc, StaleToken | LeaseLost):
            self.crash_later(exc, lease_lost=True)
        else:
            self.node.event("save", "error", self.id, error=exc)
            self.node.sweep.save_failed(self, exc)

    def retry_save_later(self) -> None:
        """After a failed save, try again with exponential backoff (periodic channels; a
        durable channel that fails to save stops instead)."""
        if self.conf.durable or self.conf.save_interval is None:
            return
        low, high = RETRY_BACKOFF
        self.save_retry = min(high, (self.save_retry or low / 2) * 2)
        self.node.sweep.schedule(self, self.node.now() + self.save_retry)

    # -- stopping -------------------------------------------------------------------------

    async def stop_in_turn(self, reason: str) -> None:
        """Stop normally: save, release every claim. A failed save raises and the channel
        keeps running, so no state is dropped silently."""
        if any(actor._wes_deactivates for actor in self.actors):  # no coroutine otherwise
            await self.deactivate(self.actors, reason)
        try:
            await self.save()
        except (StaleToken, LeaseLost) as exc:
            self.node.event("save", "error", self.id, error=exc)
            await self.crash(exc, lease_lost=True)
            raise
        except BaseException as exc:
            self.periodic_save_failed(exc)  # counted and logged; it runs on, dirty
            raise
        claims = self.detach()
        await self.node.leases.release(claims)
        self.node.event("stop", reason, self.id)  # after the release: stopped means free

    async def leave_in_turn(self, leaving: list[Actor]) -> None:
        if any(actor._wes_deactivates for actor in leaving):
            await self.deactivate(leaving, "leave")
        await self.save()
        gone = [actor for actor in leaving if actor._wes_ch is self]
        for actor in gone:
            self.remove(actor)
            self.node.forget_actor(actor)
        await self.node.leases.release([actor._wes_claim for actor in gone])

    async def deactivate(self, actors: Sequence[Actor], reason: str) -> None:
        """Run the actors' `on_deactivate` hooks before a final save; one that raises kills
        the channel unsaved, like a command's exception, and the error propagates."""
        try:
            await deactivate(self, actors, reason)
        except BaseException as exc:
            await self.crash(exc)
            raise

    def detach(self) -> list[Claim]:
        """Take the channel out of the node at once; return the claims to release."""
        claims = self.claims()
        self.claim = None
        self.node.forget_channel(self)
        for actor in self.actors:
            actor._wes_ch = None
        self.timers = None
        failing = self.node.sweep.failing
        if failing:
            failing.pop(self, None)  # a streak of failing saves ends with the channel
        return claims

    async def crash(self, exc: BaseException, *, lease_lost: bool = False) -> None:
        """Stop without saving; the next start sees the last persisted states."""
        if self.running:
            if not lease_lost:
                note_expected(exc, self.actors)
            claims = self.detach()
            await self._released(claims, "lease_lost" if lease_lost else type(exc).__name__, exc)

    def crash_later(self, exc: BaseException, *, lease_lost: bool = False) -> None:
        """Crash from a callback: stopped at once, the claims released by a task the node
        tracks."""
        if self.running:
            if not lease_lost:
                note_expected(exc, self.actors)
            claims = self.detach()
            reason = "lease_lost" if lease_lost else type(exc).__name__
            self.node.spawn(self._released(claims, reason, exc))

    async def _released(self, claims: list[Claim], reason: str, exc: BaseException) -> None:
        try:
            await self.node.leases.release(claims)
        finally:  # counted even if the node closes while the claims are released
            self.node.event("stop", reason, self.id, error=exc)

    # -- the wheel ------------------------------------------------------------------------

    def wake(self, now: float) -> None:
        """Called by the wheel at (or after) the earliest deadline asked for."""
        if self.claim is None:  # stopped
            return
        if self.busy:
            self.node.wheel.schedule(self, now + 0.002)  # due work waits for the turn
            return
        if self.timers and not self.conf.durable:
            # The hot path of 100 k ticking actors: fire synchronous timers right here.
            due = self.due_timers(now)
            if due and not any(t.actor._wes_async_timer for t in due):
                self.fire_timers_inline(due, now)
                return
        work = self.due_work(now)
        if work is None:
            self.reschedule()
        else:
            self.busy = True
            self.node.spawn(self._run_due(self.fire_timers if work == "timers" else self.stop_idle))

    def due_work(self, now: float) -> str | None:
        timers = self.timers
        if timers and any(t.due <= now for t in timers.values()):
            return "timers"
        idle = self.conf.idle_timeout
        if idle is not None and now >= self.last_active + idle:
            return "idle"
        return None

    async def _run_due(self, work: Callable[[], Any]) -> None:
        try:
            await work()
        finally:
            self.pass_turn()
            if self.running:
                self.reschedule()

    async def stop_idle(self) -> None:
        # A failed save was counted; the channel runs on and retries after another period.
        # An on_deactivate hook that raised killed the channel, and that was counted too.
        with contextlib.suppress(Exception):
            await self.stop_in_turn("idle")
        if self.running:
            self.last_active = self.node.now()  # retry after another idle period

    def due_timers(self, now: float) -> list[Timer]:
        """The timers due at `now`, earliest first."""
        due = [t for t in (self.timers or {}).values() if t.due <= now]
        if len(due) > 1:
            due.sort(key=lambda t: t.due)
        return due

    def fire_timers_inline(self, due: list[Timer], now: float) -> None:
        """Fire due synchronous timers right in the wheel's callback, as a free channel runs
        commands in its caller: no task, no future (there may be 100 k timers ticking).
        Only for periodic durability, where nothing needs awaiting afterwards."""
        node = self.conf.node
        for timer in due:
            if self.timers is None or self.timers.get((timer.actor, timer.name)) is not timer:
                continue  # cancelled by an earlier timer, or the channel stopped
            timer.due += timer.interval
            if timer.due <= now:
                timer.due = now + timer.interval  # fell behind: skip, don't burst
            node.event("timer", timer.name, self.id)
            timer.actor._wes_dirty = True
            try:
                timer.actor.on_timer(timer.name)
            except Exception as exc:
                self.crash_later(exc)
                return
            if not self.dirty:
                self.mark_dirty()
        if self.pending is not None:  # a timer asked to stop the channel or to leave it
            self.busy = True
            node.spawn(self._run_due(self.finish))
        else:
            self.reschedule(now)

    async def fire_timers(self) -> None:
        now = self.node.now()
        for timer in self.due_timers(now):
            if not self.running or self.timers is None:
                return
            if self.timers.get((timer.actor, timer.name)) is not timer:
                continue  # cancelled by an earlier timer
            timer.due += timer.interval
            if timer.due <= now:
                timer.due = now + timer.interval  # fell behind: skip, don't burst
            self.node.event("timer", timer.name, self.id)
            try:
                timer.actor._wes_dirty = True
                await holding(self, timer.actor.on_timer(timer.name))
            except BaseException as exc:
                await self.crash(exc)
                return
            self.mark_dirty()
        if self.running:
            # A failure was counted, and the channel stopped (durable) or runs on.
            with contextlib.suppress(Exception):
                await self.finish()

    def reschedule(self, now: float | None = None) -> None:
        """Ask the wheel to wake this channel at its next deadline."""
        conf = self.conf
        deadline = _NEVER
        if conf.idle_timeout is not None:
            deadline = self.last_active + conf.idle_timeout
        timers = self.timers
        if timers:
            if len(timers) == 1:
                for timer in timers.values():
                    if timer.due < deadline:
                        deadline = timer.due
            else:
                deadline = min(deadline, min(t.due for t in timers.values()))
        if deadline != _NEVER:
            if now is None:
                now = conf.node.now()
            conf.node.wheel.schedule(self, max(deadline, now + 0.001), now)

    def renewed(self, ok: bool, sent_at: float) -> None:
        """The answer to a renewal sent at `sent_at`."""
        if not self.running:
            return
        self.renewing = False
        if ok:
            self.lease_until = sent_at + self.conf.lease
        else:
            self.crash_later(LeaseLost(f"channel {self.id!r} lost its lease"), lease_lost=True)

    def renew_failed(self) -> None:
        """The registry did not answer; the next sweep retries, until the lease runs out."""
        self.renewing = False
