"""A node's dealings with its registries: claims, batched renewals and tracked releases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

from ._abc import Claim, ClaimKind, Ident, NameTaken, Registry
from ._errors import ActorAlreadyLocked, ChannelAlreadyStarted, RegistryUnavailable, WesError

if TYPE_CHECKING:
    from ._channel import Channel
    from ._node import Node

log = logging.getLogger("wes")


class Leases:
    """Claims names for a node's channels and actors, renews them in batches, and releases
    them so that a restart of the same channel can wait for the release to finish."""

    def __init__(self, node: Node, registry_of: Callable[[Claim], Registry]) -> None:
        self._node = node
        self._registry_of = registry_of
        self._releases: set[asyncio.Task[None]] = set()
        self._renewals: list[Channel] = []

    async def claim(
        self,
        names: list[tuple[ClaimKind, Ident]],
        holder: Hashable,
        registry: Registry,
        lease: float,
    ) -> list[Claim]:
        """Claim all names or none; a taken name is `ChannelAlreadyStarted` or
        `ActorAlreadyLocked`, a failing registry `RegistryUnavailable`."""
        try:
            return await registry.claim(names, holder, lease)
        except NameTaken as taken:
            if taken.kind == "channel":
                raise ChannelAlreadyStarted(
                    f"channel {taken.ident!r} is already running at {taken.holder!r}"
                ) from None
            raise ActorAlreadyLocked(
                f"actor {taken.ident!r} is active in channel {taken.holder!r}"
            ) from None
        except WesError:
            raise
        except Exception as exc:
            raise RegistryUnavailable(f"registry claim failed: {exc!r}") from exc

    async def release(self, claims: Sequence[Claim]) -> None:
        """Release claims in their registries; a failure is logged (they expire anyway)."""
        task = asyncio.get_running_loop().create_task(self._release(claims))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
        await asyncio.shield(task)

    async def settle(self) -> None:
        """Wait until every release under way has finished."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)

    async def _release(self, claims: Sequence[Claim]) -> None:
        for registry, group in self._by_registry(claims).items():
            try:
                await registry.release(group)
            except Exception as exc:  # the claims expire by themselves
                log.warning("could not release %d claims: %r", len(group), exc)

    def _by_registry(self, claims: Sequence[Claim]) -> dict[Registry, list[Claim]]:
        groups: dict[Registry, list[Claim]] = {}
        for claim in claims:
            groups.setdefault(self._registry_of(claim), []).append(claim)
        return groups

    def renew_later(self, ch: Channel) -> None:
        """Queue a channel's claims for the next batched renewal (one call per registry for
        every channel that came due in the same loop iteration)."""
        if not self._renewals:
            asyncio.get_running_loop().call_soon(self._flush_renewals)
        self._renewals.append(ch)

    def _flush_renewals(self) -> None:
        channels, self._renewals = self._renewals, []
        if self._node.is_running and channels:
            self._node.spawn(self._renew(channels))

    async def _renew(self, channels: list[Channel]) -> None:
        sent_at = self._node.now()
        owners: list[Channel] = []
        claims: list[Claim] = []
        for ch in channels:
            if ch.running:
                for claim in ch.claims():
                    owners.append(ch)
                    claims.append(claim)
        # Per claim: True renewed, False lost, None the registry did not answer.
        verdict: dict[int, bool | None] = {}
        for registry, group in self._by_registry(claims).items():
            try:
                results: list[bool | None] = list(await registry.renew(group))
            except Exception as exc:
                log.warning("lease renewal failed: %r", exc)
                results = [None] * len(group)
            verdict.update(zip(map(id, group), results, strict=True))
        outcome: dict[Channel, bool | None] = {}
        for ch, claim in zip(owners, claims, strict=True):
            if outcome.get(ch, True) is not False:  # one lost claim loses the channel
                outcome[ch] = verdict[id(claim)] if outcome.get(ch, True) else None
        for ch, renewed in outcome.items():
            if renewed is None:
                ch.renew_failed(self._node.now())
            else:
                ch.renewed(renewed, sent_at)
