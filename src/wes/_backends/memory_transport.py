"""`MemoryTransport`: one in-process hub that several nodes of one process share.

It carries the very bytes a network transport would (the node encodes every call the same
way whatever carries it), so a cluster of nodes in one process is held to the wire's rules:
JSON arguments and answers, the payload limit, refusals and retries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .._abc import OnAnnounce, OnRequest, Transport
from .._errors import InvalidArguments, InvalidConfig, NodeUnreachable, OutcomeUnknown

DEFAULT_MAX_PAYLOAD = 1024 * 1024  # NATS's default


@dataclass(slots=True)
class _Listener:
    on_request: OnRequest | None  # None once it stopped taking requests
    on_announce: OnAnnounce


class MemoryTransport(Transport):
    """A hub for the nodes of one process; pass the same instance to each `Node`.

    Args:
        max_payload: the largest request or answer in bytes, as a NATS server's limit.
    """

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload < 1:
            raise InvalidConfig(f"max_payload must be a positive int, not {max_payload!r}")
        self._max_payload = max_payload
        self._listeners: dict[str, _Listener] = {}

    @property
    def max_payload(self) -> int:
        return self._max_payload

    async def listen(self, address: str, on_request: OnRequest, on_announce: OnAnnounce) -> None:
        self._listeners[address] = _Listener(on_request, on_announce)

    async def unlisten(self, address: str) -> None:
        listener = self._listeners.get(address)
        if listener is not None:
            listener.on_request = None

    async def leave(self, address: str) -> None:
        self._listeners.pop(address, None)

    async def request(self, address: str, data: bytes, within: float) -> bytes:
        listener = self._listeners.get(address)
        if listener is None or listener.on_request is None:
            raise NodeUnreachable(f"no node listens at {address!r}")
        if len(data) > self._max_payload:  # refused unsent, as by NatsTransport
            raise InvalidArguments(
                f"a request of {len(data)} bytes is over the limit of {self._max_payload}"
            )
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        async def reply(out: bytes) -> None:
            if len(out) > self._max_payload:  # as a NATS server refuses to carry it
                raise InvalidArguments(
                    f"an answer of {len(out)} bytes is over the limit of {self._max_payload}"
                )
            if not answer.done():
                answer.set_result(out)

        # A copy: the receiver must see bytes, never the caller's objects.
        listener.on_request(bytes(data), reply)
        try:
            return await asyncio.wait_for(answer, within)
        except TimeoutError:
            raise OutcomeUnknown(
                f"no answer from {address!r} within {within:.3g}s: the call may have run"
            ) from None

    async def announce(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for listener in list(self._listeners.values()):
            loop.call_soon(listener.on_announce, bytes(data))

    async def aclose(self) -> None:
        self._listeners.clear()
