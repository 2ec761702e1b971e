"""Actor timers and the idle timeout: periodic `on_timer` calls, `cancel_timer`, raising timers,
timers under durability="command", and channels stopping after `idle_timeout`."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

import wes
from tests.support.backends import Backend, stored
from tests.support.claims import actor_claim
from tests.support.counters import Counter
from tests.support.nodes import OTHER, SESSION, A, node_of
from tests.support.waiting import wait_until
from wes.abc import Store

T = ("ticker", "t")


class Ticker(wes.Actor):
    def __init__(self) -> None:
        self.ticks: dict[str, int] = {}
        self.fail_at = 0

    @wes.command
    def start(self, name: str, seconds: float) -> None:
        self.set_timer(name, seconds)

    @wes.command
    def cancel(self, name: str) -> None:
        self.cancel_timer(name)

    @wes.command
    def fail_at_tick(self, n: int) -> None:
        self.fail_at = n

    def on_timer(self, name: str) -> None:
        self.ticks[name] = self.ticks.get(name, 0) + 1
        if self.fail_at and self.ticks[name] >= self.fail_at:
            raise ValueError(f"tick {name}")

    @wes.read
    def count(self, name: str) -> int:
        return self.ticks.get(name, 0)


def make_node(
    store: Store | None = None,
    registry: wes.abc.Registry | None = None,
    stats: wes.abc.Stats | None = None,
    **kw: Any,
) -> wes.Node:
    actors = {"ticker": Ticker, "counter": Counter}
    return node_of(actors, store, registry, stats or wes.MemoryStats(), **kw)


async def wait_ticks(node: wes.Node, name: str, at_least: int) -> int:
    """Poll the ticker's count for `name` until it reaches `at_least`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    count: int
    while (count := await node.read(T, "count", name)) < at_least:
        assert loop.time() < deadline, f"timer {name!r} fired {count} times only"
        await asyncio.sleep(0.02)
    return count


# --- timers ------------------------------------------------------------------------------


async def test_timer_fires_on_timer_periodically() -> None:
    """`set_timer(name, seconds)` calls `on_timer(name)` every `seconds`, counted in stats."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "tick", 0.03)
        count = await wait_ticks(node, "tick", 3)
        assert stats.counts().get(("timer", "tick"), 0) >= count


async def test_timers_are_told_apart_by_name() -> None:
    """Two timers of one actor fire independently, each calling `on_timer` with its own name."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "fast", 0.02)
        await node.command(SESSION, "start", "slow", 0.5)
        await wait_ticks(node, "fast", 5)
        assert await node.read(T, "count", "slow") <= 1
        await node.command(SESSION, "start", "other", 0.02)
        await wait_ticks(node, "other", 2)


async def test_cancel_timer_stops_it() -> None:
    """After `cancel_timer(name)` returns, that timer fires no more."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "tick", 0.02)
        await wait_ticks(node, "tick", 2)
        await node.command(SESSION, "cancel", "tick")
        count = await node.read(T, "count", "tick")
        await asyncio.sleep(0.2)
        assert await node.read(T, "count", "tick") == count
        assert await node.status(SESSION) is not None


async def test_setting_a_timer_again_replaces_it() -> None:
    """`set_timer` with the name of a running timer replaces it: the new period holds, and the
    old one fires no more."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "tick", 0.02)
        await wait_ticks(node, "tick", 2)
        await node.command(SESSION, "start", "tick", 60.0)
        count = await node.read(T, "count", "tick")
        await asyncio.sleep(0.2)
        assert await node.read(T, "count", "tick") == count


