"""The wes measurements, each paired with its baseline where one exists.

Every group is a coroutine `(settings, want) -> list[Row]` run in its own event loop; `want`
says which row names to measure (`--only`).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

from actors import Counter, Ticker
from baselines import Floor, PerRowCommits, batched_upserts
from common import Loop, Row, Settings, calibrate, paired_rates, percentile, profiled
from idle_memory import idle_channel_bytes
from million_timers import million_timers_in_process, start_spread
from rows import Want, names, row
from saving import (
    DurableClients,
    RecordingStore,
    counter_node,
    dirty_all,
    interleaved_pairs,
    saved_rounds,
    start_counters,
)

import wes

CLIENTS = 100
CHANNELS = 1000
DURABLE_PAIRS = {False: 7, True: 1}  # rounds of wes and of the baseline, by `--quick`
HERE = Path(__file__).resolve().parent


def memory_node(stats: wes.MemoryStats | None = None) -> wes.Node:
    """A node on in-memory backends with the counter actor and a default channel type."""
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry(), stats=stats)
    node.actor_type("counter", Counter)
    node.channel_type("bench")
    return node


def client_sequences(items: Sequence[tuple[str, int]], clients: int) -> list[list[tuple[str, int]]]:
    """Per client, a fixed pseudo-random order over `items` (drawn before timing)."""
    rng = random.Random(42)
    return [rng.sample(list(items), len(items)) for _ in range(clients)]


def bind(body: Loop, n: int) -> Callable[[], Awaitable[None]]:
    """`body(n)` as a thunk, for `profiled`."""
    return lambda: body(n)


# -- commands and reads ---------------------------------------------------------------------


async def round_trips(settings: Settings, want: Want) -> list[Row]:
    """command_1client, command_100clients, read_1client, read_100clients."""
    rows: list[Row] = []
    node = memory_node()
    async with node, Floor() as floor:
        channels = await start_counters(node, "bench", CHANNELS)
        actors = [("counter", i) for i in range(CHANNELS)]
        command, read = node.command, node.read

        async def command_one(n: int) -> None:
            channel = channels[0]
            for _ in range(n):
                await command(channel, "incr", 1)

        async def read_one(n: int) -> None:
            actor = actors[0]
            for _ in range(n):
                await read(actor, "value")

        command_seqs = client_sequences(channels, CLIENTS)
        read_seqs = client_sequences(actors, CLIENTS)

        async def command_client(seq: list[tuple[str, int]], m: int) -> None:
            for channel in itertools.islice(itertools.cycle(seq), m):
                await command(channel, "incr", 1)

        async def read_client(seq: list[tuple[str, int]], m: int) -> None:
            for actor in itertools.islice(itertools.cycle(seq), m):
                await read(actor, "value")

        async def command_many(n: int) -> None:
            per = max(1, n // CLIENTS)
            await asyncio.gather(*(command_client(seq, per) for seq in command_seqs))

        async def read_many(n: int) -> None:
            per = max(1, n // CLIENTS)
            await asyncio.gather(*(read_client(seq, per) for seq in read_seqs))

        plan: list[tuple[str, Loop, Loop]] = [
            ("command_1client", floor.one_client(), command_one),
            ("command_100clients", floor.many_clients(CLIENTS), command_many),
            ("read_1client", floor.one_client(), read_one),
            ("read_100clients", floor.many_clients(CLIENTS), read_many),
        ]
        for name, base_loop, wes_loop in plan:
            if not want(name):
                continue
            base, value = await paired_rates(base_loop, wes_loop, settings.seconds, settings.reps)
            rows.append(row(name, value, base))
            if settings.profile:
                n = await calibrate(wes_loop, settings.seconds)
                await profiled(settings, name, bind(wes_loop, n))
    return rows


# -- memory ---------------------------------------------------------------------------------


async def million_channels(settings: Settings, want: Want) -> list[Row]:
    """million_channels_rss_bytes and million_channels_create_rate, in a child process."""
    rows = names("million_channels")
    if not any(want(name) for name in rows):
        return []
    n = 20_000 if settings.quick else 1_000_000
    budget = 30.0 if settings.quick else 150.0  # seconds of creating; 1 M takes ~40 s at target
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "million.py"),
        str(n),
        str(budget),
        stdout=subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60 if settings.quick else 300)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"million.py exited with {proc.returncode}")
    report = json.loads(out.decode().strip().splitlines()[-1])
    stopped = report.get("stopped") or {}
    created = report["channels"]
    incomplete = "" if created == n else f"INCOMPLETE: {budget:.0f}s budget ran out; "
    note = (
        f"{incomplete}{created:,} of {n:,} channels in a child process,"
        f" created in {report['seconds']:.1f}s;"
        f" RSS at the end {report['rss_bytes'] / 1e6:,.0f} MB;"
        f" channels that stopped meanwhile: {stopped or 'none'}"
    )
    return [
        row(rows[0], float(report["max_rss_bytes"]), note=note),
        row(rows[1], float(report["rate"]), note=note),
    ]


# -- persistence ----------------------------------------------------------------------------


async def periodic_saves(settings: Settings, want: Want) -> list[Row]:
    """periodic_saves: actor states persisted per second by periodic saves, SqliteStore.

    N channels of one counter each, `save_interval` 5 ms. Each round makes every actor dirty
    with one command, then waits until every actor's new state has been written. Value =
    states written / (time of the rounds - time of the same commands on a node that does not
    save). Baseline = rows/s of raw `executemany` upserts of the same number of rows, 1,000
    rows a transaction. One state is one row in both.
    """
    if not want("periodic_saves"):
        return []
    n = 2000 if settings.quick else 20_000
    rounds = 2 if settings.quick else 3
    reps = 1 if settings.quick else 3
    base: list[float] = []
    values: list[float] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wes-bench-") as tmp:
        for rep in range(reps):
            base.append(batched_upserts(Path(tmp) / f"raw{rep}.db", n, rounds, 1000))
            value, note = await _periodic_once(Path(tmp) / f"wes{rep}.db", n, rounds, settings)
            values.append(value)
            notes.append(note)
            if value < 0.25 * base[-1]:
                notes[-1] += "; one repetition only (far below the baseline)"
                break
    return [
        row(
            "periodic_saves",
            statistics.median(values),
            statistics.median(base),
            note=f"N={n:,}; {notes[len(notes) // 2]}",
        )
    ]


async def _command_only(n: int, rounds: int) -> float:
    """Seconds `rounds` passes of one command to each of `n` channels take, without saves."""
    node = counter_node(wes.MemoryStore(), "unsaved", save_interval=None)
    async with node:
        channels = await start_counters(node, "unsaved", n)
        await dirty_all(node, channels)  # warm-up
        gc.collect()
        start = time.perf_counter()
        for _ in range(rounds):
            await dirty_all(node, channels)
        return time.perf_counter() - start


async def _periodic_once(path: Path, n: int, rounds: int, settings: Settings) -> tuple[float, str]:
    """States saved per second, and a note; see `periodic_saves`."""
    commands_only = await _command_only(n, rounds)
    store = RecordingStore(wes.SqliteStore(str(path)))
    node = counter_node(store, "saved", save_interval=0.005)
    async with node:
        one_round = await saved_rounds(node, store, n, 120)
        await one_round()  # warm-up
        gc.collect()
        start = time.perf_counter()
        for _ in range(rounds):
            await one_round()
        total = time.perf_counter() - start
        await profiled(settings, "periodic_saves", one_round)
    saving = max(total - commands_only, 1e-9)
    note = (
        f"{total:.2f}s for {rounds} rounds of {n:,} commands + saves,"
        f" minus {commands_only:.2f}s for the commands alone"
    )
    return n * rounds / saving, note


async def durable_commands(settings: Settings, want: Want) -> list[Row]:
    """durable_commands: commands/s with durability="command", 100 channels, one client each.

    Baseline: raw upserts over 100 rows, one transaction (commit) per row. Rounds of the two
    alternate; the row shows the pair with the median per-pair ratio (see `interleaved_pairs`).
    """
    if not want("durable_commands"):
        return []
    with tempfile.TemporaryDirectory(prefix="wes-bench-") as tmp:
        raw = PerRowCommits(Path(tmp) / "raw.db", CLIENTS)
        path = str(Path(tmp) / "wes.db")
        node = counter_node(wes.SqliteStore(path), "durable", durability="command")
        try:
            async with node:
                clients = DurableClients(node, await start_counters(node, "durable", CLIENTS))
                wes_loop = clients.loop
                base, value, pairs = await interleaved_pairs(
                    raw.body, wes_loop, settings.seconds * 2, DURABLE_PAIRS[settings.quick]
                )
                if settings.profile:
                    n = await calibrate(wes_loop, settings.seconds)
                    await profiled(settings, "durable_commands", bind(wes_loop, n))
                stored = await stored_total(path)  # before the node's final saves
        finally:
            raw.close()
    return [row("durable_commands", value, base, note=f"{pairs}; {clients.check(stored)}")]


async def stored_total(path: str) -> int:
    """The sum of the counters stored in the SQLite file, read through a second store."""
    total = 0
    async with wes.SqliteStore(path) as store:
        async for _, record in store.scan("counter/"):
            total += json.loads(record.data)["value"]
    return total


# -- timers ---------------------------------------------------------------------------------


async def timers(settings: Settings, want: Want) -> list[Row]:
    """timer_p99_ms and timer_p99_vs_last_tick_ms, measured in a child process.

    A child of its own gives the timers a fresh heap (no garbage of earlier groups for the
    collector to walk) and lets it exit without stopping 100 k channels one by one.
    """
    if not any(want(name) for name in TIMER_ROWS):
        return []
    return await child_rows("timers", settings, 60 if settings.quick else 240)


async def million_timers(settings: Settings, want: Want) -> list[Row]:
    """timer_p99_1m_ms: a million timers with leases renewing, in a child process
    (bench/million_timers.py)."""
    if not any(want(name) for name in names("million_timers")):
        return []
    return await child_rows("million_timers", settings, 100 if settings.quick else 400)


async def child_rows(group: str, settings: Settings, seconds: float) -> list[Row]:
    """The rows of `group` (in `CHILD_GROUPS`), measured by `child.py` in a process of its
    own."""
    args = [sys.executable, str(HERE / "child.py"), group]
    args += ["--quick"] * settings.quick + ["--profile"] * settings.profile
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"child.py {group} exited with {proc.returncode}")
    return [Row(**fields) for fields in json.loads(out.decode().strip().splitlines()[-1])]


TIMER_ROWS = names("timers")


def _triples(flat: array[float]) -> Iterator[tuple[float, float, float]]:
    """The (fire time, lateness, lateness vs last tick) samples of a flat array."""
    it = iter(flat)
    return zip(it, it, it, strict=True)


async def timers_in_process(settings: Settings, want: Want) -> list[Row]:
    """timer_p99_ms: p99 lateness of 100 k periodic actor timers, one per channel.

    Timers start spread evenly over one interval (so ticks are spread evenly in time), run
    one interval to settle, then lateness is sampled over several windows; the figure is
    the median of the windows' p99s. Lateness is measured against the ideal schedule (set
    time + k intervals) and, as a second row, against the previous tick + interval.
    """
    n = 2000 if settings.quick else 100_000
    interval = 0.2 if settings.quick else 1.0
    window = 0.4 if settings.quick else 3.0
    windows = 1 if settings.quick else 3
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry())
    node.actor_type("ticker", Ticker)
    node.channel_type("timed")
    Ticker.reset()
    await node.start()  # never stopped: the child process exits hard after reporting
    started = time.perf_counter()
    channels: list[tuple[str, int]] = []
    for i in range(n):
        await node.create_channel(("timed", i), wes.create(("ticker", i)))
        channels.append(("timed", i))
    created = time.perf_counter() - started
    if os.environ.get("WES_BENCH_GC_FREEZE", "1") == "1":
        # What a service holding 100 k actors does after start-up: move the start-up heap
        # out of the collector's sight, so a full collection (~150 ms over 100 k channels on
        # this machine) does not land in the measured windows. WES_BENCH_GC_FREEZE=0 to see
        # the figure without it.
        gc.collect()
        gc.freeze()
    loop = asyncio.get_running_loop()
    await start_spread(node, channels, interval)
    settle = loop.time() + interval
    await _sleep_until(loop, settle)
    p99s: list[float] = []
    p99s_last: list[float] = []
    worst = 0.0
    measured = 0
    # Sleep through every window first and sift the samples afterwards: sifting hundreds of
    # thousands of samples between windows would block the loop and delay the very ticks
    # the next window measures.
    await _sleep_until(loop, settle + windows * window)
    samples = Ticker.recorded()
    for w in range(windows):
        lo, hi = settle + w * window, settle + (w + 1) * window
        measured += 1
        sched = [s[1] for s in _triples(samples) if lo <= s[0] < hi]
        last = [s[2] for s in _triples(samples) if lo <= s[0] < hi]
        if sched:
            p99s.append(percentile(sched, 0.99) * 1000)
            p99s_last.append(percentile(last, 0.99) * 1000)
            worst = max([worst, *sched])
    end = settle + measured * window
    ticks = sum(1 for s in _triples(samples) if settle <= s[0] < end)
    await profiled(settings, "timers", lambda: asyncio.sleep(window))
    expected = n * measured * window / interval
    note = (
        f"{n:,} timers every {interval:g}s, started in {created:.1f}s;"
        f" window p99s {', '.join(f'{p:.1f}' for p in p99s) or 'none'} ms;"
        f" max {worst * 1000:.1f} ms; ticks {ticks:,} of {expected:,.0f} due"
    )
    return [
        row(TIMER_ROWS[0], _median(p99s), note=note),
        row(TIMER_ROWS[1], _median(p99s_last), note="lateness vs previous tick"),
    ]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    await asyncio.sleep(max(0.0, when - loop.time()))


Group = Callable[[Settings, Want], Coroutine[Any, Any, list[Row]]]

GROUPS: list[tuple[tuple[str, ...], Group]] = [
    (names(group.__name__), group)
    for group in (
        round_trips,
        idle_channel_bytes,
        million_channels,
        periodic_saves,
        durable_commands,
        timers,
        million_timers,
    )
]
"""Each group with the row names it produces, in table order."""

CHILD_GROUPS: dict[str, Group] = {
    "timers": timers_in_process,
    "million_timers": million_timers_in_process,
}
"""Groups that `child.py` runs in a process of their own."""
