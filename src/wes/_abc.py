"""The pluggable building blocks: registry, store, stats and codec interfaces.

Every method a backend must provide is abstract, so a backend missing one fails when it is
constructed, not when the method is first needed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Hashable, Sequence
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
