"""A store and a registry that pass every call to a real one: a test subclasses them and
overrides the calls it watches or breaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable, Sequence

from wes.abc import Claim, ClaimKind, Ident, Record, Registry, Store, Write


class DelegatingStore(Store):
    """Passes every call to `inner`."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        return await self.inner.read(keys)

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        return await self.inner.write(batches)

    def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        return self.inner.scan(prefix)

    async def aclose(self) -> None:
        await self.inner.aclose()


class DelegatingRegistry(Registry):
    """Passes every call to `inner`."""

    def __init__(self, inner: Registry) -> None:
        self.inner = inner

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        return await self.inner.claim(names, holder, lease)

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        return await self.inner.renew(claims)

    async def release(self, claims: Sequence[Claim]) -> None:
        await self.inner.release(claims)

    async def holder(self, kind: ClaimKind, ident: Ident) -> Hashable | None:
        return await self.inner.holder(kind, ident)

    async def aclose(self) -> None:
        await self.inner.aclose()
