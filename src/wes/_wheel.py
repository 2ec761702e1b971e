"""One shared timer structure for every channel of a node.

Channels are passive objects: instead of a task or a `call_later` handle each, a channel
asks the wheel to wake it at its next deadline (idle timeout, save, lease renewal or actor
timer, whichever is first). The wheel keeps the waiting channels in slots of `resolution`
seconds (a list each, so a waiting channel costs one pointer) and arms a single loop
callback for the earliest slot. Deadlines further than `horizon` seconds away go to coarse
slots that fire a little early; the woken channel then finds nothing due and asks again, now
precisely. This keeps the number of slots (and their memory) small when a million idle
channels wait for timeouts that are spread over many minutes.

The horizon is long enough for the periods timers usually have (a 10 s timer wakes its
channel once per tick, not early and then again): at one slot per millisecond it bounds the
fine slots to 16,000 (a few megabytes at most), whatever the number of sleepers.

A slot's list is reused once its slot has fired (up to `POOL` of them wait for reuse). A new
list is a young object for the garbage collector, and a young list holding a hundred
channels makes a young collection visit them all: with a million timers ticking, lists of
the last few seconds were ~6,000 and a generation-0 collection over them took 50 ms, where
lists in use for minutes are old and not looked at again until a full collection.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Any, Protocol

RESOLUTION = 0.001  # seconds: the wheel's default slot, and the earliest a sleeper asks for
BUSY_DELAY = 0.002  # seconds before a sleeper that found its channel busy looks again
HORIZON = 16.0  # seconds: deadlines further away wait in coarse slots
COARSE = 0.25  # seconds: the width of a coarse slot
POOL = 32_768  # slot lists kept for reuse at most: twice the fine slots of the horizon


class Sleeper(Protocol):
    """What the wheel wakes. `wake_slot` belongs to the wheel: it is the entry list of the
    slot the sleeper waits in (its first item is the slot number), so that waiting costs the
    sleeper no allocation of its own."""

    wake_slot: list[Any] | None

    def wake(self, now: float) -> None: ...


class Wheel:
    """Wakes sleepers at (not before) the deadlines they ask for, to `resolution` seconds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        resolution: float = RESOLUTION,
        horizon: float = HORIZON,
        coarse: float = COARSE,
    ) -> None:
        self._loop = loop
        self._res = resolution
        self._horizon = horizon
        self._coarse_slots = round(coarse / resolution)
        self._slots: dict[int, list[Any]] = {}  # slot -> [slot, sleeper, sleeper, ...]
        self._heap: list[int] = []
        self._pool: list[list[Any]] = []  # emptied slot lists, for reuse (see above)
        self._handle: asyncio.TimerHandle | None = None
        self._armed: int | None = None
        self._closed = False

    def schedule(self, sleeper: Sleeper, when: float, now: float | None = None) -> None:
        """Wake `sleeper` at `when` (loop time) unless it already waits for an earlier slot.
        `now`, when the caller has it at hand, saves reading the clock again."""
        if self._closed:
            return
        if when - (self._loop.time() if now is None else now) > self._horizon:
            step = self._coarse_slots
            slot = math.floor(when / self._res / step) * step
        else:
            slot = math.ceil(when / self._res)
        current = sleeper.wake_slot
        if current is not None and current[0] <= slot:
            return
        # An entry in a later slot stays behind; `_fire` skips it as stale.
        entries = self._slots.get(slot)
        if entries is None:
            if self._pool:
                entries = self._pool.pop()
                entries += (slot, sleeper)
            else:
                entries = [slot, sleeper]
            self._slots[slot] = entries
            heapq.heappush(self._heap, slot)
            if self._armed is None or slot < self._armed:
                self._arm(slot)
        else:
            entries.append(sleeper)
        sleeper.wake_slot = entries

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = slot
        self._handle = self._loop.call_at(slot * self._res, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = None
        now = self._loop.time()
        # call_at may run a hair early (the loop rounds by its clock resolution).
        due = math.floor(now / self._res + 1e-6)
        heap, slots, pool = self._heap, self._slots, self._pool
        while heap and heap[0] <= due:
            entries = slots.pop(heapq.heappop(heap))  # out of the map: nothing joins it now
            sleepers = iter(entries)
            next(sleepers)  # the slot number
            for sleeper in sleepers:
                if sleeper.wake_slot is entries:
                    sleeper.wake_slot = None
                    sleeper.wake(now)
            # No sleeper points to it any more: it was woken (and left it), or had left it.
            entries.clear()
            if len(pool) < POOL:
                pool.append(entries)
        if heap and not self._closed:
            self._arm(heap[0])

    def close(self) -> None:
        """Forget every sleeper; nothing wakes after this."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._slots.clear()
        self._heap.clear()
        self._pool.clear()
