"""timer_p99_1m_ms: a million periodic actor timers, one per channel, with leases renewing.

Run in a child process of its own (`child.py million_timers`): a fresh heap, and an exit
without stopping a million channels one by one. Each channel holds one `Ticker` whose timer
has a 10 s period, so 100 k ticks fall due every second; the channel type has a real lease
(30 s, the default), so the node's renewal sweep renews every claim every 15 s or so while the
timers are measured. Periodic saves are off: the row measures timers and leases, and the save
path has rows of its own.

After start-up the heap is frozen (`gc.freeze()`), as a service holding a million actors
should do: a full collection then walks only what was allocated since, instead of every
channel (seconds over a million channels). `WES_BENCH_GC_FREEZE=0` shows the figure without.
Full (generation 2) collections during the windows are counted and timed either way.

The figure is the worst of five windows' p99 lateness, each window one timer period (every
timer ticks once in it); the note lists all five, and the largest lateness seen.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import Any

from actors import Ticker
from common import Row, Settings, percentile, profiled
from rows import Want, names, row

import wes

ROWS = names("million_timers")
WINDOWS = 5
SLICES = 1000  # groups of timers started one after the other over an interval


class FullCollections:
    """Counts and times the generation-2 collections while installed."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._began = 0.0

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds.append(time.perf_counter() - self._began)


async def million_timers_in_process(settings: Settings, want: Want) -> list[Row]:
    """The row, measured in this process; see the module docstring."""
    n = 20_000 if settings.quick else 1_000_000
    interval = 0.5 if settings.quick else 10.0
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry())
    node.actor_type("ticker", Ticker)
    node.channel_type("timed", save_interval=None)  # the default lease: 30 s
    Ticker.reset()
    await node.start()  # never stopped: the child process exits hard after reporting
    started = time.perf_counter()
    channels = [("timed", i) for i in range(n)]
    for i, channel in enumerate(channels):
        await node.create_channel(channel, wes.create(("ticker", i)))
        if i % 100 == 0:
            # Creating a channel need not suspend; a server creating them on requests returns
            # to the loop between requests, which lets the node renew leases in time.
            await asyncio.sleep(0)
    created = time.perf_counter() - started
    frozen = os.environ.get("WES_BENCH_GC_FREEZE", "1") == "1"
    if frozen:
        gc.collect()
        gc.freeze()
    loop = asyncio.get_running_loop()
    await start_spread(node, channels, interval)
    settle = loop.time() + interval
    await _sleep_until(loop, settle)
    cpu = time.process_time()
    with FullCollections() as full:
        # Sift the samples only after the last window: sifting between windows would block
        # the loop and delay the very ticks the next window measures.
        await _sleep_until(loop, settle + WINDOWS * interval)
    cpu = time.process_time() - cpu
    p99s, worst, ticks = _windows(settle, interval)
    await profiled(settings, "million_timers", lambda: asyncio.sleep(interval))
    note = (
        f"{n:,} timers every {interval:g}s, lease 30 s renewing, channels created in"
        f" {created:.0f}s; p99 of {WINDOWS} windows of one period each"
        f" {', '.join(f'{p:.1f}' for p in p99s)} ms; max {worst * 1000:.1f} ms;"
        f" ticks {ticks:,} of {n * WINDOWS:,} due; {cpu / max(ticks, 1) * 1e6:.1f} us of CPU"
        f" per tick (all of the process); gen-2 collections in the windows: {len(full.seconds)}"
        f" ({', '.join(f'{s * 1000:.0f} ms' for s in full.seconds) or 'none'});"
        f" heap {'frozen' if frozen else 'not frozen'} after start-up"
    )
    return [row(ROWS[0], max(p99s) if p99s else None, note=note)]


async def start_spread(node: wes.Node, channels: list[tuple[str, int]], interval: float) -> None:
    """Start every timer, spread evenly over one interval, so ticks are spread evenly too:
    `SLICES` groups, each started at its moment. Coarser groups (100 an interval) bunched
    the ticks: a group of 1,000 timers starts in ~5 ms, so its ticks fell due in that half
    of every 10 ms, at twice the average rate."""
    loop = asyncio.get_running_loop()
    per = -(-len(channels) // SLICES)
    t0 = loop.time()
    for k in range(SLICES):
        await _sleep_until(loop, t0 + k * interval / SLICES)
        for channel in channels[k * per : (k + 1) * per]:
            await node.command(channel, "start", interval)


def _windows(settle: float, interval: float) -> tuple[list[float], float, int]:
    """Per window, the p99 lateness (ms); the largest lateness (s); the ticks counted."""
    late: list[list[float]] = [[] for _ in range(WINDOWS)]
    samples = Ticker.recorded()
    for i in range(0, len(samples), 3):
        w = int((samples[i] - settle) // interval)
        if 0 <= w < WINDOWS:
            late[w].append(samples[i + 1])
    p99s = [percentile(window, 0.99) * 1000 for window in late if window]
    worst = max((max(window) for window in late if window), default=0.0)
    return p99s, worst, sum(map(len, late))


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    await asyncio.sleep(max(0.0, when - loop.time()))
