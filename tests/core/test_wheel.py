"""The shared timer wheel: wakes sleepers at, never before, their deadlines."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import wes
from tests.support.counters import Counter
from wes._sweep import FAR_BUCKET
from wes._wheel import COARSE, HORIZON, RESOLUTION, Wheel


class Sleeper:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.wake_slot: list[Any] | None = None
        self.loop = loop
        self.woken: list[float] = []

    def wake(self, now: float) -> None:
        self.woken.append(now)


async def test_wakes_at_or_after_the_deadline() -> None:
    """A sleeper wakes once, no earlier than asked and soon after."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop)
    sleeper = Sleeper(loop)
    when = loop.time() + 0.05
    wheel.schedule(sleeper, when)
    await asyncio.sleep(0.15)
    assert len(sleeper.woken) == 1
    assert when <= sleeper.woken[0] < when + 0.05
    wheel.close()


async def test_earlier_deadline_wins_and_later_is_ignored() -> None:
    """Asking for an earlier wake replaces a later one; asking for a later one is a no-op."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop)
    sleeper = Sleeper(loop)
    start = loop.time()
    wheel.schedule(sleeper, start + 0.2)
    wheel.schedule(sleeper, start + 0.03)
    wheel.schedule(sleeper, start + 0.1)
    await asyncio.sleep(0.3)
    assert len(sleeper.woken) == 1
    assert start + 0.03 <= sleeper.woken[0] < start + 0.1


async def test_far_deadlines_wake_early_then_are_asked_again() -> None:
    """A deadline past the horizon wakes the sleeper early, never late, in a coarse slot."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop, horizon=0.1, coarse=0.1)
    sleeper = Sleeper(loop)
    when = loop.time() + 0.35
    wheel.schedule(sleeper, when)
    await asyncio.sleep(0.5)
    assert len(sleeper.woken) == 1
    assert sleeper.woken[0] <= when + 0.01


async def test_timer_periods_up_to_the_horizon_wait_in_fine_slots() -> None:
    """A deadline 10 s ahead (a usual timer period) waits in its own millisecond slot, so its
    sleeper wakes once, on time; one past the horizon waits in a coarse slot."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop)
    near, far = Sleeper(loop), Sleeper(loop)
    now = loop.time()
    wheel.schedule(near, now + 10.0, now)
    wheel.schedule(far, now + HORIZON + 1.0, now)
    assert near.wake_slot is not None and far.wake_slot is not None
    assert near.wake_slot[0] * RESOLUTION >= now + 10.0 > (near.wake_slot[0] - 1) * RESOLUTION
    coarse_slots = round(COARSE / RESOLUTION)
    assert far.wake_slot[0] % coarse_slots == 0
    assert far.wake_slot[0] * RESOLUTION <= now + HORIZON + 1.0
    wheel.close()


async def test_many_sleepers_share_slots_in_order() -> None:
    """Sleepers wake in deadline order, each exactly once."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop)
    order: list[int] = []

    class Ordered(Sleeper):
        def __init__(self, n: int) -> None:
            super().__init__(loop)
            self.n = n

        def wake(self, now: float) -> None:
            order.append(self.n)

    start = loop.time()
    sleepers = [Ordered(n) for n in range(50)]
    for s in reversed(sleepers):
        wheel.schedule(s, start + 0.01 + s.n * 0.002)
    await asyncio.sleep(0.3)
    assert order == list(range(50))


async def test_close_forgets_everyone() -> None:
    """After close nothing wakes and scheduling is ignored."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop)
    sleeper = Sleeper(loop)
    wheel.schedule(sleeper, loop.time() + 0.02)
    wheel.close()
    wheel.schedule(sleeper, loop.time() + 0.01)
    await asyncio.sleep(0.08)
    assert sleeper.woken == []


async def test_far_save_deadlines_share_one_bucket_in_the_wheel() -> None:
    """Saves due far ahead a few milliseconds apart wait in one save bucket (one wheel
    sleeper), never before their deadline; near ones keep a bucket per millisecond."""
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry())
    node.actor_type("counter", Counter)
    node.channel_type("c", idle_timeout=None, save_interval=None)
    async with node:
        await node.create_channel(("c", 1), wes.create(("counter", 1)))
        ch = node._rt.channels[("c", 1)]
        sweep = node._rt.sweep
        edge = math.ceil((node._rt.now() + 30.0) / FAR_BUCKET) * FAR_BUCKET
        sweep.schedule(ch, edge - 0.010)
        sweep.schedule(ch, edge - 0.005)
        now = node._rt.now()
        sweep.schedule(ch, now + 0.5)
        sweep.schedule(ch, now + 0.505)
        whens = sorted(bucket.when for bucket in sweep._buckets.values())
        assert len(whens) == 3
        assert now + 0.5 <= whens[0] < whens[1] <= now + 0.506
        assert edge - 0.005 <= whens[2] <= edge + 1e-9


async def test_a_fired_slots_list_is_reused_and_wakes_only_its_new_sleepers() -> None:
    """Once a slot has fired, its list serves a later slot (an old object for the garbage
    collector, not a new young one); a sleeper that had moved out of it before it fired, and
    those it woke, are not woken again by the slot it serves next."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop)
    woken, moved, later = Sleeper(loop), Sleeper(loop), Sleeper(loop)
    start = loop.time()
    wheel.schedule(woken, start + 0.03)
    wheel.schedule(moved, start + 0.03)
    first = woken.wake_slot
    wheel.schedule(moved, start + 0.01)  # leaves a stale entry behind in `first`
    await asyncio.sleep(0.06)
    assert len(woken.woken) == len(moved.woken) == 1
    wheel.schedule(later, loop.time() + 0.03)
    assert later.wake_slot is first
    await asyncio.sleep(0.06)
    assert len(later.woken) == 1
    assert len(woken.woken) == len(moved.woken) == 1
    wheel.close()
