"""Channel semantics: serial and atomic commands, a raising actor killing its channel unsaved,
unknown commands and dead letters, consistent saves, cancellation and reentrancy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import pytest

import wes
from tests.support import counters
from tests.support.backends import Backend, stored
from tests.support.claims import actor_claim
from tests.support.delegating import DelegatingStore
from tests.support.nodes import OTHER, SESSION, A, B, C, node_of
from wes.abc import Store, Write


class Recording(DelegatingStore):
    """Delegates to a store and records the keys of every batch written."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.batches: list[list[str]] = []

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        self.batches.extend([w.key for w in batch] for batch in batches)
        return await self.inner.write(batches)


class Counter(counters.Counter):
    @wes.command
    def fail(self, exc: BaseException, who: str) -> None:
        self.value += 1000
        if self.id[1] == who:
            raise exc


class Note(wes.Actor):
    def __init__(self) -> None:
        self.text = "note"

    @wes.read
    def show(self) -> str:
        return self.text


class Slow(wes.Actor):
    """Async handlers that yield to the event loop in the middle of a command."""

    events: ClassVar[list[tuple[str, str, int]]] = []
    entered: ClassVar[asyncio.Event | None] = None
    gate: ClassVar[asyncio.Event | None] = None

    def __init__(self) -> None:
        self.phase = "idle"

    @wes.command
    async def work(self, tag: int) -> None:
        Slow.events.append((str(self.id[1]), "start", tag))
        self.phase = "mid"
        await asyncio.sleep(0.005)
        await asyncio.sleep(0)
        Slow.events.append((str(self.id[1]), "end", tag))
        self.phase = "idle"

    @wes.command
    async def gated(self) -> None:
        assert Slow.entered is not None and Slow.gate is not None
        self.phase = "mid"
        Slow.entered.set()
        await Slow.gate.wait()
        self.phase = "done"

    @wes.read
    def show_phase(self) -> str:
        return self.phase


class Loopy(wes.Actor):
    """Its async handler awaits a node operation, on its own channel or another."""

    node: ClassVar[wes.Node | None] = None
    outcomes: ClassVar[list[tuple[str, float]]] = []

    def __init__(self) -> None:
        self.value = 0

    @wes.command
    def incr(self, n: int = 1) -> None:
        self.value += n

    @wes.command
    async def call(self, op: str, channel: tuple[str, str]) -> None:
        node = Loopy.node
        assert node is not None
        ops: dict[str, Callable[[], Awaitable[Any]]] = {
            "command": lambda: node.command(channel, "incr"),
            "read": lambda: node.read(self.id, "value"),
            "read_other": lambda: node.read(("loopy", "y"), "value"),
            "stop_channel": lambda: node.stop_channel(channel),
            "create_actor": lambda: node.create_actor(channel, wes.create(("loopy", "new"))),
            "status": lambda: node.status(channel),
        }
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.wait_for(ops[op](), 3.0)
        except wes.ReentrantCall:
            outcome = "reentrant"
        except TimeoutError:
            outcome = "deadlock"
        else:
            outcome = "ok"
        Loopy.outcomes.append((outcome, loop.time() - started))

    @wes.read("value")
    def current(self) -> int:
        return self.value


make_node = partial(node_of, {"counter": Counter, "note": Note, "slow": Slow, "loopy": Loopy})


# --- a raising actor kills the channel unsaved ----------------------------------------------


@pytest.mark.registries
async def test_raising_actor_kills_the_channel_unsaved(backend: Backend) -> None:
    """When an actor raises, the caller gets that very exception, the channel stops without
    saving, its locks are released, stats count a stop named after the exception, and the next
    start sees the last persisted states."""
    store = backend.store()
    registry = backend.registry()
    stats = wes.MemoryStats()
    node = make_node(store, registry, stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(B, 2)])
        await node.stop_channel(SESSION)
        await node.create_channel(SESSION, [wes.load(A), wes.load(B)])
        await node.command(SESSION, "incr", 10)
        error = ValueError("overdraft")
        with pytest.raises(ValueError) as info:
            await node.command(SESSION, "fail", error, "b")
        assert info.value is error
        assert await node.status(SESSION) is None
        assert await registry.holder("channel", SESSION) is None
        assert await registry.holder("actor", actor_claim(A)) is None
        assert await registry.holder("actor", actor_claim(B)) is None
        assert stats.counts().get(("stop", "ValueError")) == 1
        assert stats.counts().get(("stop", "normal")) == 1  # only the explicit stop above
        assert await stored(store, "counter/a") == {"value": 1}
        assert await stored(store, "counter/b") == {"value": 2}
        with pytest.raises(wes.ActorNotActive):
            await node.read(A, "value")
        with pytest.raises(wes.ChannelNotStarted):
            await node.command(SESSION, "incr")
        await node.create_channel(OTHER, [wes.load(A), wes.load(B)])
        assert await node.read(A, "value") == 1
        assert await node.read(B, "value") == 2


