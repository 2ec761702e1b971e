"""The caller's side of a cluster: finding where a channel runs and calling it there.

The registry is the only authority on who runs a channel; the owners (and actors' channels)
this node saw are kept as hints and dropped as soon as a call finds them wrong. "Runs
nowhere" is never cached. A call is retried only when it certainly did not run: refused
unexecuted (not here, stopping, expired, overloaded) or not delivered (`NodeUnreachable`);
a call that was sent and got no answer is `OutcomeUnknown` (reads and `status`, which
change nothing, are retried instead), all within `call_timeout`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from ._abc import Ident, Transport
from ._errors import (
    ActorNotActive,
    NodeUnreachable,
    OutcomeUnknown,
    ReentrantCall,
    RegistryUnavailable,
    WesError,
)
from ._peers import Peers
from ._specs import Spec, check_id
from ._travel import error_from_wire
from ._turn import call_chain
from ._types import ActorConf, ChannelConf, ChannelRef
from ._wire import OK_NONE, decode_answer, decode_ref_fields, encode_body, request_body

if TYPE_CHECKING:
    from ._runtime import Runtime

# The channel (or, for a read, the actor) a node is serving a remote call for, as
# `(kind, id)`, in the task that runs it: that call executes here or is refused, never
# forwarded again. (Channel and actor types are apart: one id may name both.)
serving: ContextVar[tuple[str, Ident] | None] = ContextVar("wes_serving", default=None)

MAX_HINTS = 100_000  # owners and homes remembered; past it the hints start over
MAX_REROUTES = 8  # look-ups again after "not here" before the call gives up
FIRST_BACKOFF = 0.01
MAX_BACKOFF = 0.25


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LOCAL: Final = _Marker("LOCAL")  # the channel runs here after all: do it locally
ABSENT: Final = _Marker("ABSENT")  # the channel runs nowhere


class Cluster:
    """Routes a node's operations to the nodes that own their channels."""

    def __init__(
        self, runtime: Runtime, transport: Transport, call_timeout: float, peers: Peers
    ) -> None:
        self._rt = runtime
        self.transport = transport
        self.call_timeout = call_timeout
        self.peers = peers
        self.error_types: dict[str, type[BaseException]] = {}
        self._owners: dict[Ident, str] = {}  # channel -> owner address, a hint
        self._homes: dict[Ident, Ident] = {}  # actor -> its channel, a hint
        self._rid_prefix = f"{runtime.address}#"
        self._rids = map(str, itertools.count())

    # -- the operations -------------------------------------------------------------------

    async def read(
        self, actor: Ident, conf: ActorConf, name: str, args: tuple[Any, ...], kw: Any
    ) -> Any:
        """The view, or `LOCAL` if the actor turned out to be here."""
        for _ in range(MAX_REROUTES):
            home = await self._home(actor, conf)
            if home is None:
                break
            try:
                channel_conf = self._rt.channel_conf_of(home)
            except WesError:
                break  # a channel type this node does not know: it cannot be reached
            got = await self.at_owner(
                "read", home, channel_conf, to=actor, name=name, args=args, kwargs=kw
            )
            if got is LOCAL and actor not in self._rt.actors:
                got = ABSENT  # its channel runs here without it: it left; look again
            if got is not ABSENT:
                return got
            self._homes.pop(actor, None)
        raise ActorNotActive(f"actor {actor!r} is in no channel")

    async def place(self, op: str, channel: Ident, conf: ChannelConf, specs: list[Spec]) -> Any:
        """Start `channel`, which runs nowhere, where its placement says: `LOCAL` when that
        is this node, else the remote node's answer. A node that cannot take it (gone,
        stopping, overloaded) is skipped for the next in rendezvous order."""
        if conf.placement == "local":
            return LOCAL
        deadline = self._rt.now() + self.call_timeout
        for address in self.peers.rank(channel):
            if address == self._rt.address:
                return LOCAL
            try:
                body = request_body(op, channel, specs=specs, chain=call_chain())
                return await self._call(address, body, deadline, self._rt.now())
            except _Refused:
                continue
            except NodeUnreachable:
                self.peers.forget(address)
        return LOCAL  # nobody else can take it

    # -- routing --------------------------------------------------------------------------

    async def at_owner(
        self, op: str, channel: Ident, conf: ChannelConf, to: Ident | None = None, **fields: Any
    ) -> Any:
        """Run `op` on the owner of `channel`: its answer, `LOCAL` if the channel runs here
        after all, or `ABSENT` if it runs nowhere."""
        chain = call_chain()
        # `status` takes no turn, so it cannot wait for itself: it answers, as on one node.
        if op != "status" and channel in chain:
            raise ReentrantCall(
                f"a call path holding channel {channel!r} (on another node) awaited an "
                f"operation on it, which would wait for itself forever"
            )
        now = self._rt.now()
        deadline = now + self.call_timeout
        body = request_body(op, to or channel, chain=chain, **fields)
        backoff = FIRST_BACKOFF
        reroutes = 0  # "not here" answers; an unreachable owner is retried until the deadline
        while reroutes < MAX_REROUTES:
            owner = self._owners.get(channel) or await self._owner(channel, conf)
            if owner is None:
                return ABSENT
            if owner == self._rt.address:
                local = await self._here(channel)
                if local is not None:
                    return local
                reroutes += 1
            else:
                try:
                    if not self.peers.is_live(owner, now):
                        # Unheard for seconds (its host may be gone with its connection
                        # left open, so NATS would still deliver to it): not sent at all.
                        raise NodeUnreachable(f"node {owner} is not live")
                    return await self._call(owner, body, deadline, now)
                except _Refused:
                    reroutes += 1  # not there after all: look again
                except OutcomeUnknown:
                    # The owner may be frozen or cut off for good: the next call asks the
                    # registry again instead of waiting on the same node once more.
                    self._forget(channel)
                    raise
                except NodeUnreachable:
                    if self._rt.now() + backoff >= deadline:
                        raise
                    self.peers.forget(owner)
            self._forget(channel)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            now = self._rt.now()
        return ABSENT

    async def _here(self, channel: Ident) -> Any:
        """`LOCAL` if the channel runs here; None if it does not (yet), after waiting for a
        start under way."""
        if channel in self._rt.channels:
            return LOCAL
        starting = self._rt.starting.get(channel)
        if starting is not None:
            await asyncio.shield(starting)
            if channel in self._rt.channels:
                return LOCAL
        return None  # held by this node yet not running: a stop or a failed start settling

    async def _owner(self, channel: Ident, conf: ChannelConf) -> str | None:
        """The registry's holder of `channel` (the caller tried the hint first), remembered."""
        try:
            holder = await conf.registry.holder("channel", channel)
        except WesError:
            raise
        except Exception as exc:
            raise RegistryUnavailable(f"registry lookup of {channel!r} failed: {exc!r}") from exc
        if not isinstance(holder, str):
            return None
        self._remember(self._owners, channel, holder)
        return holder

    async def _home(self, actor: Ident, conf: ActorConf) -> Ident | None:
        home = self._homes.get(actor)
        if home is not None:
            return home
        try:
            holder = await conf.registry.holder("actor", conf.claim_ident(actor[1]))
        except Exception as exc:
            raise RegistryUnavailable(f"registry lookup of {actor!r} failed: {exc!r}") from exc
        if isinstance(holder, list):
            holder = tuple(holder)
        try:
            home = check_id(holder, "channel")
        except WesError:
            return None
        self._remember(self._homes, actor, home)
        return home

    def _forget(self, channel: Ident) -> None:
        self._owners.pop(channel, None)

    @staticmethod
    def _remember(hints: dict[Ident, Any], key: Ident, value: Any) -> None:
        if len(hints) >= MAX_HINTS:
            hints.clear()
        hints[key] = value

    # -- one node -------------------------------------------------------------------------

    async def _call(self, address: str, body: dict[str, Any], deadline: float, now: float) -> Any:
        """One request (`_wire.request_body`) to `address` (it is `now`), retried while it
        is overloaded (or, for a read or `status`, unanswered) until `deadline`. Raises
        `_Refused` if it refused the call for another reason, the error it answered,
        `NodeUnreachable` or `OutcomeUnknown`."""
        transport, clock = self.transport, self._rt.now
        backoff = FIRST_BACKOFF
        while True:
            left = deadline - now
            if left <= 0:
                raise NodeUnreachable(
                    f"{body['op']} of {body['to']!r}: no answer from {address} within"
                    f" {self.call_timeout}s"
                )
            rid = self._rid_prefix + next(self._rids)
            data = encode_body(body, rid, time.time() + left, transport.max_payload)
            try:
                raw = await transport.request(address, data, left)
            except OutcomeUnknown:
                idempotent = body["op"] in ("read", "status")
                if not idempotent or clock() + backoff >= deadline:
                    raise
            else:
                if raw == OK_NONE:  # most answers: a command's
                    return None
                answer = decode_answer(raw)
                if answer.ok:
                    return answer.value
                if answer.error is not None:
                    raise error_from_wire(answer.error, self.error_types, address)
                if answer.refused != "overloaded":
                    raise _Refused(answer.message)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            now = clock()

    def ref(self, value: Any) -> ChannelRef:
        """The `ChannelRef` an answer's value holds; `UsageError` if it holds none."""
        ident, owner, actors = decode_ref_fields(value)
        return ChannelRef(ident, owner, actors)


class _Refused(Exception):
    """The node refused the call unexecuted (not here, stopping, expired)."""
