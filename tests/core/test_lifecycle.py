"""Lifecycle hooks: `on_activate` after an actor is created or loaded into a channel,
`on_deactivate` before the final save when it leaves normally."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wes
from tests.support.backends import stored
from tests.support.counters import Counter
from tests.support.nodes import node_of
from tests.support.recorder import Recorder
from tests.support.waiting import wait_until

CH = ("session", "s")
A, B = ("counter", "a"), ("counter", "b")


class Hooked(Counter):
    """Records its hooks; re-arms a ticking timer and rebuilds a private cache on activate."""

    def on_activate(self) -> None:
        self.activations = getattr(self, "activations", 0) + 1
        self._cache = f"rebuilt for {self.id[1]} in {self.channel}"
        self.set_timer("tick", 0.01)

    def on_timer(self, name: str) -> None:
        self.ticks = getattr(self, "ticks", 0) + 1

    def on_deactivate(self, reason: str) -> None:
        self.reasons = [*getattr(self, "reasons", []), reason]

    @wes.read("cache")
    def cache(self) -> str:
        return self._cache

    @wes.read("seen")
    def seen(self) -> dict[str, Any]:
        return {"activations": self.activations, "ticks": getattr(self, "ticks", 0)}

    @wes.command
    def go(self) -> None:
        self.leave()

    @wes.command
    def fail(self) -> None:
        raise ValueError("refused")


class Picky(Counter):
    """on_activate refuses an actor whose value is negative."""

    def on_activate(self) -> None:
        self.set_timer("never", 0.01)
        if self.value < 0:
            raise ValueError(f"negative value {self.value}")

    def on_timer(self, name: str) -> None:
        raise AssertionError("a timer of an actor that never started fired")


class AsyncHooked(Counter):
    async def on_activate(self) -> None:
        await asyncio.sleep(0)
        self.ready = True

    async def on_deactivate(self, reason: str) -> None:
        await asyncio.sleep(0)
        self.value += 100


class BadExit(Counter):
    def on_deactivate(self, reason: str) -> None:
        self.value = -1
        raise RuntimeError("cannot leave")


def make_node(store: wes.abc.Store, stats: wes.abc.Stats | None = None) -> wes.Node:
    actors = {"counter": Hooked, "picky": Picky, "async": AsyncHooked, "bad": BadExit}
    node = node_of(actors, store, stats=stats)
    node.channel_type("idle", idle_timeout=0.05, save_interval=None)
    return node


async def test_on_activate_runs_on_create_and_on_load_and_rebuilds_private_state() -> None:
    """on_activate runs after create and after a load, in the channel, where it rebuilds an
    attribute that is not stored."""
    store = wes.MemoryStore()
    async with make_node(store) as node:
        await node.create_channel(CH, wes.create(A, 1))
        assert await node.read(A, "cache") == "rebuilt for a in ('session', 's')"
    assert (await stored(store, "counter/a") or {})["activations"] == 1
    async with make_node(store) as node:
        await node.create_channel(("session", "t"), wes.load(A))
        assert await node.read(A, "cache") == "rebuilt for a in ('session', 't')"
        assert (await node.read(A, "seen"))["activations"] == 2


async def test_timer_set_in_on_activate_runs_after_a_restart() -> None:
    """A timer armed in on_activate fires again after the actor is loaded by a new node."""
    store = wes.MemoryStore()
    async with make_node(store) as node:
        await node.create_channel(CH, wes.create(A))
    async with make_node(store) as node:
        await node.create_channel(CH, wes.load(A))
        ticks: list[int] = []

        async def ticked() -> bool:
            ticks.append((await node.read(A, "seen"))["ticks"])
            return ticks[-1] >= 2

        for _ in range(500):
            if await ticked():
                break
            await asyncio.sleep(0.01)
        assert ticks[-1] >= 2


@pytest.mark.parametrize("into", ["new channel", "running channel"])
async def test_exception_in_on_activate_fails_the_spec_and_starts_nothing(into: str) -> None:
    """An exception in on_activate reaches the caller; no channel or actor starts, its claim
    is released (it can be tried again) and none of its timers fire."""
    stats = wes.MemoryStats()
    async with make_node(wes.MemoryStore(), stats) as node:
        if into == "running channel":
            await node.create_channel(CH, wes.create(A))
            with pytest.raises(ValueError, match="negative value -1") as info:
                await node.create_actor(CH, wes.create(("picky", "p"), -1))
            ref = await node.status(CH)
            assert ref is not None and ref.actors == (A,)
        else:
            with pytest.raises(ValueError, match="negative value -1") as info:
                await node.create_channel(CH, [wes.create(("picky", "p"), -1), wes.create(A)])
            assert await node.status(CH) is None
            with pytest.raises(wes.ActorNotActive):
                await node.read(A, "value")
        notes = getattr(info.value, "__notes__", [])
        assert any("on_activate of actor ('picky', 'p')" in note for note in notes)
        await asyncio.sleep(0.05)  # the refused actor's timer would have fired by now
        assert not [key for key in stats.counts() if key[0] == "stop"]
        await node.ensure_channel(("session", "again"), wes.create(("picky", "p"), 1))
        assert stats.counts().get(("start", "actor"), 0) == (2 if into == "running channel" else 1)


async def test_channel_refused_by_on_activate_never_wakes() -> None:
    """A channel whose start failed in on_activate is never woken by the timer its hook set:
    no idle stop, no timer, no event of a channel that never started."""
    stats = wes.MemoryStats()
    async with make_node(wes.MemoryStore(), stats) as node:
        with pytest.raises(ValueError):
            await node.create_channel(("idle", "x"), wes.create(("picky", "p"), -1))
        await asyncio.sleep(0.2)  # past the hook's timer and the channel type's idle timeout
        assert not [key for key in stats.counts() if key[0] in ("stop", "timer", "start")]


class Restless(Counter):
    """Asks, from on_activate, to leave its channel or to stop it."""

    def on_activate(self) -> None:
        if self.value == 1:
            self.leave()
        else:
            self.stop_channel()


@pytest.mark.parametrize("into", ["new channel", "running channel"])
@pytest.mark.parametrize("request_", ["leave", "stop"])
async def test_leave_or_stop_asked_in_on_activate_happens_after_activation(
    into: str, request_: str
) -> None:
    """stop_channel() or leave() called in on_activate take effect once the actor joined:
    the channel stops normally (saving), or the actor leaves it saved."""
    store = wes.MemoryStore()
    node = make_node(store)
    node.actor_type("restless", Restless)
    async with node:
        spec = wes.create(("restless", "r"), 1 if request_ == "leave" else 2)
        if into == "running channel":
            await node.create_channel(CH, wes.create(A))
            await node.create_actor(CH, spec)
        else:
            await node.create_channel(CH, spec)
        ref = await node.status(CH)
        if request_ == "stop":
            assert ref is None
        else:
            assert ref is not None and ("restless", "r") not in ref.actors
        assert node.live_actors == (1 if into == "running channel" and ref else 0)
    assert await stored(store, "restless/r") == {"value": 1 if request_ == "leave" else 2}


@pytest.mark.parametrize(
    ("how", "reason"),
    [("stop_channel", "normal"), ("node exit", "normal"), ("idle", "idle"), ("leave", "leave")],
)
async def test_on_deactivate_runs_before_the_final_save_with_its_reason(
    how: str, reason: str
) -> None:
    """on_deactivate gets the reason of a normal stop, and what it changes is saved."""
    store = wes.MemoryStore()
    channel = ("idle", "i") if how == "idle" else CH
    async with make_node(store) as node:
        await node.create_channel(channel, wes.create(A))
        if how == "stop_channel":
            await node.stop_channel(channel)
        elif how == "idle":
            await wait_until(lambda: node.live_channels == 0)
        elif how == "leave":
            await node.command(channel, "go")
            assert (await node.status(channel)) is not None
    assert (await stored(store, "counter/a") or {})["reasons"] == [reason]


@pytest.mark.parametrize("how", ["command raises", "lease lost"])
async def test_on_deactivate_is_not_called_when_the_channel_dies(how: str) -> None:
    """A channel that dies by an exception or a lost lease calls no on_deactivate."""
    store = wes.MemoryStore()
    stats = wes.MemoryStats()
    async with make_node(store, stats) as node:
        await node.create_channel(CH, wes.create(A))
        await node.stop_channel(CH)
        await node.create_channel(CH, wes.load(A))
        if how == "command raises":
            with pytest.raises(ValueError):
                await node.command(CH, "fail")
        else:
            ch = node._channels[CH]
            ch.lease_until = node._rt.now()  # as if the renewals had failed until now
            await node._rt.leases.sweep()
            await wait_until(lambda: stats.counts().get(("stop", "lease_lost"), 0) == 1)
        assert await node.status(CH) is None
    assert (await stored(store, "counter/a") or {})["reasons"] == ["normal"]


async def test_async_hooks_are_awaited_in_the_turn() -> None:
    """`async def` hooks are awaited; an async on_deactivate's change is saved."""
    store = wes.MemoryStore()
    async with make_node(store) as node:
        await node.create_channel(CH, wes.create(("async", "x"), 1))
        await node.stop_channel(CH)
    assert await stored(store, "async/x") == {"value": 101, "ready": True}


