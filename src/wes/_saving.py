"""Saving a channel: marking it dirty, encoding its dirty actors into one batch per store,
and concluding a write (a mixin of `Channel`: the channel holds the slots)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from ._actor import Actor
from ._codec import encoder_of_all
from ._errors import LeaseLost, StaleToken, StateNotEncodable
from ._state import ChannelState
from ._writer import Queue, Ticket

if TYPE_CHECKING:
    from ._channel import Channel
    from ._types import ActorConf, Services
    from ._writer import Writer

_should_save = Actor.should_save
_to_state = Actor.to_state
_flatten = chain.from_iterable
_ident_of = attrgetter("ident")
_key_of = itemgetter(1)  # a claim's ident is (scope, storage key)
_token_of = attrgetter("token")
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
        `StateNotEncodable`, and then nothing changed or was gathered. (A save sweep takes
        its channels with `take_dirty_of`.)
        """
        if now >= self.lease_until:
            raise LeaseLost(f"channel {self.id!r} lost its lease before it could save")
        runtime = self.conf.runtime
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
        raise _not_encodable(actor, exc) from exc


def take_dirty_of(
    channels: list[Channel],
    now: float,
    queues: dict[Writer, Queue],
    begun: list[Channel],
    failed: Callable[[Channel, Exception], None],
) -> None:
    """`Saving.take_dirty` of each of `channels` (whose turns the caller holds) that runs and
    is dirty, as a save sweep's slice: a channel that had something to save is appended to
    `begun`, its batches recorded under its index there; one whose save could not begin goes
    to `failed` with the error instead, unchanged.

    A sweep takes thousands of channels in a row, so the usual channel (one actor, whose
    class keeps the default `should_save` and `to_state`) has a path of its own, with no
    Python call per channel: its state joins a run of channels of one actor type (`_Run`),
    which is encoded at once (`_codec.EncodeAll`) and queued in one pass: each row's fields
    straight into its writer's queue, with no `Write` tuple or batch list (see `_writer`),
    the storage key the claim's (computed once per actor), and the actor type's settings
    looked up once for the run.
    """
    if not channels:
        return
    runtime = channels[0].conf.runtime
    actor_types = runtime.actor_types
    run: _Run | None = None
    for ch in channels:
        if ch.claim is None or not ch.dirty:
            continue  # stopped meanwhile, or nothing left to save
        actors = ch.actors
        if len(actors) == 1 and now < ch.lease_until:
            actor = actors[0]
            if not actor._wes_dirty:
                ch.dirty = False
                begun.append(ch)
                continue
            kind = actor._wes_id[0]
            if run is None or kind != run.kind:
                if run is not None:
                    run.queue_rows(begun, failed)
                run = _Run(kind, actor_types[kind], runtime, queues)
            if run.plain:
                state = actor.__dict__
                for name in state:
                    if name[:1] == "_":
                        state = _to_state(actor)
                        break
                run.states.append(state)
                run.channels.append(ch)
                run.claims.append(actor._wes_claim)
                actor._wes_dirty = False  # until `queue_rows` finds it cannot be encoded
                ch.dirty = False
                continue
        try:  # anything else: one call, as a save of its own
            ch.take_dirty(now, queues, len(begun))
        except Exception as exc:  # lease lost, or a state that cannot be encoded
            failed(ch, exc)
            continue
        begun.append(ch)
    if run is not None:
        run.queue_rows(begun, failed)


class _Run:
    """Channels of a save sweep's slice, one plain actor each (see `take_dirty_of`), of one
    actor type, in a row, and their states, to be encoded and queued together."""

    __slots__ = ("channels", "claims", "conf", "encode_all", "kind", "plain", "queue", "states")

    def __init__(
        self, kind: str, conf: ActorConf, runtime: Services, queues: dict[Writer, Queue]
    ) -> None:
        self.kind = kind
        self.conf = conf
        cls = conf.cls
        self.plain = cls.should_save is _should_save and cls.to_state is _to_state
        self.queue = _queue(queues, conf.writer)
        self.encode_all = encoder_of_all(runtime.codec)
        self.channels: list[Channel] = []
        self.states: list[dict[str, Any]] = []
        self.claims: list[Any] = []  # the actors' claims, whose key and token make the row

    def queue_rows(
        self, begun: list[Channel], failed: Callable[[Channel, Exception], None]
    ) -> None:
        """Encode the run's states and queue a row for each, a batch of its own; the channel
        whose state cannot be encoded goes to `failed`, the others to `begun`."""
        channels = self.channels
        if not channels:
            return
        datas, errors = self.encode_all(self.states)
        claims = self.claims
        if errors:
            for i in sorted(errors, reverse=True):
                ch = channels.pop(i)
                del datas[i], claims[i]
                actor = ch.actors[0]
                actor._wes_dirty = ch.dirty = True  # unchanged, as the caller had it
                failed(ch, _not_encodable(actor, errors[i]))
        first = len(begun)
        begun += channels
        queue = self.queue
        queue.params += _flatten(
            zip(
                map(_key_of, map(_ident_of, claims)),
                datas,
                repeat(self.conf.cls.version),
                map(_token_of, claims),
            )
        )
        queue.sizes.extend(repeat(1, len(channels)))
        queue.owners += range(first, first + len(channels))


def _not_encodable(actor: Actor, exc: Exception) -> StateNotEncodable:
    ident = actor._wes_id
    error = StateNotEncodable(f"cannot encode the state of actor {ident!r}: {exc}", ident)
    error.__cause__ = exc
    return error


def _queue(queues: dict[Writer, Queue], writer: Writer) -> Queue:
    """The caller's `Queue` of `writer`, opened on first use."""
    queue = queues.get(writer)
    if queue is None:
        queue = queues[writer] = Queue(writer)
    return queue
