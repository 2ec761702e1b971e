"""The renewal sweep: channels renewed in slices spread over its period, a ring of claims that
forgets stopped channels and mends what it missed, and renewed deadlines shared per call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import wes
from tests.support.claims import actor_claim
from tests.support.counters import Counter
from tests.support.delegating import DelegatingRegistry
from tests.support.nodes import node_of
from tests.support.waiting import wait_until
from wes._leases import MIN_SLICE
from wes.abc import Claim

LEASE = 0.3  # seconds: a sweep every 50 ms


class Recording(DelegatingRegistry):
    """Delegates to a memory registry and records how many claims each renewal carried."""

    def __init__(self) -> None:
        super().__init__(wes.MemoryRegistry())
        self.renewals: list[int] = []

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        self.renewals.append(len(claims))
        return await self.inner.renew(claims)


def make_node(registry: wes.abc.Registry, stats: wes.MemoryStats, lease: float = LEASE) -> wes.Node:
    return node_of({"counter": Counter}, wes.MemoryStore(), registry, stats, lease=lease)


async def start(node: wes.Node, n: int) -> None:
    for i in range(n):
        await node.create_channel(("session", i), wes.create(("counter", i)))


async def test_many_channels_are_renewed_in_slices_not_at_once() -> None:
    """Three slices' worth of channels keep their leases, renewed by calls of at most one
    slice each (a channel's own claim and its actor's), never by one call for all."""
    registry = Recording()
    stats = wes.MemoryStats()
    n = 3 * MIN_SLICE
    async with make_node(registry, stats) as node:
        await start(node, n)
        await wait_until(lambda: sum(registry.renewals) >= 4 * n)  # each claim twice
        assert node.live_channels == n
        assert max(registry.renewals) <= 2 * MIN_SLICE
        assert ("stop", "lease_lost") not in stats.counts()


async def test_a_channel_the_ring_missed_is_mended_back_and_renewed() -> None:
    """A running channel whose claim is not in the sweep's ring (it was still starting when
    its slice came) is put back at the end of a pass, and keeps its lease."""
    registry = Recording()
    stats = wes.MemoryStats()
    async with make_node(registry, stats) as node:
        await start(node, 1)
        node._rt.leases._ring.clear()
        await asyncio.sleep(4 * LEASE)
        assert await registry.holder("channel", ("session", 0)) == node.address
        assert await registry.holder("actor", actor_claim(("counter", 0))) == ("session", 0)
        assert ("stop", "lease_lost") not in stats.counts()


async def test_a_channel_still_starting_when_walked_keeps_its_lease() -> None:
    """A claim whose channel is not running yet when the walk reaches it (the channel is
    still starting) gets another look at the next pass, and the channel keeps its lease."""
    registry = Recording()
    stats = wes.MemoryStats()
    async with make_node(registry, stats) as node:
        await start(node, 1)
        leases = node._rt.leases
        ch = node._rt.channels.pop(("session", 0))  # as if still starting
        await wait_until(lambda: bool(leases._limbo))
        node._rt.channels[ch.id] = ch  # now running
        await asyncio.sleep(4 * LEASE)
        assert await registry.holder("channel", ("session", 0)) == node.address
        assert ("stop", "lease_lost") not in stats.counts()


async def test_a_channel_back_from_limbo_enters_the_ring_once() -> None:
    """A channel whose claim waited in limbo (its channel was still starting) and that the
    end of that pass finds running is not put in the ring twice, by the mend and by the
    next look at limbo: the ring holds one entry per channel."""
    async with make_node(wes.MemoryRegistry(), wes.MemoryStats()) as node:
        await start(node, 2 * MIN_SLICE)  # two slices a pass: the pass ends after it is back
        leases = node._rt.leases
        ch = node._rt.channels.pop(("session", 0))  # as if still starting
        await wait_until(lambda: bool(leases._limbo))
        node._rt.channels[ch.id] = ch  # running again before the pass ends
        await asyncio.sleep(4 * LEASE / 6)  # a few passes
        ours = [e for e in leases._ring if e is ch or e is ch.claim]
        assert len(ours) == 1
        assert len(leases._ring) + len(leases._limbo) == 2 * MIN_SLICE


async def test_a_walk_behind_its_schedule_catches_up_a_slice_per_loop_turn() -> None:
    """A walk that starts long behind its schedule (a loop held up, a process not
    scheduled) renews its slices one loop turn apart, never all in one callback, so that
    the timers and commands due meanwhile run between them."""
    registry = Recording()
    lease = 30.0  # the node's own sweep stays out of the way: its next pass is 5 s off
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    async with make_node(registry, wes.MemoryStats(), lease) as node:
        await start(node, 3 * MIN_SLICE)
        rt = node._rt
        for ch in rt.channels.values():
            ch.lease_until -= lease * 0.6  # due: less than half the lease left
        seen: list[int] = []
        renew = registry.renew

        async def renew_noting_turn(claims: Sequence[Claim]) -> list[bool]:
            seen.append(turns)
            return await renew(claims)

        registry.renew = renew_noting_turn  # type: ignore[method-assign]
        counter = asyncio.create_task(count_turns())
        try:
            ring = rt.leases._ring
            await rt.leases._walk(ring, len(ring), rt.now() - 100.0, 1.0)
        finally:
            counter.cancel()
            await asyncio.gather(counter, return_exceptions=True)
        assert len(seen) == 3
        assert len(set(seen)) == 3, seen


async def test_a_stopped_channel_drops_out_of_the_ring() -> None:
    """The ring keeps a stopped channel only until its next pass walks it."""
    stats = wes.MemoryStats()
    async with make_node(wes.MemoryRegistry(), stats) as node:
        await start(node, 2)
        await node.stop_channel(("session", 0))
        leases = node._rt.leases
        await wait_until(lambda: len(leases._ring) == 1)
        [entry] = leases._ring
        assert entry is node._rt.channels[("session", 1)]


async def test_channels_renewed_together_share_one_deadline() -> None:
    """Channels renewed by one call hold one lease deadline object between them, not one
    float each: memory that a million renewed channels would otherwise spend."""
    stats = wes.MemoryStats()
    lease = 30.0  # the node's own sweep stays out of the way: its next pass is 5 s off
    async with make_node(wes.MemoryRegistry(), stats, lease) as node:
        await start(node, 3)
        channels = list(node._rt.channels.values())
        for i, ch in enumerate(channels):  # due (less than half the lease left), apart
            ch.lease_until = ch.lease_until - lease * 0.6 - i / 1e6
        assert len({id(ch.lease_until) for ch in channels}) == 3
        await node._rt.leases.sweep()
        assert len({id(ch.lease_until) for ch in channels}) == 1
        assert ("stop", "lease_lost") not in stats.counts()


class Refusing(DelegatingRegistry):
    """Delegates to a memory registry, but answers a renewal of one actor's claim as not held."""

    def __init__(self, refused: str) -> None:
        super().__init__(wes.MemoryRegistry())
        self.refused = refused

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        results = await self.inner.renew(claims)
        refused = self.refused
        return [ok and c.ident[1] != refused for c, ok in zip(claims, results, strict=True)]


