"""The actors the benchmarks run: a small counter, and a ticker that measures timer lateness."""

from __future__ import annotations

from array import array
from time import monotonic
from typing import ClassVar

import wes


class Counter(wes.Actor):
    """A small actor: one int of state."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    @wes.command
    def incr(self, n: int = 1) -> None:
        self.value += n

    @wes.read("value")
    def current(self) -> int:
        return self.value


class Ticker(wes.Actor):
    """Sets a periodic timer on `start` and records how late each tick fires.

    wes does not pass the scheduled time to `on_timer`, so the k-th tick's schedule is
    reconstructed as the time of the `set_timer` call plus k intervals. Both read
    `time.monotonic`, the clock of asyncio's own loop, directly: `loop.time()` is a Python
    call more per tick, and the probe should cost little next to what it measures.
    """

    # Fire time, lateness against the schedule, lateness against the previous tick + interval,
    # flat in arrays of floats: a tuple per tick would be 100 k objects a second for the
    # garbage collector to walk, which would measure the benchmark rather than wes. The
    # arrays are chunks of `CHUNK` floats: one array of hundreds of megabytes, reallocated as
    # it grows, stalled the measured loop for 20 ms and more (a copy and 6,000 page faults in
    # one tick) every few seconds.
    CHUNK: ClassVar[int] = 3 * 2**15
    samples: ClassVar[array[float]] = array("d")  # the chunk being filled
    full: ClassVar[list[array[float]]] = []

    @classmethod
    def reset(cls) -> None:
        """Forget every sample (before a measurement)."""
        cls.samples = array("d")
        cls.full = []

    @classmethod
    def recorded(cls) -> array[float]:
        """Every sample so far, flat, in one array (after a measurement: it copies them)."""
        flat = array("d")
        for chunk in cls.full:
            flat.extend(chunk)
        flat.extend(cls.samples)
        return flat

    def __init__(self) -> None:
        self.ticks = 0

    @wes.command
    def start(self, interval: float) -> None:
        now = monotonic()
        self._set_at = now
        self._last = now
        self._interval = interval
        self._fired = 0
        self.set_timer("tick", interval)

    def on_timer(self, name: str) -> None:
        now = monotonic()
        fired = self._fired = self._fired + 1
        interval = self._interval
        due = self._set_at + fired * interval
        samples = Ticker.samples
        samples.extend((now, now - due, now - self._last - interval))
        if len(samples) >= Ticker.CHUNK:
            Ticker.full.append(samples)
            Ticker.samples = array("d")
        self._last = now
        self.ticks += 1
