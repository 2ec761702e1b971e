"""Saving a channel: marking it dirty, encoding its dirty actors into one batch per store,
and concluding a write (a mixin of `Channel`: the channel holds the slots)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._actor import Actor
from ._errors import LeaseLost, StaleToken, StateNotEncodable
from ._state import ChannelState
from ._writer import Queue, Ticket

if TYPE_CHECKING:
    from ._types import Services
    from ._writer import Writer

_should_save = Actor.should_save
_to_state = Actor.to_state
RETRY_BACKOFF = (0.05, 2.0)  # first and largest delay between retries of a failed save


class Saving(ChannelState):
    """The save state machine: `dirty` until a save's writes are handed over; clean from
    then on unless `end_save` reports a failure."""

    __slots__ = ()

    def mark_dirty(self, now: float | None = None) -> None:
        if not self.dirty:
            self.dirty = True
            conf = self.conf
            interval = conf.save_interval
            if interval is not None and not conf.durable:
                runtime = conf.runtime
                if now is None:
                    now = runtime.now()
                runtime.sweep.schedule(self, now + interval, now)

    def take_dirty(self, now: float, queues: dict[Writer, Queue], owner: int) -> None:
        """Encode the dirty actors that should be saved and gather their rows for their
        stores' writers, one atomic batch per store, each recorded as `owner`'s in `queues`
        (the caller's, one `Queue` per writer, which it sends). The caller holds the turn;
        the actors count as clean until `end_save` says otherwise. Raises `LeaseLost` or
        `StateNotEncodable`, and then nothing changed or was gathered.

        A save sweep calls this for thousands of channels in a row, so the usual channel (one
        actor) has a path of its own: its row's fields go straight into its writer's queue,
        with no `Write` tuple, batch list or second pass (see `_writer`), and the storage key
        is the claim's (computed once per actor).
        """
        if now >= self.lease_until:
            raise LeaseLost(f"channel {self.id!r} lost its lease before it could save")
        runtime = self.conf.runtime
        actors = self.actors
        if len(actors) == 1:
            actor = actors[0]
            if actor._wes_dirty:
                data = _encoded(actor, runtime.codec.encode)
                actor._wes_dirty = False
                if data is not None:
                    conf = runtime.actor_types[actor._wes_id[0]]
                    claim = actor._wes_claim
                    writer = conf.writer
                    queue = queues.get(writer)  # `_queue(queues, writer).add(...)` inline
                    if queue is None:
                        queue = queues[writer] = Queue(writer)
                    queue.params += (claim.ident[1], data, conf.cls.version, claim.token)
                    queue.sizes.append(1)
                    queue.owners.append(owner)
            self.dirty = False
            return
        self._take_dirty_actors(runtime, queues, owner)

    def _take_dirty_actors(
        self, runtime: Services, queues: dict[Writer, Queue], owner: int
    ) -> None:
        """`take_dirty` of a channel of several actors (or none)."""
        encode = runtime.codec.encode
        rows: dict[Writer, list[Any]] = {}  # a batch per store
        for actor in self.actors:
            if not actor._wes_dirty:
                continue
            data = _encoded(actor, encode)
            if data is None:
                continue
            conf = runtime.actor_types[actor._wes_id[0]]
            claim = actor._wes_claim
            rows.setdefault(conf.writer, []).extend(
                (claim.ident[1], data, conf.cls.version, claim.token)
            )
        for actor in self.actors:
            actor._wes_dirty = False
        self.dirty = False
        for writer, fields in rows.items():
            _queue(queues, writer).add(fields, owner)

    async def save(self) -> None:
        """Write the dirty actors in one atomic write (per store); the caller holds the turn.

        Raises `StateNotEncodable`, `StaleToken`, `LeaseLost` or `StoreUnavailable`; then
        the actors stay dirty.
        """
        started = self.conf.runtime.now()
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
        """Encode the dirty actors and hand their batches to the writers; `None` when there
        is nothing to write. The actors count as clean until `end_save` says otherwise."""
        if not self.dirty:
            return None
        queues: dict[Writer, Queue] = {}
        self.take_dirty(self.conf.runtime.now(), queues, 0)
        return [Ticket(*queue.send()) for queue in queues.values()]

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
        runtime = self.conf.runtime
        if now is None:
            now = runtime.now()
        if now >= self.lease_until:
            # The write may have landed after a new owner read the store: it cannot count.
            raise LeaseLost(f"channel {self.id!r} lost its lease while it was saving")
        runtime.event("save", "ok", self.id, now - started if runtime.stats.timed else None)
        failing = runtime.sweep.failing
        if failing and self in failing:
            runtime.sweep.save_worked(self, now)

    async def save_or_die(self) -> None:
        """A durable save: if it fails, memory is ahead of the store, so the channel stops
        without saving and the error reaches the caller."""
        try:
            await self.save()
        except BaseException as exc:
            self.conf.runtime.event("save", "error", self.id, error=exc)
            await self.crash(exc, lease_lost=isinstance(exc, StaleToken | LeaseLost))
            raise

    def periodic_save_failed(self, exc: BaseException) -> None:
        """A periodic save (or a final one that leaves the channel running) failed: a fenced
        or late write stops the channel (lease lost); anything else is counted, logged and
        retried while the channel runs on."""
        if isinstance(exc, StaleToken | LeaseLost):
            self.crash_later(exc, lease_lost=True)
        else:
            runtime = self.conf.runtime
            runtime.event("save", "error", self.id, error=exc)
            runtime.sweep.save_failed(self, exc)

    def retry_save_later(self) -> None:
        """After a failed save, try again with exponential backoff (periodic channels; a
        durable channel that fails to save stops instead)."""
        conf = self.conf
        if conf.durable or conf.save_interval is None:
            return
        low, high = RETRY_BACKOFF
        self.save_retry = min(high, (self.save_retry or low / 2) * 2)
        conf.runtime.sweep.schedule(self, conf.runtime.now() + self.save_retry)


def _encoded(actor: Actor, encode: Callable[[dict[str, Any]], bytes]) -> bytes | None:
    """The encoded state of `actor`, or `None` if it should not be saved now; raises
    `StateNotEncodable` naming the actor. The defaults of `should_save` and `to_state` are
    not called (a copy of the public attributes, made without a call)."""
    cls = type(actor)
    if cls.should_save is not _should_save and not actor.should_save():
        return None
    try:
        state: dict[str, Any]
        if cls.to_state is _to_state:
            state = actor.__dict__
            for name in state:
                if name[:1] == "_":
                    state = actor.to_state()
                    break
            else:
                state = state.copy()
        else:
            state = actor.to_state()
        return encode(state)
    except Exception as exc:
        ident = actor._wes_id
        raise StateNotEncodable(
            f"cannot encode the state of actor {ident!r}: {exc}", ident
        ) from exc


def _queue(queues: dict[Writer, Queue], writer: Writer) -> Queue:
    """The caller's `Queue` of `writer`, opened on first use."""
    queue = queues.get(writer)
    if queue is None:
        queue = queues[writer] = Queue(writer)
    return queue