async def test_a_renewal_refused_for_one_channel_stops_it_and_renews_the_others() -> None:
    """When one registry call renews many channels and one of its claims comes back not
    held, that channel stops unsaved (lease lost) and the others get their new deadline."""
    lease = 30.0  # the node's own sweep stays out of the way: its next pass is 5 s off
    registry = Refusing(refused="counter/1")  # the actor claim of ("counter", 1)
    stats = wes.MemoryStats()
    async with make_node(registry, stats, lease) as node:
        await start(node, 3)
        channels = dict(node._rt.channels)
        for ch in channels.values():
            ch.lease_until -= lease * 0.6  # due: less than half the lease left
        before = {ident: ch.lease_until for ident, ch in channels.items()}
        await node._rt.leases.sweep()
        await wait_until(lambda: stats.counts().get(("stop", "lease_lost")) == 1)
        assert set(node._rt.channels) == {("session", 0), ("session", 2)}
        for ident, ch in node._rt.channels.items():
            assert ch.lease_until > before[ident] + lease * 0.5


# --- what claims of the in-process registry share -----------------------------------------


async def test_memory_claims_share_a_token_and_a_deadline() -> None:
    """Claims taken while no name was given up share one token, and claims with the same
    deadline (to the millisecond) share one float: memory a million claims would spend."""
    registry = wes.MemoryRegistry()
    first = await registry.claim([("channel", ("c", 1)), ("actor", ("", "a/1"))], "n", 30.0)
    second = await registry.claim([("channel", ("c", 2))], "n", 30.0)
    claims = [*first, *second]
    assert len({claim.token for claim in claims}) == 1
    assert first[0].expires is first[1].expires
    assert all(await registry.renew(claims))
    assert len({id(claim.expires) for claim in claims}) == 1  # one renewal, one deadline