async def test_half_applied_command_is_never_persisted_with_command_durability(
    backend: Backend,
) -> None:
    """Under durability="command" a command that raises midway persists nothing: the store keeps
    the states of the last acknowledged command."""
    store = backend.store()
    node = make_node(store, durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(B, 2)])
        await node.command(SESSION, "incr", 10)
        assert await stored(store, "counter/a") == {"value": 11}
        for who in ("a", "b"):
            await node.ensure_channel(SESSION, [wes.load(A), wes.load(B)])
            with pytest.raises(RuntimeError):
                await node.command(SESSION, "fail", RuntimeError(who), who)
            assert await stored(store, "counter/a") == {"value": 11}
            assert await stored(store, "counter/b") == {"value": 12}


async def test_new_actor_of_a_channel_that_dies_before_saving_leaves_no_trace(
    backend: Backend,
) -> None:
    """A created actor is first written at its channel's next save; if the channel dies before,
    the store holds nothing of it and it can be created again."""
    store = backend.store()
    node = make_node(store)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        assert await store.read(["counter/a"]) == {}
        with pytest.raises(ValueError):
            await node.command(SESSION, "fail", ValueError(), "a")
        assert await store.read(["counter/a"]) == {}
        await node.create_channel(SESSION, [wes.create(A, 5)])
        assert await node.read(A, "value") == 5


# --- leaving a channel ----------------------------------------------------------------------


class Leaver(wes.Actor):
    def __init__(self) -> None:
        self.value = 0

    @wes.command
    def go(self) -> None:
        self.value += 1
        self.leave()


async def test_actors_leaving_together_are_saved_and_all_released() -> None:
    """When every actor of a channel leaves in one command, all are saved and every one of
    their claims is released, so each can join another channel at once."""
    store = wes.MemoryStore()
    registry = wes.MemoryRegistry()
    node = wes.Node(store=store, registry=registry)
    node.actor_type("leaver", Leaver)
    node.channel_type("s")
    async with node:
        actors = [("leaver", n) for n in ("a", "b", "c")]
        await node.create_channel(("s", 1), [wes.create(a) for a in actors])
        await node.command(("s", 1), "go")
        for actor in actors:
            assert await registry.holder("actor", actor_claim(actor)) is None
        saved = await store.read([f"leaver/{n}" for n in "abc"])
        assert [saved[f"leaver/{n}"].data for n in "abc"] == [b'{"value":1}'] * 3
        await node.create_channel(("s", 2), [wes.load(a) for a in actors])
        assert (await node.status(("s", 2))) is not None


# --- unknown commands and dead letters -------------------------------------------------------


async def test_unknown_command_changes_nothing() -> None:
    """A command no actor of a non-empty channel handles raises UnknownCommand naming it, changes
    nothing, and the channel keeps running."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(("note", "n"))])
        with pytest.raises(wes.UnknownCommand, match="nope"):
            await node.command(SESSION, "nope", 1)
        with pytest.raises(wes.UnknownCommand):
            await node.command(SESSION, "current")  # a read is not a command
        assert await node.status(SESSION) is not None
        assert await node.read(A, "value") == 1
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 2
        assert not any(kind == "stop" for kind, _ in stats.counts())
        assert ("dead_letter", "nope") not in stats.counts()


async def test_command_to_an_empty_channel_is_a_dead_letter() -> None:
    """A command to a channel with no actors succeeds and is counted as a dead letter."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    async with node:
        await node.create_channel(SESSION)
        assert await node.command(SESSION, "incr", 1) is None
        assert await node.command(SESSION, "anything") is None
        assert stats.counts().get(("dead_letter", "incr")) == 1
        assert stats.counts().get(("dead_letter", "anything")) == 1
        assert await node.status(SESSION) is not None