async def test_cancelling_one_of_two_timers_leaves_the_other_firing() -> None:
    """With two timers set, cancelling one stops it alone; the other goes on firing."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "a", 0.02)
        await node.command(SESSION, "start", "b", 0.02)
        await wait_ticks(node, "a", 2)
        await node.command(SESSION, "cancel", "a")
        count = await node.read(T, "count", "a")
        b = await node.read(T, "count", "b")
        await wait_ticks(node, "b", b + 3)
        assert await node.read(T, "count", "a") == count


class Juggler(wes.Actor):
    """Changes its timers from inside `on_timer`: at its first tick, "first" sets "second" (or
    cancels itself, or moves itself to a long period, as `plan` says)."""

    log: ClassVar[list[str]] = []

    def __init__(self, plan: str) -> None:
        self.plan = plan

    @wes.command
    def start(self) -> None:
        self.set_timer("first", 0.02)

    def on_timer(self, name: str) -> None:
        Juggler.log.append(name)
        if name != "first" or Juggler.log.count("first") > 1:
            return
        if self.plan == "add":
            self.set_timer("second", 0.02)
        elif self.plan == "cancel":
            self.cancel_timer("first")
        else:
            self.set_timer("first", 60.0)


@pytest.mark.parametrize(
    ("plan", "firsts", "seconds"), [("add", ">1", ">1"), ("cancel", "1", "0"), ("move", "1", "0")]
)
async def test_a_timer_that_changes_the_timers_in_its_handler_is_obeyed(
    plan: str, firsts: str, seconds: str
) -> None:
    """A timer that sets another timer, cancels itself, or sets itself again with a long
    period from its own `on_timer` gets just that: both fire, or it fires no more."""
    Juggler.log.clear()
    node = make_node()
    node.actor_type("juggler", Juggler)
    async with node:
        await node.create_channel(SESSION, [wes.create(("juggler", "j"), plan)])
        await node.command(SESSION, "start")
        if plan == "add":
            await wait_until(lambda: Juggler.log.count("second") >= 2)
        else:
            await wait_until(lambda: Juggler.log.count("first") >= 1)
            await asyncio.sleep(0.2)
        counts = {"firsts": Juggler.log.count("first"), "seconds": Juggler.log.count("second")}
        for key, want in (("firsts", firsts), ("seconds", seconds)):
            assert counts[key] > 1 if want == ">1" else counts[key] == int(want), counts
        assert await node.status(SESSION) is not None


async def test_timer_stops_with_its_channel() -> None:
    """A channel's timers stop firing once the channel stops."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "tick", 0.02)
        await wait_until(lambda: stats.counts().get(("timer", "tick"), 0) >= 2)
        await node.stop_channel(SESSION)
        fired = stats.counts()[("timer", "tick")]
        await asyncio.sleep(0.15)
        assert stats.counts()[("timer", "tick")] == fired


