"""A node's dealings with its registries: claims, batched renewals and tracked releases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

from ._abc import Claim, ClaimKind, Ident, NameTaken, Registry
from ._errors import (
    ActorAlreadyLocked,
    ChannelAlreadyStarted,
    LeaseLost,
    RegistryUnavailable,
    WesError,
)

if TYPE_CHECKING:
    from ._channel import Channel
    from ._types import Services

log = logging.getLogger("wes")

RENEW_WHEN_LEFT = 0.5  # renew a claim once half its lease or less is left
SWEEPS_PER_LEASE = 6  # sweeps per (shortest) lease: two or three tries before a lease ends
# Channels per registry call, and channels looked at between two returns to the event loop:
# the sweep must not delay timers and commands by more than a millisecond or so.
RENEW_CHUNK = 1000
SCAN_CHUNK = 10000


class Leases:
    """Claims names for a node's channels and actors, renews them in batches, and releases
    them so that a restart of the same channel can wait for the release to finish."""

    def __init__(
        self,
        runtime: Services,
        registry_of: Callable[[Claim], Registry],
        channels: Mapping[Ident, Channel],
        shortest_lease: Callable[[], float],
    ) -> None:
        self._runtime = runtime
        self._registry_of = registry_of
        self._channels = channels  # the node's running channels, kept up to date by it
        self._shortest_lease = shortest_lease
        self._releases: set[asyncio.Task[None]] = set()

    async def claim(
        self,
        names: list[tuple[ClaimKind, Ident]],
        holder: Hashable,
        registry: Registry,
        lease: float,
        *,
        actor_of: Mapping[Ident, Ident] | None = None,
    ) -> list[Claim]:
        """Claim all names or none; a taken name is `ChannelAlreadyStarted` or
        `ActorAlreadyLocked`, a failing registry `RegistryUnavailable`. `actor_of` maps an
        actor claim's name (its scope and storage key) to the actor id, for messages."""
        try:
            return await registry.claim(names, holder, lease)
        except NameTaken as taken:
            if taken.kind == "channel" and taken.holder == self._runtime.address:
                # Not running here, yet held by this node: a claim whose answer never came
                # back (a registry timeout) or whose release failed. It frees itself.
                raise RegistryUnavailable(
                    f"channel {taken.ident!r} is held by an earlier claim of this node that "
                    f"failed midway; it is free again when that claim's lease runs out"
                ) from None
            if taken.kind == "channel":
                raise ChannelAlreadyStarted(
                    f"channel {taken.ident!r} is already running at {taken.holder!r}"
                ) from None
            actor = (actor_of or {}).get(taken.ident, taken.ident)
            raise ActorAlreadyLocked(
                f"actor {actor!r} is locked: its storage key {taken.ident[1]!r} is held by an "
                f"actor active in channel {taken.holder!r}"
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

    def start(self) -> None:
        """Start the renewal sweep; the node cancels it when it closes."""
        self._runtime.spawn(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._shortest_lease() / SWEEPS_PER_LEASE)
            await self.sweep()

    async def sweep(self) -> None:
        """Renew, in batches, the claims of every channel with half its lease or less left,
        and stop (unsaved) every channel whose lease ran out.

        One pass over the node's channels every few seconds costs far less than a timer per
        channel, and gives the registry few large calls instead of many small ones.
        """
        now = self._runtime.now()
        due: list[Channel] = []
        for i, ch in enumerate(list(self._channels.values())):
            if i % SCAN_CHUNK == SCAN_CHUNK - 1:
                await asyncio.sleep(0)
                now = self._runtime.now()
            if ch.renewing or not ch.running:
                continue
            if now >= ch.lease_until:
                ch.crash_later(
                    LeaseLost(f"channel {ch.id!r} could not renew its lease"), lease_lost=True
                )
            elif ch.lease_until - now <= ch.conf.lease * RENEW_WHEN_LEFT:
                ch.renewing = True
                due.append(ch)
        for start in range(0, len(due), RENEW_CHUNK):
            await self._renew(due[start : start + RENEW_CHUNK])
            await asyncio.sleep(0)  # between chunks, timers and commands get their turn

    async def _renew(self, channels: list[Channel]) -> None:
        channels = [ch for ch in channels if ch.running]
        registries = {self._registry_of(claim) for ch in channels for claim in ch.claims()}
        if len(registries) == 1:
            await self._renew_in(registries.pop(), channels)
        else:
            await self._renew_across(channels)
        for ch in channels:
            ch.renewing = False  # those that stopped meanwhile

    async def _renew_in(self, registry: Registry, channels: list[Channel]) -> None:
        """The common case: every claim of these channels lives in one registry."""
        sent_at = self._runtime.now()
        claims: list[Claim] = []
        counts: list[int] = []
        for ch in channels:
            mine = ch.claims()
            claims += mine
            counts.append(len(mine))
        try:
            results = await registry.renew(claims)
        except Exception as exc:
            log.warning("lease renewal failed: %r", exc)
            for ch in channels:
                ch.renew_failed()
            return
        i = 0
        for ch, n in zip(channels, counts, strict=True):
            ch.renewed(all(results[i : i + n]), sent_at)
            i += n

    async def _renew_across(self, channels: list[Channel]) -> None:
        """Channels whose claims live in several registries (per-type registries)."""
        sent_at = self._runtime.now()
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
        answers: dict[Channel, list[bool | None]] = {}
        for ch, claim in zip(owners, claims, strict=True):
            answers.setdefault(ch, []).append(verdict[id(claim)])
        # Whatever the order of a channel's claims: one lost claim loses the channel; else
        # one unanswered leaves it serving until its deadline (the next sweep retries).
        for ch, got in answers.items():
            if False in got:
                ch.renewed(False, sent_at)
            elif None in got:
                ch.renew_failed()
            else:
                ch.renewed(True, sent_at)
