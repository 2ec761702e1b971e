"""A node's dealings with its registries: claims, batched renewals and tracked releases."""

from __future__ import annotations

import asyncio
import logging
import math
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
# A sweep looks at its channels in slices spread evenly over its period, one slice every
# `SLICE_EVERY` seconds at most, so that renewing a million channels never holds up timers
# and commands for more than a millisecond or so at a time (a million channels with a 30 s
# lease: slices of 500, a third of them due, ~1 ms each here; slices of 2,000 took 4.5 ms
# at the median on a loaded machine); a slice has at least `MIN_SLICE` channels, so that a
# small node sweeps in one go.
SLICE_EVERY = 0.0025
MIN_SLICE = 500
RENEW_CHUNK = 1000  # channels per registry call


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
        # The channels in the order the sweep walks them: a list it can walk in slices, where
        # the node's map of channels would have to be copied whole (a million objects touched
        # at once, tens of milliseconds) for each sweep. A claim taken enters as the claim (its
        # channel does not exist yet); the first pass that finds its channel running puts the
        # channel in its place, so that later passes look at the channel itself instead of
        # looking it up by id (a tuple hashed, and four objects touched, per channel per pass).
        self._ring: list[Claim | Channel] = []
        # Channels whose renewal is in flight: a set here rather than a flag in a slot of
        # every channel (16 bytes each of a million idle channels).
        self._renewing: set[Channel] = set()
        self._limbo: list[Claim] = []  # claims whose channel was not running at their pass

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
            claims = await registry.claim(names, holder, lease)
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
        self._ring += [claim for claim in claims if claim.kind == "channel"]
        return claims

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
            period = self._shortest_lease() / SWEEPS_PER_LEASE
            start = self._runtime.now()
            # Claims taken from now on (appended past `end`) wait for the next pass; claims
            # whose channel was not running at the last pass (still starting, or never
            # started) get one more look.
            end = len(self._ring)
            limbo, self._limbo = self._limbo, []
            channels, due = self._sift(limbo, None)
            self._ring += channels
            await self._look(due)
            await self._walk(self._ring, end, start, period)
            self._mend()
            await asyncio.sleep(max(0.0, start + period - self._runtime.now()))

    async def sweep(self) -> None:
        """Renew, at once, the claims of every channel with half its lease or less left, and
        stop (unsaved) every channel whose lease ran out. The node's own sweep does this in
        slices spread over its period."""
        running: list[Claim | Channel] = [*self._channels.values()]
        await self._walk(running, len(running), self._runtime.now(), 0.0, keep=False)

    async def _walk(
        self,
        ring: list[Claim | Channel],
        total: int,
        start: float,
        period: float,
        *,
        keep: bool = True,
    ) -> None:
        """Look at the channels of the first `total` entries of `ring` in slices, evenly
        spread over `period` seconds. With `keep`, the ring is compacted in place as it
        goes: the channels still running stay, in their order, the others leave (a second
        list of a million channels would cost 8 bytes a channel while it is built).

        A walk kept from its turns (a loop busy with other work, a process not scheduled)
        catches up with its schedule one slice per turn of the loop, never in one go: the
        renewals of a million channels in a burst would hold up every timer and command
        for as long as the walk was behind, and leases have half their length to spare."""
        size = max(MIN_SLICE, math.ceil(total * SLICE_EVERY / period) if period else 0)
        missing = self._limbo if keep else None
        done = kept = 0
        while done < total:
            await asyncio.sleep(max(0.0, start + period * done / total - self._runtime.now()))
            upto = min(total, done + size)
            channels, due = self._sift(ring[done:upto], missing)
            if keep:
                ring[kept : kept + len(channels)] = channels  # over entries already walked
                kept += len(channels)
            await self._look(due)
            done = upto
        if keep:
            del ring[kept:total]  # claims appended meanwhile move down, in order

    async def _look(self, due: list[Channel]) -> None:
        """Renew the channels due for it, a registry call per `RENEW_CHUNK` channels."""
        for first in range(0, len(due), RENEW_CHUNK):
            await self._renew(due[first : first + RENEW_CHUNK])

    def _sift(
        self, part: Sequence[Claim | Channel], missing: list[Claim] | None
    ) -> tuple[list[Channel], list[Channel]]:
        """The running channels of `part`, and those of them due for a renewal (now marked
        as renewing); stops those whose lease ran out. A claim in `part` stands for the
        channel that holds it: one whose channel is not running goes to `missing` (it may be
        starting still), one replaced by a newer claim of its channel drops out, as does a
        stopped channel.

        This runs for every channel of the node several times a lease, so it is one loop
        with the lease threshold computed once per channel type it meets."""
        get = self._channels.get
        renewing = self._renewing
        now = self._runtime.now()
        running: list[Channel] = []
        due: list[Channel] = []
        conf = None
        soon = now
        for entry in part:
            if isinstance(entry, Claim):
                ch = get(entry.ident)
                if ch is None:
                    if missing is not None:
                        missing.append(entry)
                    continue
                if ch.claim is not entry:
                    continue
            elif entry.claim is None:  # stopped
                continue
            else:
                ch = entry
            running.append(ch)
            if ch.conf is not conf:
                conf = ch.conf
                soon = now + conf.lease * RENEW_WHEN_LEFT
            until = ch.lease_until
            if until > soon or ch in renewing:  # not due yet, or its renewal is in flight
                continue
            if now >= until:
                ch.crash_later(
                    LeaseLost(f"channel {ch.id!r} could not renew its lease"), lease_lost=True
                )
            else:
                renewing.add(ch)
                due.append(ch)
        return running, due

    def _mend(self) -> None:
        """Put back in the ring a running channel the walk missed (its claim was still
        starting when its slice came): fewer entries than channels says one is missing. A
        claim waiting in limbo for its next look counts as in the ring (it goes back there
        then), so that its channel does not enter twice."""
        limbo = self._limbo
        if len(self._ring) + len(limbo) < len(self._channels):
            ring = {id(entry) for entry in self._ring}
            ring.update(id(claim) for claim in limbo)
            self._ring += [
                ch
                for ch in self._channels.values()
                if ch.claim is not None and id(ch) not in ring and id(ch.claim) not in ring
            ]

    async def _renew(self, due: list[Channel]) -> None:
        try:
            await self._renew_running([ch for ch in due if ch.claim is not None])
        finally:
            self._renewing.difference_update(due)  # also those that stopped meanwhile

    async def _renew_running(self, channels: list[Channel]) -> None:
        """Renew these running channels' claims and their actors'. This runs for a million
        channels every half lease, so `ch.claims()` and the registry of each claim are
        inlined: the registries are asked once per channel type and actor scope met."""
        claims: list[Claim] = []
        counts: list[int] = []  # claims per channel, as they were sent
        registries: set[Registry] = set()
        seen: set[tuple[ClaimKind, str]] = set()
        registry_of = self._registry_of
        conf = None
        scope = None
        for ch in channels:
            claim = ch.claim
            assert claim is not None  # running, checked above
            claims.append(claim)
            if ch.conf is not conf:
                conf = ch.conf
                if ("channel", claim.ident[0]) not in seen:
                    seen.add(("channel", claim.ident[0]))
                    registries.add(registry_of(claim))
            actors = ch.actors
            counts.append(1 + len(actors))
            for actor in actors:
                claim = actor._wes_claim
                claims.append(claim)
                if claim.ident[0] != scope:
                    scope = claim.ident[0]
                    if ("actor", scope) not in seen:
                        seen.add(("actor", scope))
                        registries.add(registry_of(claim))
        if len(registries) == 1:
            await self._renew_in(registries.pop(), channels, claims, counts)
        else:
            await self._renew_across(channels)

    async def _renew_in(
        self, registry: Registry, channels: list[Channel], claims: list[Claim], counts: list[int]
    ) -> None:
        """The common case: every claim of these channels lives in one registry."""
        sent_at = self._runtime.now()
        try:
            results = await registry.renew(claims)
        except Exception as exc:  # they serve on until their deadlines; the next sweep retries
            log.warning("lease renewal failed: %r", exc)
            return
        untils = _Untils(sent_at)
        if all(results):  # the usual answer: one deadline per channel type, set in one loop
            conf = None
            until = sent_at
            for ch in channels:
                if ch.claim is not None:  # still running (`ch.renewed(True, ...)`, inline)
                    if ch.conf is not conf:
                        conf = ch.conf
                        until = untils.of(ch)
                    ch.lease_until = until
            return
        i = 0
        for ch, n in zip(channels, counts, strict=True):
            ch.renewed(all(results[i : i + n]), untils.of(ch))
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
        untils = _Untils(sent_at)
        for ch, got in answers.items():
            if False in got:
                ch.renewed(False, sent_at)
            elif None not in got:
                ch.renewed(True, untils.of(ch))


class _Untils:
    """The new lease deadlines of one renewal, one float per lease length: a million
    channels renewed in slices then share a few thousand deadline objects instead of each
    holding its own (24 bytes each)."""

    __slots__ = ("_by_lease", "_sent_at")

    def __init__(self, sent_at: float) -> None:
        self._sent_at = sent_at
        self._by_lease: dict[float, float] = {}

    def of(self, ch: Channel) -> float:
        lease = ch.conf.lease
        until = self._by_lease.get(lease)
        if until is None:
            until = self._by_lease[lease] = self._sent_at + lease
        return until
