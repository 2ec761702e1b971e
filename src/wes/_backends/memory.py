"""In-process backends: `MemoryRegistry` and `MemoryStore`."""

from __future__ import annotations

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
    """

    def __init__(self) -> None:
        self._claims: dict[ClaimKind, dict[Ident, Claim]] = {"channel": {}, "actor": {}}
        self._tokens = TokenClock()

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        now = time.monotonic()
        for kind, ident in names:
            held = self._claims[kind].get(ident)
            if held is not None and held.expires > now:
                raise NameTaken(kind, ident, held.holder)
        expires = now + lease
        claims = [
            Claim(kind, ident, holder, self._tokens.next(), lease, expires) for kind, ident in names
        ]
        for claim in claims:
            self._claims[claim.kind][claim.ident] = claim
        return claims

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        now = time.monotonic()
        return [self._renew(claim, now) for claim in claims]

    def _renew(self, claim: Claim, now: float) -> bool:
        held = self._claims[claim.kind].get(claim.ident)
        if held is None or held.token != claim.token or held.expires <= now:
            return False
        held.expires = now + held.lease
        return True

    async def release(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            table = self._claims[claim.kind]
            held = table.get(claim.ident)
            if held is not None and held.token == claim.token:
                del table[claim.ident]

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