# --- consistent saves --------------------------------------------------------------------


async def test_a_channel_saves_all_its_actors_in_one_batch(backend: Backend) -> None:
    """A channel save writes all its changed actors in one atomic batch, on stop and on periodic
    saves."""
    store = Recording(backend.store())
    node = make_node(store, save_interval=0.1)
    keys = {"counter/a", "counter/b", "counter/c"}
    async with node:
        await node.create_channel(SESSION, [wes.create(x) for x in (A, B, C)])
        await node.command(SESSION, "incr", 1)
        deadline = asyncio.get_running_loop().time() + 5
        while not any(keys & set(batch) for batch in store.batches):
            assert asyncio.get_running_loop().time() < deadline, "no periodic save"
            await asyncio.sleep(0.01)
        await node.command(SESSION, "incr", 1)
        await node.stop_channel(SESSION)
    touching = [set(batch) for batch in store.batches if keys & set(batch)]
    assert len(touching) >= 2
    assert all(batch == keys for batch in touching), touching
    async with backend.store() as reopened:
        for key in keys:
            assert await stored(reopened, key) == {"value": 2}


# --- serial execution --------------------------------------------------------------------


async def test_concurrent_async_commands_never_interleave() -> None:
    """Concurrent commands with async handlers run one at a time, each applied to every actor
    before the next starts."""
    Slow.events.clear()
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(("slow", "x")), wes.create(("slow", "y"))])
        await asyncio.gather(*(node.command(SESSION, "work", i) for i in range(6)))
    assert len(Slow.events) == 24
    for i in range(0, 24, 4):
        block = Slow.events[i : i + 4]
        tags = {tag for _, _, tag in block}
        assert len(tags) == 1, Slow.events
        starts_ends = [(actor, what) for actor, what, _ in block]
        assert starts_ends in (
            [("x", "start"), ("x", "end"), ("y", "start"), ("y", "end")],
            [("y", "start"), ("y", "end"), ("x", "start"), ("x", "end")],
        ), Slow.events


async def test_read_waits_for_a_running_command() -> None:
    """A read sent while an async command is mid-way waits its turn and sees the command's end
    state."""
    Slow.entered, Slow.gate = asyncio.Event(), asyncio.Event()
    slow = ("slow", "x")
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(slow)])
        command = asyncio.create_task(node.command(SESSION, "gated"))
        await asyncio.wait_for(Slow.entered.wait(), 5)
        read = asyncio.create_task(node.read(slow, "show_phase"))
        await asyncio.sleep(0.05)
        assert not read.done()
        Slow.gate.set()
        assert await read == "done"
        await command


async def test_cancelling_the_caller_does_not_interrupt_a_running_command() -> None:
    """Cancelling the task awaiting `node.command` lets a running command complete; the channel
    keeps running with the command's full effect."""
    Slow.entered, Slow.gate = asyncio.Event(), asyncio.Event()
    slow = ("slow", "x")
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(slow)])
        caller = asyncio.create_task(node.command(SESSION, "gated"))
        await asyncio.wait_for(Slow.entered.wait(), 5)
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller
        Slow.gate.set()
        assert await node.read(slow, "show_phase") == "done"
        assert await node.status(SESSION) is not None
        assert not any(kind == "stop" for kind, _ in stats.counts())


# --- reentrancy --------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["command", "read", "read_other", "stop_channel", "create_actor"])
async def test_handler_awaiting_its_own_channel_gets_reentrant_call(op: str) -> None:
    """An async handler awaiting an operation on its own channel gets wes.ReentrantCall at once
    instead of deadlocking; the channel keeps running."""
    Loopy.outcomes.clear()
    node = make_node()
    Loopy.node = node
    async with node:
        await node.create_channel(SESSION, [wes.create(("loopy", "x")), wes.create(("loopy", "y"))])
        await node.command(SESSION, "call", op, SESSION)
        assert len(Loopy.outcomes) == 2  # both actors handled "call"
        for outcome, seconds in Loopy.outcomes:
            assert outcome == "reentrant"
            assert seconds < 1.0
        ref = await node.status(SESSION)
        assert ref is not None
        assert set(ref.actors) == {("loopy", "x"), ("loopy", "y")}
        assert await node.read(("loopy", "x"), "value") == 0
    assert issubclass(wes.ReentrantCall, wes.WesError)


