"""The serving side of a cluster: executing the calls other nodes send to this one.

The transport hands each request over on the event loop (`on_request`), one subscription's
messages one at a time; nothing is awaited there. Each request becomes a task the node
tracks, up to `max_in_flight` at once; beyond that a request is refused as "overloaded" at
once, unexecuted. A request is refused unexecuted, too, when its deadline has passed (a
transport may deliver it late, after its caller gave up), when the node is stopping, and
when the channel does not run here or its lease ran out by this node's clock: the caller
then looks the owner up again. Everything else is executed by the node's own operations
and answered with its value or its error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from ._abc import Ident, Reply, Transport
from ._cluster import serving
from ._eager import run_now
from ._errors import ChannelNotHere, NotHere, ReentrantCall
from ._travel import error_to_wire
from ._turn import remote_chain
from ._types import ChannelRef, Services
from ._wire import (
    OK_NONE,
    BadRequest,
    Request,
    Unsendable,
    decode_request,
    encode_error_body,
    encode_ok,
    encode_ref,
    encode_refusal,
    encode_unsendable,
)

log = logging.getLogger("wes")

MAX_IN_FLIGHT = 1024


class Operations(Protocol):
    """The node's operations a remote call runs (`Node`)."""

    async def command(self, channel: Ident, name: str, /, *args: Any, **kwargs: Any) -> None: ...
    async def read(self, actor: Ident, name: str, /, *args: Any, **kwargs: Any) -> Any: ...
    async def status(self, channel: Ident) -> ChannelRef | None: ...
    async def stop_channel(self, channel: Ident) -> None: ...
    async def create_actor(self, channel: Ident, specs: Any) -> None: ...
    async def ensure_actor(self, channel: Ident, specs: Any) -> None: ...
    async def create_channel(self, channel: Ident, specs: Any = ()) -> ChannelRef: ...
    async def ensure_channel(self, channel: Ident, specs: Any = ()) -> ChannelRef: ...


