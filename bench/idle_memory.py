"""idle_channel_bytes and idle_channel_bytes_rss: the memory of an idle channel with one small
actor, by tracemalloc and by resident set, with string names and with int names.

Each measurement runs in a child process of its own (`python bench/idle_memory.py N NAMES
HOW`), so that the resident set is this measurement's alone and tracemalloc does not weigh
on the other: it starts a node (MemoryStore, MemoryRegistry, the default channel settings:
idle timeout, periodic saves, a 30 s lease), warms up with a few channels, then creates N
channels of one `Counter` each and reports the growth per channel after a collection. The
names (`user-00000042` or 10000042) exist before the first reading: they are the caller's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
from pathlib import Path

from actors import Counter
from common import Row, Settings
from rows import Want, names, row

import wes

HERE = Path(__file__).resolve().parent
ROWS = names("idle_channel_bytes")
WARM_UP = 200
YIELD_EVERY = 100


def resident_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def measure(n: int, kind: str, how: str, profile: bool) -> float:
    """Bytes per idle channel, by `how` ("tracemalloc" or "rss")."""
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry())
    node.actor_type("counter", Counter)
    node.channel_type("idle")
    await node.start()  # never stopped: the process exits hard after reporting
    for i in range(WARM_UP):  # first-use caches and the maps' first sizes, not per channel
        await node.create_channel(("idle", -1 - i), wes.create(("counter", -1 - i)))
    ids = [f"user-{i:08d}" if kind == "str" else 10_000_000 + i for i in range(n)]
    await asyncio.sleep(0.05)
    gc.collect()
    if how == "tracemalloc":
        tracemalloc.start()
        first = tracemalloc.take_snapshot() if profile else None
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = resident_bytes()
    for i, name in enumerate(ids):
        await node.create_channel(("idle", name), wes.create(("counter", name)))
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # as a server between requests: sweeps get their turn
    await asyncio.sleep(0.05)  # deadlines settle in the wheel
    gc.collect()
    if how == "tracemalloc":
        after = tracemalloc.get_traced_memory()[0]
        if first is not None:
            print_allocations(first, tracemalloc.take_snapshot(), n)
    else:
        after = resident_bytes()
    return (after - before) / n


def print_allocations(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int) -> None:
    """With `--profile`: where the bytes of an idle channel come from, per source line."""
    print(f"\n=== tracemalloc: bytes per idle channel by line (N={n}) ===", file=sys.stderr)
    for stat in after.compare_to(before, "lineno")[:20]:
        frame = stat.traceback[0]
        print(
            f"{stat.size_diff / n:8.1f} B {stat.count_diff / n:6.2f} blocks"
            f"  {frame.filename}:{frame.lineno}",
            file=sys.stderr,
        )


async def idle_channel_bytes(settings: Settings, want: Want) -> list[Row]:
    """Both rows: each figure the worse of string and int names (the median of the runs)."""
    if not any(want(name) for name in ROWS):
        return []
    n = 10_000 if settings.quick else 100_000
    runs = 1  # the figures repeat to a few bytes (1,066-1,071 B over three RSS runs)
    rows: list[Row] = []
    for name, how in zip(ROWS, ("tracemalloc", "rss"), strict=True):
        if not want(name):
            continue
        per_kind = {
            kind: [await _child(n, kind, how, settings) for _ in range(runs)]
            for kind in ("str", "int")
        }
        medians = {kind: statistics.median(values) for kind, values in per_kind.items()}
        note = (
            f"{how} growth over N={n:,} idle channels of one small actor, after a collection;"
            f" {runs} process(es) each: str names {medians['str']:.0f} B"
            f" ({_span(per_kind['str'])}), int names {medians['int']:.0f} B"
            f" ({_span(per_kind['int'])}); the figure is the worse of the two"
        )
        rows.append(row(name, max(medians.values()), note=note))
    return rows


def _span(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}"


async def _child(n: int, kind: str, how: str, settings: Settings) -> float:
    args = [sys.executable, str(Path(__file__)), str(n), kind, how]
    args += ["--profile"] * (settings.profile and how == "tracemalloc")
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"idle_memory.py {n} {kind} {how} exited with {proc.returncode}")
    return float(json.loads(out.decode().strip().splitlines()[-1])["bytes_per_channel"])


def main() -> None:
    n, kind, how = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    per = asyncio.run(measure(n, kind, how, "--profile" in sys.argv[4:]))
    print(json.dumps({"bytes_per_channel": per}), flush=True)
    sys.stderr.flush()
    os._exit(0)  # stopping 100 k channels normally would save them all


if __name__ == "__main__":
    main()