async def test_exception_in_on_deactivate_kills_the_channel_unsaved() -> None:
    """An on_deactivate that raises is the actor's exception: the caller gets it, the
    channel stops without saving what the hook changed."""
    store = wes.MemoryStore()
    stats = wes.MemoryStats()
    async with make_node(store, stats) as node:
        await node.create_channel(CH, wes.create(("bad", "x"), 3))
        await node.command(CH, "incr", 1)  # unsaved: save_interval is None
        with pytest.raises(RuntimeError, match="cannot leave"):
            await node.stop_channel(CH)
        assert await node.status(CH) is None
        assert stats.counts()[("stop", "RuntimeError")] == 1
    assert await stored(store, "bad/x") is None


async def test_a_lease_lost_is_counted_even_if_its_release_is_cancelled_before_it_starts() -> None:
    """A channel that loses its lease stops at once and its claims are released by a task;
    its ("stop", "lease_lost") is counted when that task ends, even if the node's close
    cancels it before its first step (a coroutine's `finally` would never run then)."""
    stats = Recorder()
    node = node_of({"counter": Counter}, stats=stats)
    async with node:
        await node.create_channel(("session", 1), wes.create(("counter", 1)))
        ch = node._channels[("session", 1)]
        before = set(node._rt.tasks)
        ch.crash_later(wes.LeaseLost("lease ran out"), lease_lost=True)
        [release] = set(node._rt.tasks) - before
        release.cancel()  # before it ever ran, as a close right now would
    assert stats.count("stop", "lease_lost") == 1
