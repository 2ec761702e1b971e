"""Which nodes of the cluster are live, as a hint for placement, and rendezvous hashing.

Each node announces itself over the transport every `INTERVAL` seconds (and once at once
when it hears a node it did not know, so that a new node learns the others in
milliseconds); a peer unheard for `STALE_AFTER` intervals, or that said it is leaving, is
not live. Membership is kept by the transport rather than the registry: a node the
transport cannot reach can take no calls anyway, announcements cost the shared registry
nothing, and the `Registry` interface needs no listing that every backend would have to
grow. It is a hint only: the registry alone decides who runs a channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ._abc import Ident, Transport

log = logging.getLogger("wes")

INTERVAL = 1.0
STALE_AFTER = 3.5  # intervals


class Peers:
    """The live nodes as this node hears them."""

    def __init__(
        self,
        address: str,
        transport: Transport,
        now: Callable[[], float],
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
    ) -> None:
        self.address = address
        self._transport = transport
        self._now = now
        self._spawn = spawn  # the node's: tracked, cancelled and awaited on close
        self._seen: dict[str, float] = {}  # address -> when last heard (this node's clock)
        self._leaving = False

    def live(self) -> list[str]:
        """This node (unless it is leaving) and the peers heard from lately, sorted."""
        horizon = self._now() - INTERVAL * STALE_AFTER
        out = [address for address, seen in self._seen.items() if seen >= horizon]
        if not self._leaving:
            out.append(self.address)
        return sorted(out)

    def is_live(self, address: str, now: float) -> bool:
        """Whether `address` is this node or a peer heard from lately (it is `now`)."""
        if address == self.address:
            return True
        seen = self._seen.get(address)
        return seen is not None and seen >= now - INTERVAL * STALE_AFTER

    def forget(self, address: str) -> None:
        """A peer that could not take a call: not live until it is heard again."""
        self._seen.pop(address, None)

    def rank(self, ident: Ident) -> list[str]:
        """The live nodes in rendezvous order for `ident`: the first is its place, and if it
        cannot take it, the next; each node computes the same order from the same view."""
        import hashlib  # only hash placement needs it: `import wes` stays as quick

        key = json.dumps(ident, separators=(",", ":")).encode()

        def weight(address: str) -> bytes:
            return hashlib.blake2b(key + b"\0" + address.encode(), digest_size=8).digest()

        return sorted(self.live(), key=weight, reverse=True)

    # -- announcements --------------------------------------------------------------------

    def heard(self, data: bytes) -> None:
        """An announcement arrived (`OnAnnounce`); anything malformed is ignored."""
        try:
            body = json.loads(data)
            address, state = body["node"], body["state"]
        except (ValueError, TypeError, KeyError):
            log.debug("ignored a malformed announcement: %r", data[:200])
            return
        if not isinstance(address, str) or address == self.address:
            return
        if state == "leaving":
            self._seen.pop(address, None)
        elif state == "up":
            new = address not in self._seen
            self._seen[address] = self._now()
            if new and not self._leaving:
                # Tell the newcomer of us now rather than at our next tick.
                self._spawn(self.announce())

    async def announce(self) -> None:
        state = "leaving" if self._leaving else "up"
        body: dict[str, Any] = {"wes": 1, "node": self.address, "state": state}
        try:
            await self._transport.announce(json.dumps(body).encode())
        except Exception as exc:  # refreshed every interval; a lost one is harmless
            log.debug("announcement failed: %r", exc)

    async def run(self) -> None:
        """Announce this node every `INTERVAL` until cancelled."""
        while True:
            await self.announce()
            await asyncio.sleep(INTERVAL)

    async def leave(self) -> None:
        """Say this node is leaving: placement skips it from now on."""
        self._leaving = True
        await self.announce()
