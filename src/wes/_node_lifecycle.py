"""A node's lifecycle: starting (and joining its cluster), and closing in order: stop
taking remote calls, stop every channel normally, then leave and close the backends
(`Node` inherits this)."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._abc import Ident
from ._errors import ChannelNotStarted, NodeNotRunning
from ._node_cluster import InCluster

if TYPE_CHECKING:
    from ._channel import Channel

log = logging.getLogger("wes")

_CLOSE_CHUNK = 1000  # channels stopped at once when the node closes


class Lifecycle(InCluster):
    """Starting and closing a node (see the module docstring)."""

    address: str
    _channels: dict[Ident, Channel]
    _loop: asyncio.AbstractEventLoop | None

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
        if self._rt.state != "new":
            raise NodeNotRunning(f"node {self.address} was already started ({self._rt.state})")
        self._loop = self._rt.start()
        try:
            await self._join()
        except BaseException:
            await self._rt.wind_down()
            self._rt.state = "closed"
            await self._close_backends()
            raise

    async def aclose(self) -> None:
        """Stop every channel normally (saving), then close the backends. Idempotent."""
        rt = self._rt
        if rt.state in ("closing", "closed"):
            return
        if rt.state == "new":
            rt.state = "closed"
            await self._close_backends()
            return
        rt.state = "closing"
        await self._stop_taking_calls()
        # Stop channels many at a time so that their final saves share commits.
        idents = list(self._channels)
        for start in range(0, len(idents), _CLOSE_CHUNK):
            chunk = idents[start : start + _CLOSE_CHUNK]
            await asyncio.gather(*(self._stop_at_close(ident) for ident in chunk))
        await rt.wind_down()
        await self._leave()
        rt.state = "closed"
        await self._close_backends()

    async def _stop_at_close(self, ident: Ident) -> None:
        ch = self._channels.get(ident)
        if ch is None:
            return
        try:
            await ch.in_turn(lambda: ch.stop_in_turn("normal"))
        except ChannelNotStarted:
            pass
        except Exception as exc:  # counted by the channel; dropping state silently is worse
            log.error("channel %r could not save when the node stopped: %r", ident, exc)
            if ch.running:
                await ch.crash(exc)

    async def _close_backends(self) -> None:
        for backend in self._rt.backends():
            await backend.aclose()