async def test_handler_may_await_another_channel() -> None:
    """An async handler awaiting a command on another channel gets it done normally."""
    Loopy.outcomes.clear()
    node = make_node()
    Loopy.node = node
    async with node:
        await node.create_channel(SESSION, [wes.create(("loopy", "x"))])
        await node.create_channel(OTHER, [wes.create(A, 1)])
        await node.command(SESSION, "call", "command", OTHER)
        assert [outcome for outcome, _ in Loopy.outcomes] == ["ok"]
        assert await node.read(A, "value") == 2


class Gated(counters.Counter):
    """A command that waits for the test to open a gate, then finishes or raises."""

    entered: ClassVar[asyncio.Event | None] = None
    gate: ClassVar[asyncio.Event | None] = None

    @wes.command
    async def hold(self, exc: BaseException | None = None) -> None:
        assert Gated.entered is not None and Gated.gate is not None
        self.value += 1
        Gated.entered.set()
        await Gated.gate.wait()
        if exc is not None:
            raise exc
        self.value += 1


def gated_node(store: Store, **kw: Any) -> wes.Node:
    node = make_node(store, **kw)
    node.actor_type("gated", Gated)
    Gated.entered, Gated.gate = asyncio.Event(), asyncio.Event()
    return node


async def test_stop_channel_waits_for_the_running_command(backend: Backend) -> None:
    """`stop_channel` sent during an async command waits for it and saves its full effect."""
    store = backend.store()
    node = gated_node(store)
    g = ("gated", "g")
    async with node:
        await node.create_channel(SESSION, [wes.create(g)])
        command = asyncio.create_task(node.command(SESSION, "hold"))
        assert Gated.entered is not None and Gated.gate is not None
        await asyncio.wait_for(Gated.entered.wait(), 5)
        stop = asyncio.create_task(node.stop_channel(SESSION))
        await asyncio.sleep(0.05)
        assert not stop.done()
        Gated.gate.set()
        await command
        await stop
        assert await stored(store, "gated/g") == {"value": 2}


async def test_commands_queued_behind_a_raising_command_do_not_run(backend: Backend) -> None:
    """Commands waiting their turn behind one that kills the channel fail with ChannelNotStarted
    and are not applied."""
    store = backend.store()
    node = gated_node(store)
    g = ("gated", "g")
    async with node:
        await node.create_channel(SESSION, [wes.create(g)])
        await node.stop_channel(SESSION)
        await node.create_channel(SESSION, [wes.load(g)])
        error = ValueError("late")
        first = asyncio.create_task(node.command(SESSION, "hold", error))
        assert Gated.entered is not None and Gated.gate is not None
        await asyncio.wait_for(Gated.entered.wait(), 5)
        queued = [asyncio.create_task(node.command(SESSION, "incr", 5)) for _ in range(3)]
        await asyncio.sleep(0.02)
        Gated.gate.set()
        with pytest.raises(ValueError) as info:
            await first
        assert info.value is error
        for task in queued:
            with pytest.raises(wes.ChannelNotStarted):
                await task
        assert await stored(store, "gated/g") == {"value": 0}
        await node.create_channel(SESSION, [wes.load(g)])
        assert await node.read(g, "value") == 0


@pytest.mark.registries
async def test_concurrent_create_channel_starts_it_once(backend: Backend) -> None:
    """Of two concurrent `create_channel` calls for one channel, one starts it and the other
    fails with ChannelAlreadyStarted."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(OTHER, [wes.create(A, 3)])
        await node.stop_channel(OTHER)
        results = await asyncio.gather(
            node.create_channel(SESSION, [wes.load(A)]),
            node.create_channel(SESSION, [wes.load(A)]),
            return_exceptions=True,
        )
        refs = [r for r in results if isinstance(r, wes.ChannelRef)]
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(refs) == 1, results
        assert len(errors) == 1 and isinstance(errors[0], wes.ChannelAlreadyStarted), results
        assert await node.read(A, "value") == 3


@pytest.mark.registries
async def test_concurrent_channels_cannot_both_take_an_actor(backend: Backend) -> None:
    """Of two channels started concurrently with the same actor, exactly one gets it; the other
    fails with ActorAlreadyLocked and starts nothing."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(("session", "seed"), [wes.create(A, 3)])
        await node.stop_channel(("session", "seed"))
        results = await asyncio.gather(
            node.create_channel(SESSION, [wes.load(A)]),
            node.create_channel(OTHER, [wes.load(A)]),
            return_exceptions=True,
        )
        refs = [r for r in results if isinstance(r, wes.ChannelRef)]
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(refs) == 1, results
        assert len(errors) == 1 and isinstance(errors[0], wes.ActorAlreadyLocked), results
        loser = OTHER if refs[0].id == SESSION else SESSION
        assert await node.status(loser) is None