async def test_a_released_name_comes_back_with_a_greater_token() -> None:
    """Once a name is released, the next claim, of it or of any other name, takes a new
    token, so the name's tokens strictly increase."""
    registry = wes.MemoryRegistry()
    [old] = await registry.claim([("channel", ("c", 1))], "n", 30.0)
    await registry.release([old])
    [other] = await registry.claim([("channel", ("c", 2))], "n", 30.0)
    [again] = await registry.claim([("channel", ("c", 1))], "n", 30.0)
    assert again.token >= other.token > old.token
    assert await registry.renew([old]) == [False]


async def test_an_expired_name_taken_over_gets_a_greater_token() -> None:
    """A name whose claim expired, claimed again without a release, gets a token greater
    than the expired claim's, and the expired claim cannot be renewed."""
    registry = wes.MemoryRegistry()
    [old] = await registry.claim([("channel", ("c", 1))], "n", 0.01)
    await asyncio.sleep(0.03)
    [new] = await registry.claim([("channel", ("c", 1))], "m", 30.0)
    assert new.token > old.token
    assert await registry.renew([old]) == [False]
    assert await registry.holder("channel", ("c", 1)) == "m"


class Slow(DelegatingRegistry):
    """Renewals wait for `go`; counts the renewals sent."""

    def __init__(self) -> None:
        super().__init__(wes.MemoryRegistry())
        self.go = asyncio.Event()
        self.sent = 0

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        self.sent += 1
        await self.go.wait()
        return await self.inner.renew(claims)


async def test_a_channel_whose_renewal_is_in_flight_is_not_renewed_again_meanwhile() -> None:
    """Sweeps that find a channel's renewal still unanswered leave it alone; once the answer
    comes, the next sweeps renew it again."""
    registry = Slow()
    async with make_node(registry, wes.MemoryStats(), lease=3.0) as node:
        await start(node, 1)
        await wait_until(lambda: registry.sent == 1)
        await asyncio.sleep(1.0)  # two sweeps (every 0.5 s) while the first is unanswered
        assert registry.sent == 1
        assert node._rt.leases._renewing
        registry.go.set()
        await wait_until(lambda: not node._rt.leases._renewing)
        await wait_until(lambda: registry.sent >= 2)
        assert node.live_channels == 1


async def test_channels_started_together_share_their_time_floats_and_round_leases_down() -> None:
    """A lease deadline is never later than the claim request plus the lease (rounded down
    to the millisecond), and channels started in one millisecond share the float objects."""
    async with make_node(wes.MemoryRegistry(), wes.MemoryStats(), lease=30.0) as node:
        before = node._rt.now()
        await start(node, 50)
        after = node._rt.now()
        channels = list(node._channels.values())
        for ch in channels:
            assert before + 30.0 - 0.001 <= ch.lease_until <= after + 30.0
            assert ch.lease_until == round(ch.lease_until, 3)
        assert len({id(ch.lease_until) for ch in channels}) < len(channels)
        assert node._rt.stamp(1.0009) is node._rt.stamp(1.0001) == 1.0