class Server:
    """Takes a node's remote calls (see the module docstring)."""

    def __init__(
        self,
        node: Operations,
        runtime: Services,
        channels: dict[Ident, Any],
        actors: dict[Ident, Any],
        tasks: set[asyncio.Task[Any]],
        transport: Transport,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._node = node
        self._rt = runtime
        self._channels = channels
        self._actors = actors
        self._tasks = tasks  # the node's, which it cancels and awaits on close
        self._transport = transport
        self.max_in_flight = max_in_flight
        self.accepting = True
        self.in_flight = 0
        self._drained: asyncio.Event | None = None

    # -- taking requests ------------------------------------------------------------------

    def on_request(self, data: bytes, reply: Reply) -> None:
        """The transport's `OnRequest`: serve the request, or refuse it now.

        A command or read whose channel is free and whose handlers are all synchronous is
        run at once (`_eager`): it cannot wait for a turn, and its handlers run no user
        coroutine, so it needs no task of its own unless it waits for a save. Every other
        request becomes a task the node tracks."""
        if not self.accepting:
            self._rt.spawn(_send(reply, encode_refusal("stopping", "the node is stopping")))
        elif self.in_flight >= self.max_in_flight:
            refusal = encode_refusal("overloaded", f"{self.in_flight} calls in flight")
            self._rt.spawn(_send(reply, refusal))
        else:
            self.in_flight += 1
            try:
                req: Request | BadRequest = decode_request(data)
            except BadRequest as bad:
                req = bad
            serve = self._serve(req, reply)
            if self._runs_at_once(req):
                run_now(serve, self._tasks)
            else:
                self._rt.spawn(serve)

    def _runs_at_once(self, req: Request | BadRequest) -> bool:
        """Whether `req` is a command or read `run_now` may start (see `on_request`)."""
        if type(req) is not Request:
            return False
        if req.op == "command":
            ch = self._channels.get(req.to)
            return ch is not None and not (ch.busy or ch.has_async)
        if req.op == "read":
            actor = self._actors.get(req.to)
            return actor is not None and req.name in actor._wes_reads and not actor._wes_ch.busy
        return False

    async def drain(self, within: float) -> None:
        """Wait until the calls in flight are answered (at most `within` seconds)."""
        if self.in_flight:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), within)
            except TimeoutError:
                log.warning("%d remote calls still running as the node stops", self.in_flight)

    async def _serve(self, req: Request | BadRequest, reply: Reply) -> None:
        try:
            answer = await self.answer(req)
        finally:
            self.in_flight -= 1
            if self._drained is not None and not self.in_flight:
                self._drained.set()
        try:  # `_send`, inline: this runs for every call
            await reply(answer)
        except Exception as exc:
            log.debug("could not answer a remote call: %r", exc)

    # -- answering ------------------------------------------------------------------------

    async def answer(self, req: Request | BadRequest) -> bytes:
        """The answer to one request as decoded (or found bad)."""
        if type(req) is BadRequest:
            return encode_error_body(error_to_wire(req.error), self._transport.max_payload)
        assert type(req) is Request
        if req.deadline < time.time():
            return encode_refusal("expired", f"request {req.rid} arrived after its deadline")
        # This task's context only: the call runs here or is refused.
        serving.set(("actor" if req.op == "read" else "channel", req.to))
        remote_chain.set(req.chain)
        try:
            value = await self._run(req)
        except NotHere as gone:
            if gone.ident != req.to:
                # e.g. a handler's own call
                return encode_error_body(error_to_wire(gone), self._transport.max_payload)
            return encode_refusal("not_here", str(gone))
        except Exception as exc:
            return encode_error_body(error_to_wire(exc), self._transport.max_payload)
        if value is None:  # a command's answer (before the transport's limit is looked up)
            return OK_NONE
        try:
            return encode_ok(value, self._transport.max_payload)
        except Unsendable as why:
            what = f"{req.op} {req.name!r} of {req.to!r}" if req.name else f"{req.op} of {req.to!r}"
            return encode_unsendable(what, why, self._transport.max_payload)

    def _run(self, req: Request) -> Awaitable[Any]:
        """The node's operation the request asks for, to await (the node's own coroutine
        where it needs no more: one layer less for most calls); checked first."""
        node, to, op = self._node, req.to, req.op
        self._check_here(req)
        if op == "command":
            assert req.name is not None
            return node.command(to, req.name, *req.args, **req.kwargs)
        if op == "read":
            assert req.name is not None
            return node.read(to, req.name, *req.args, **req.kwargs)
        if op == "status":
            return self._status(to)
        if op == "stop_channel":
            return node.stop_channel(to)
        if op == "create_actor":
            return node.create_actor(to, req.specs)
        if op == "ensure_actor":
            return node.ensure_actor(to, req.specs)
        if op == "create_channel":
            return _ref_of(node.create_channel(to, req.specs))
        return _ref_of(node.ensure_channel(to, req.specs))

    async def _status(self, to: Ident) -> dict[str, Any]:
        ref = await self._node.status(to)
        if ref is None:
            raise ChannelNotHere(to, f"channel {to!r} does not run here")
        return _ref(ref)

    def _check_here(self, req: Request) -> None:
        """Refuse a call on a channel in the call's own chain, and one on a channel whose
        lease ran out by this node's clock."""
        if req.op == "read":
            actor = self._actors.get(req.to)
            ch = None if actor is None else actor._wes_ch
        else:
            ch = self._channels.get(req.to)
        if ch is None:
            return
        if ch.id in req.chain and req.op != "status":  # status takes no turn
            raise ReentrantCall(
                f"a call path holding channel {ch.id!r} awaited an operation on it from "
                f"another node, which would wait for itself forever"
            )
        if self._rt.now() >= ch.lease_until:
            gone = ch.lease_ran_out()
            if req.op == "read":
                raise ChannelNotHere(req.to, str(gone))
            raise gone


def _ref(ref: ChannelRef) -> dict[str, Any]:
    return encode_ref(ref.id, ref.owner, ref.actors)


async def _ref_of(started: Awaitable[ChannelRef]) -> dict[str, Any]:
    return _ref(await started)


async def _send(reply: Reply, answer: bytes) -> None:
    try:
        await reply(answer)
    except Exception as exc:  # the caller is gone, or the transport is: it times out
        log.debug("could not answer a remote call: %r", exc)