@pytest.mark.registries
async def test_raising_timer_kills_the_channel_unsaved(backend: Backend) -> None:
    """An exception in `on_timer` stops the channel without saving, like a command's, counted as
    a stop named after the exception; its locks are released."""
    store = backend.store()
    stats = wes.MemoryStats()
    registry = backend.registry()
    node = make_node(store, registry, stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.stop_channel(SESSION)
        await node.create_channel(SESSION, [wes.load(T)])
        await node.command(SESSION, "fail_at_tick", 3)
        await node.command(SESSION, "start", "tick", 0.02)
        await wait_until(lambda: stats.counts().get(("stop", "ValueError"), 0) == 1)
        assert await node.status(SESSION) is None
        assert await registry.holder("actor", actor_claim(T)) is None
        assert await stored(store, "ticker/t") == {"ticks": {}, "fail_at": 0}
        await node.create_channel(OTHER, [wes.load(T)])
        assert await node.read(T, "count", "tick") == 0


async def test_timer_changes_are_durable_under_command_durability(backend: Backend) -> None:
    """Under durability="command" a timer's state changes are stored like a command's."""
    store = backend.store()
    node = make_node(store, durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "tick", 0.03)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while ((await stored(store, "ticker/t")) or {}).get("ticks", {}).get("tick", 0) < 2:
            assert loop.time() < deadline, "timer changes never stored"
            await asyncio.sleep(0.02)


# --- idle timeout ------------------------------------------------------------------------


@pytest.mark.registries
async def test_idle_channel_stops_normally_and_saves(backend: Backend) -> None:
    """A channel without commands or reads for idle_timeout stops normally, saving, counted as
    ("stop", "idle"), and releases its locks."""
    store = backend.store()
    stats = wes.MemoryStats()
    registry = backend.registry()
    node = make_node(store, registry, stats, idle_timeout=0.2)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr", 2)
        await wait_until(lambda: stats.counts().get(("stop", "idle"), 0) == 1)
        assert await node.status(SESSION) is None
        assert await stored(store, "counter/a") == {"value": 3}
        assert await registry.holder("actor", actor_claim(A)) is None
        assert ("stop", "normal") not in stats.counts()


async def test_commands_keep_a_channel_alive() -> None:
    """Commands more frequent than idle_timeout keep the channel running."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats, idle_timeout=0.4)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        for _ in range(16):  # 0.8 s, twice the idle timeout
            await asyncio.sleep(0.05)
            await node.command(SESSION, "incr")
        assert await node.status(SESSION) is not None
        assert ("stop", "idle") not in stats.counts()


async def test_reads_keep_a_channel_alive() -> None:
    """Reads more frequent than idle_timeout keep the channel running."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats, idle_timeout=0.4)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        for _ in range(16):  # 0.8 s, twice the idle timeout
            await asyncio.sleep(0.05)
            assert await node.read(A, "value") == 0
        assert await node.status(SESSION) is not None
        assert ("stop", "idle") not in stats.counts()


async def test_timers_do_not_count_as_activity(backend: Backend) -> None:
    """A channel whose only activity is a timer still stops after idle_timeout, saving the
    timer's changes."""
    store = backend.store()
    stats = wes.MemoryStats()
    node = make_node(store, stats=stats, idle_timeout=0.3)
    async with node:
        await node.create_channel(SESSION, [wes.create(T)])
        await node.command(SESSION, "start", "tick", 0.03)
        await wait_until(lambda: stats.counts().get(("stop", "idle"), 0) == 1)
        ticks = stats.counts().get(("timer", "tick"), 0)
        assert ticks >= 2
        saved = await stored(store, "ticker/t")
        assert saved is not None
        assert saved["ticks"]["tick"] >= 2


class Busy(wes.Actor):
    """Logs timer calls and the start and end of an async command."""

    log: ClassVar[list[str]] = []
    entered: ClassVar[asyncio.Event | None] = None
    gate: ClassVar[asyncio.Event | None] = None

    def __init__(self) -> None:
        self.n = 0

    @wes.command
    def start(self, seconds: float) -> None:
        self.set_timer("tick", seconds)

    @wes.command
    async def hold(self) -> None:
        assert Busy.entered is not None and Busy.gate is not None
        Busy.log.append("begin")
        Busy.entered.set()
        await Busy.gate.wait()
        Busy.log.append("end")

    def on_timer(self, name: str) -> None:
        Busy.log.append(name)


async def test_timers_wait_for_a_running_command() -> None:
    """A timer never fires while an async command of its channel is running."""
    Busy.log.clear()
    Busy.entered, Busy.gate = asyncio.Event(), asyncio.Event()
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    node.actor_type("busy", Busy)
    async with node:
        await node.create_channel(SESSION, [wes.create(("busy", "b"))])
        await node.command(SESSION, "start", 0.02)
        await wait_until(lambda: Busy.log.count("tick") >= 1)
        command = asyncio.create_task(node.command(SESSION, "hold"))
        await asyncio.wait_for(Busy.entered.wait(), 5)
        await asyncio.sleep(0.15)
        Busy.gate.set()
        await command
        await wait_until(lambda: Busy.log[-1] == "tick")
    begin, end = Busy.log.index("begin"), Busy.log.index("end")
    assert end == begin + 1, Busy.log
