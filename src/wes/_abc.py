"""The pluggable building blocks: registry, store, stats, codec and transport interfaces.

Every method a backend must provide is abstract, so a backend missing one fails when it is
constructed, not when the method is first needed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

Ident = tuple[str, str | int]
"""A channel or actor id: `(type, name)`."""

ClaimKind = Literal["channel", "actor"]


@dataclass(slots=True, eq=False)
class Claim:
    """A name held in a registry.

    `holder` is the node address for a channel claim and the channel id for an actor claim.
    `token` is the fencing token: it strictly increases for a name over time. `expires` is the
    registry's own deadline (its clock); only the registry sets it. An in-process registry may
    hand the caller the very object it keeps, so callers must treat a claim as read-only.
    """

    kind: ClaimKind
    ident: Ident
    holder: Hashable
    token: int
    lease: float
    expires: float


class NameTaken(Exception):
    """Raised by `Registry.claim` when a name is held by someone else; nothing was claimed."""

    def __init__(self, kind: ClaimKind, ident: Ident, holder: Hashable) -> None:
        super().__init__(f"{kind} {ident!r} is held by {holder!r}")
        self.kind = kind
        self.ident = ident
        self.holder = holder


class AsyncResource(ABC):  # noqa: B024 - abstract only through its subclasses
    """A backend that closes with an idempotent `aclose()` and works as `async with`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing
        """Release what the backend holds; closing twice silently succeeds."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Registry(AsyncResource):
    """Claims, renews and releases names with leases and fencing tokens."""

    @abstractmethod
    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        """Claim every name for `holder` for `lease` seconds, all or nothing.

        A name already held by `holder` itself is also `NameTaken`: a claim is never shared.
        Raises `NameTaken` naming the first conflict; then nothing is claimed.
        """

    @abstractmethod
    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        """Extend each claim by its lease if it is still held under the same token.

        Never re-acquires a claim that expired, even if nobody took it since. Returns, per
        claim, whether it was renewed.
        """

    @abstractmethod
    async def release(self, claims: Sequence[Claim]) -> None:
        """Free each claim that is still held under its token; others are left alone."""

    @abstractmethod
    async def holder(self, kind: ClaimKind, ident: Ident) -> Hashable | None:
        """Who holds the name now (an expired claim is held by nobody)."""


class Record(NamedTuple):
    """A stored actor state: encoded bytes, the actor class version that wrote them, and the
    fencing token of the write. (A named tuple: saves create many, and tuples are cheap.)"""

    data: bytes
    version: int
    token: int


class Write(NamedTuple):
    """One key of an atomic write."""

    key: str
    data: bytes
    version: int
    token: int


class Store(AsyncResource):
    """Reads many keys; writes many keys atomically, fenced by tokens."""

    @abstractmethod
    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        """The records of the keys that exist; missing keys are absent from the result."""

    @abstractmethod
    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        """Write each batch atomically, grouping all of them into one commit where possible.

        A batch holding a key whose stored token is newer than the batch's token for it is
        refused whole: its slot in the result holds a `wes.StaleToken` and it changes nothing.
        The other batches are unaffected. A failure of the store itself raises
        `wes.StoreUnavailable` and then no batch was written.
        """

    @abstractmethod
    def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        """Every stored key starting with `prefix`, in key order, with its record."""


class Stats(ABC):
    """Receives every event of every channel. Called synchronously on the event loop: it must
    not block.

    `kind` and `name` are the pair `MemoryStats.counts()` keys by; `ident` is the channel's
    id unless said otherwise. The events:

    - `("start", "channel")`: a channel started; `("start", "actor")`: the actor `ident`
      joined a channel.
    - `("command", NAME)`: a running channel received the command, handled or raising.
    - `("read", NAME)`: the actor `ident` answered the read or raised.
    - `("dead_letter", NAME)`: the command reached a channel without actors.
    - `("timer", NAME)`: an actor's timer fired.
    - `("save", "ok")`, `("save", "error")`: a save of the channel's actors worked or failed.
    - `("stop", REASON)`: the channel stopped, its claims released; `REASON` is `"normal"`,
      `"idle"`, `"lease_lost"`, or the type name of the exception that killed it.

    `seconds` is the handling time of commands, reads and saves when `timed` is true;
    `error` the exception of a stop or failed save.
    """

    timed: bool = False
    """Set to true to receive `seconds`; measuring costs a little on every command."""

    @abstractmethod
    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record one event about the channel or actor `ident`."""


class Codec(ABC):
    """Turns actor states into bytes and back."""

    @abstractmethod
    def encode(self, state: dict[str, Any]) -> bytes:
        """Encode a state; raise any exception if it cannot be encoded."""

    @abstractmethod
    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode bytes that `encode` produced."""


Reply = Callable[[bytes], Awaitable[None]]
"""Answers one request: awaited once with the answer's bytes."""

OnRequest = Callable[[bytes, Reply], None]
"""Called on the event loop for each request a node receives. It must neither block nor
await: it hands the work to a task, which later awaits `reply` once."""

OnAnnounce = Callable[[bytes], None]
"""Called on the event loop for each announcement to the cluster (a node's own included)."""


class Transport(AsyncResource):
    """Carries calls between the nodes of one cluster: request-reply to one node by its
    address, and announcements to every node. It moves bytes; what they mean (the versioned
    envelope) is the node's business, so every transport carries calls the same way.

    One transport may serve several nodes of a process (each listens under its address).
    """

    @property
    @abstractmethod
    def max_payload(self) -> int:
        """The largest message, in bytes, that a request or an answer may be."""

    @abstractmethod
    async def listen(self, address: str, on_request: OnRequest, on_announce: OnAnnounce) -> None:
        """Start taking the requests sent to `address`, and the cluster's announcements.

        Raises `wes.NodeUnreachable` if the transport cannot be reached.
        """

    @abstractmethod
    async def unlisten(self, address: str) -> None:
        """Stop taking requests for `address` (callers then get `wes.NodeUnreachable`);
        its announcements and its own requests still work until `leave`."""

    @abstractmethod
    async def leave(self, address: str) -> None:
        """Stop everything for `address`; the last node to leave closes the connection."""

    @abstractmethod
    async def request(self, address: str, data: bytes, within: float) -> bytes:
        """Send `data` to the node listening at `address` and wait up to `within` seconds
        for its answer.

        Raises `wes.NodeUnreachable` when the request certainly reached no node (nobody
        listens at `address`, or the transport is not connected), and `wes.OutcomeUnknown`
        when it was sent and no answer came in time or the connection broke meanwhile.
        """

    @abstractmethod
    async def announce(self, data: bytes) -> None:
        """Send `data` to every node of the cluster, this one included; an announcement
        that cannot be sent is dropped (announcements are refreshed, never relied on)."""
