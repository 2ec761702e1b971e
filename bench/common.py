"""Shared pieces of the benchmark programs: result rows, settings and timing helpers."""

from __future__ import annotations

import cProfile
import gc
import math
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Settings:
    """How hard to measure: `quick` is a smoke run with small sizes and one repetition."""

    quick: bool = False
    reps: int = 5
    seconds: float = 0.4  # target duration of one timed repetition of a throughput loop
    profile: bool = False  # print a cProfile of each wes measurement to stderr

    @classmethod
    def make(cls, quick: bool, profile: bool = False) -> Settings:
        """The settings of a full run, or of a `--quick` smoke run."""
        if quick:
            return cls(quick=True, reps=1, seconds=0.05, profile=profile)
        return cls(profile=profile)


@dataclass(slots=True)
class Row:
    """One line of the table and of `latest.json`.

    `ratio` is `value / baseline` when a baseline exists. For rates higher is better; a target
    is either a minimum ratio (`min_ratio`) or a maximum value (`max_value`).
    """

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    min_ratio: float | None = None
    max_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def target(self) -> str:
        if self.min_ratio is not None:
            return f">= {self.min_ratio:g}x"
        if self.max_value is not None:
            return f"<= {self.max_value:,.0f}"
        return ""

    @property
    def met(self) -> bool | None:
        """Whether the target is met; `None` when there is no target or no figure."""
        if self.value is None:
            return None
        if self.min_ratio is not None:
            ratio = self.ratio
            return None if ratio is None else ratio >= self.min_ratio
        if self.max_value is not None:
            return self.value <= self.max_value
        return None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": _finite(self.value),
            "unit": self.unit,
            "baseline": _finite(self.baseline),
            "ratio": _finite(self.ratio),
            "target": self.target,  # "" when the row has none
            "met": self.met,
            "note": self.note,
        }


def _finite(x: float | None) -> float | None:
    """`x`, or `None` for a NaN or infinity (which JSON cannot hold)."""
    return x if x is not None and math.isfinite(x) else None


Loop = Callable[[int], Awaitable[None]]
"""A benchmark body: perform `n` operations."""


async def time_loop(body: Loop, n: int) -> float:
    """Seconds `body(n)` takes, starting from a collected heap."""
    gc.collect()
    start = time.perf_counter()
    await body(n)
    return time.perf_counter() - start


async def calibrate(body: Loop, seconds: float, start: int = 256) -> int:
    """An operation count that makes `body` last about `seconds`; also warms it up."""
    n = start
    while True:
        elapsed = await time_loop(body, n)
        if elapsed >= 0.05 or n >= 1 << 24:
            return max(start, int(n * seconds / max(elapsed, 1e-9)))
        n *= 4


async def paired_rates(
    baseline: Loop, subject: Loop, seconds: float, reps: int
) -> tuple[float, float]:
    """Median operations/s of `baseline` and of `subject`, repetitions interleaved.

    Interleaving makes a noisy neighbour hit both sides alike.
    """
    n_base = await calibrate(baseline, seconds)
    n_subj = await calibrate(subject, seconds)
    base: list[float] = []
    subj: list[float] = []
    for _ in range(reps):
        base.append(n_base / await time_loop(baseline, n_base))
        subj.append(n_subj / await time_loop(subject, n_subj))
    return statistics.median(base), statistics.median(subj)


def percentile(values: list[float], q: float) -> float:
    """The `q`-quantile (0..1) of `values`, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


async def profiled(settings: Settings, label: str, body: Callable[[], Awaitable[object]]) -> None:
    """With `--profile`, run `body` once more under cProfile and print the top functions.

    The profile covers everything the event loop runs meanwhile (other tasks, callbacks), which
    is the point: the cost of a wes operation is spread over tasks and callbacks.
    """
    if not settings.profile:
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await body()
    finally:
        profiler.disable()
    print(f"\n=== cProfile: {label} ===", file=sys.stderr)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
