"""In-process backends: `MemoryRegistry` and `MemoryStore`."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Hashable, Sequence

from .._abc import Claim, ClaimKind, Ident, NameTaken, Record, Registry, Store, Write
from .._errors import StaleToken


class TokenClock:
    """Fencing tokens derived from the wall clock in nanoseconds, strictly increasing.

    Deriving them from the clock makes a restarted process, or another registry instance,
    outrank every token handed out before it (as long as the clock does not step back).
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last


class MemoryRegistry(Registry):
    """A registry for one process, with real lease expiry.

    A claim not renewed within its lease is free again; renewing it then fails.

    A million claims must fit in little memory, so claims share what they can: every claim
    gets the registry's current token until a name is given up (released, or taken over
    after it expired), which alone could let a name come back with a token it held before;
    and a deadline is rounded up to the millisecond and shared by every claim that has it.
    Tokens for a name still strictly increase: the token advances before a name is claimed
    again.
    """

    def __init__(self) -> None:
        self._claims: dict[ClaimKind, dict[Ident, Claim]] = {"channel": {}, "actor": {}}
        self._tokens = TokenClock()
        self._token: int | None = None  # None: a name was given up, take the next token
        self._deadline = 0.0

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        now = time.monotonic()
        for kind, ident in names:
            held = self._claims[kind].get(ident)
            if held is not None:
                if held.expires > now:
                    raise NameTaken(kind, ident, held.holder)
                self._token = None  # an expired name taken over
        token = self._token
        if token is None:
            token = self._token = self._tokens.next()
        expires = self._shared_deadline(now + lease)
        claims = [Claim(kind, ident, holder, token, lease, expires) for kind, ident in names]
        for claim in claims:
            self._claims[claim.kind][claim.ident] = claim
        return claims

    def _shared_deadline(self, when: float) -> float:
        """`when` rounded up to the millisecond, as the float object the last claim with
        that deadline holds (24 bytes a claim otherwise)."""
        when = math.ceil(when * 1000.0) / 1000.0
        if when != self._deadline:
            self._deadline = when
        return self._deadline

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        now = time.monotonic()
        tables = self._claims
        deadlines: dict[float, float] = {}  # by lease: one deadline for the whole call
        renewed: list[bool] = []
        for claim in claims:
            held = tables[claim.kind].get(claim.ident)
            if held is None or held.token != claim.token or held.expires <= now:
                renewed.append(False)
                continue
            deadline = deadlines.get(held.lease)
            if deadline is None:
                deadline = deadlines[held.lease] = self._shared_deadline(now + held.lease)
            held.expires = deadline
            renewed.append(True)
        return renewed

    async def release(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            table = self._claims[claim.kind]
            held = table.get(claim.ident)
            if held is not None and held.token == claim.token:
                del table[claim.ident]
                self._token = None

    async def holder(self, kind: ClaimKind, ident: Ident) -> Hashable | None:
        held = self._claims[kind].get(ident)
        if held is None or held.expires <= time.monotonic():
            return None
        return held.holder


class MemoryStore(Store):
    """A store in a dict; for tests and throwaway nodes."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}

    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        records = self._records
        return {key: records[key] for key in keys if key in records}

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        return [self._write_batch(batch) for batch in batches]

    def _write_batch(self, batch: Sequence[Write]) -> BaseException | None:
        for w in batch:
            old = self._records.get(w.key)
            if old is not None and old.token > w.token:
                return StaleToken(
                    f"write of {w.key!r} with fencing token {w.token} refused: "
                    f"the store holds token {old.token}"
                )
        for w in batch:
            self._records[w.key] = Record(w.data, w.version, w.token)
        return None

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        for key in sorted(k for k in self._records if k.startswith(prefix)):
            yield key, self._records[key]