@pytest.mark.registries
async def test_concurrent_ensure_channel_yields_one_channel(backend: Backend) -> None:
    """Concurrent `ensure_channel` calls for one channel all succeed and share one channel."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        refs = await asyncio.gather(
            *(node.ensure_channel(SESSION, [wes.load_or_create(A, 1)]) for _ in range(4))
        )
        assert {ref.id for ref in refs} == {SESSION}
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 2
        ref = await node.status(SESSION)
        assert ref is not None and ref.actors == (A,)


class Spawner(wes.Actor):
    """Schedules a command on its own channel without awaiting it."""

    node: ClassVar[wes.Node | None] = None
    spawned: ClassVar[list[asyncio.Task[None]]] = []

    def __init__(self) -> None:
        self.value = 0

    @wes.command
    async def later(self) -> None:
        assert Spawner.node is not None and self.channel is not None
        Spawner.spawned.append(asyncio.create_task(Spawner.node.command(self.channel, "incr")))

    @wes.command
    def incr(self) -> None:
        self.value += 1

    @wes.read("value")
    def current(self) -> int:
        return self.value


async def test_handler_may_schedule_a_command_on_its_own_channel() -> None:
    """A command on its own channel that a handler starts in a task without awaiting it is not
    reentrant: it runs in its turn after the handler's command."""
    Spawner.spawned.clear()
    node = make_node()
    node.actor_type("spawner", Spawner)
    Spawner.node = node
    async with node:
        await node.create_channel(SESSION, [wes.create(("spawner", "s"))])
        await node.command(SESSION, "later")
        [task] = Spawner.spawned
        await asyncio.wait_for(task, 5)
        assert await node.read(("spawner", "s"), "value") == 1


class Relay(Loopy):
    @wes.command
    async def relay(self, target: tuple[str, str], back: tuple[str, str]) -> None:
        node = Loopy.node
        assert node is not None
        await asyncio.wait_for(node.command(target, "call", "command", back), 5.0)


async def test_cycle_through_another_channel_gets_reentrant_call() -> None:
    """A handler of channel 1 awaiting channel 2, whose handler awaits channel 1, gets
    wes.ReentrantCall at once in channel 2's handler instead of a deadlock."""
    Loopy.outcomes.clear()
    node = make_node()
    node.actor_type("relay", Relay)
    Loopy.node = node
    async with node:
        await node.create_channel(SESSION, [wes.create(("relay", "r"))])
        await node.create_channel(OTHER, [wes.create(("loopy", "y"))])
        await node.command(SESSION, "relay", OTHER, SESSION)
        [(outcome, seconds)] = Loopy.outcomes
        assert outcome == "reentrant"
        assert seconds < 1.0
        assert await node.status(SESSION) is not None
        assert await node.status(OTHER) is not None


async def test_cancelling_the_caller_of_a_durable_command_keeps_its_effect(
    backend: Backend,
) -> None:
    """Cancelling the caller of a sync command under durability="command" while it waits for its
    write neither undoes the command nor stops the channel; the write still lands."""
    store = backend.store()
    node = make_node(store, durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        caller = asyncio.create_task(node.command(SESSION, "incr", 5))
        await asyncio.sleep(0)  # the command applies and awaits its write
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while await stored(store, "counter/a") != {"value": 6}:
            assert loop.time() < deadline, "the cancelled caller's command was never stored"
            await asyncio.sleep(0.01)
        assert await node.status(SESSION) is not None
        await node.command(SESSION, "incr")
        assert await stored(store, "counter/a") == {"value": 7}
