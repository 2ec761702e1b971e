"""Actors: handler decorators and naming, broadcast, handler context, async handlers,
`stop_channel()` and `leave()` from handlers, and the persistence hooks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, ClassVar

import pytest

import wes
from tests.support import counters
from tests.support.backends import Backend, stored
from tests.support.claims import actor_claim
from tests.support.nodes import OTHER, SESSION, A, B, node_of
from wes.abc import Record, Write


class Counter(counters.Counter):
    @wes.command("stop")
    def stop_now(self) -> None:
        self.value += 100
        self.stop_channel()

    @wes.command("leave")
    def leave_if(self, name: str) -> None:
        if self.id[1] == name:
            self.value += 10
            self.leave()

    @wes.command
    def answer(self) -> int:
        return 42

    @wes.read
    def where(self) -> tuple[Any, Any]:
        return (self.id, self.channel)

    @wes.read
    def plus(self, n: int, *, times: int = 1) -> int:
        return self.value + n * times


class Note(wes.Actor):
    """An actor without an `incr` handler."""

    def __init__(self, text: str = "") -> None:
        self.text = text

    @wes.read
    def show(self) -> str:
        return self.text


class Doubler(Counter):
    """Inherits every handler of Counter and adds one."""

    @wes.command
    def double(self) -> None:
        self.value *= 2


class Slow(wes.Actor):
    def __init__(self) -> None:
        self.steps: list[str] = []

    @wes.command
    async def work(self, tag: str) -> None:
        await asyncio.sleep(0.01)
        self.steps.append(tag)

    @wes.command
    async def fail_later(self, exc: BaseException) -> None:
        await asyncio.sleep(0.01)
        raise exc

    @wes.read
    def show(self) -> list[str]:
        return list(self.steps)


make_node = partial(node_of, {"counter": Counter, "note": Note, "doubler": Doubler, "slow": Slow})


# --- decorators and naming ---------------------------------------------------------------


async def test_bare_command_is_named_after_the_function() -> None:
    """A bare `@wes.command` handler is reached by its function name."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr", 2)
        assert await node.read(A, "value") == 2


async def test_named_command_uses_the_given_name_only() -> None:
    """`@wes.command("stop")` is reached as "stop" and not by its function name."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.UnknownCommand):
            await node.command(SESSION, "stop_now")
        assert await node.read(A, "value") == 0
        await node.command(SESSION, "stop")
        assert await node.status(SESSION) is None


async def test_bare_read_is_named_after_the_function() -> None:
    """A bare `@wes.read` handler is reached by its function name."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        assert await node.read(A, "where") == (A, SESSION)


async def test_named_read_uses_the_given_name_only() -> None:
    """`@wes.read("value")` is reached as "value" and not by its function name."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 7)])
        assert await node.read(A, "value") == 7
        with pytest.raises(wes.UnknownRead):
            await node.read(A, "current")


async def test_read_handlers_get_positional_and_keyword_arguments() -> None:
    """`node.read` passes its extra arguments to the read handler."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        assert await node.read(A, "plus", 2, times=3) == 7


async def test_command_handlers_get_positional_and_keyword_arguments() -> None:
    """`node.command` passes its extra arguments to every handler."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr", n=5)
        await node.command(SESSION, "incr", 2)
        assert await node.read(A, "value") == 7


async def test_command_return_value_is_ignored() -> None:
    """`node.command` returns None whatever the handler returns."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        assert await node.command(SESSION, "answer") is None


async def test_id_and_channel_are_available_in_handlers() -> None:
    """Inside handlers `self.id` is the actor tuple and `self.channel` the channel tuple."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A), wes.create(("counter", 3))])
        assert await node.read(A, "where") == (("counter", "a"), ("session", "s1"))
        assert await node.read(("counter", 3), "where") == (("counter", 3), ("session", "s1"))


async def test_create_passes_its_arguments_to_init() -> None:
    """`wes.create(actor, *args)` builds the actor with `__init__(*args)`."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 41), wes.create(("note", "n"), "hi")])
        assert await node.read(A, "value") == 41
        assert await node.read(("note", "n"), "show") == "hi"


async def test_subclass_inherits_handlers() -> None:
    """An actor subclass handles its base class's commands and reads as well as its own."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(("doubler", "d"), 3)])
        await node.command(SESSION, "incr", 2)
        await node.command(SESSION, "double")
        assert await node.read(("doubler", "d"), "value") == 10


# --- broadcast ---------------------------------------------------------------------------


async def test_command_is_broadcast_to_every_actor() -> None:
    """A command reaches every actor of the channel that handles it."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(B, 10)])
        await node.command(SESSION, "incr", 5)
        assert await node.read(A, "value") == 6
        assert await node.read(B, "value") == 15


async def test_actor_without_handler_ignores_the_command() -> None:
    """An actor with no handler for a broadcast command ignores it; the others handle it."""
    note = ("note", "n")
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(note, "keep"), wes.create(A)])
        await node.command(SESSION, "incr", 3)
        assert await node.read(note, "show") == "keep"
        assert await node.read(A, "value") == 3
        assert await node.status(SESSION) is not None


# --- async handlers ----------------------------------------------------------------------


async def test_async_command_handlers_are_awaited() -> None:
    """An `async def` command handler has finished when `node.command` returns."""
    slow = ("slow", "x")
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(slow)])
        await node.command(SESSION, "work", "one")
        assert await node.read(slow, "show") == ["one"]


async def test_async_handler_exception_reaches_caller_and_kills_channel() -> None:
    """An exception raised by an async handler after an await kills the channel and reaches
    the caller unchanged."""
    slow = ("slow", "x")
    error = KeyError("boom")
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(slow)])
        with pytest.raises(KeyError) as info:
            await node.command(SESSION, "fail_later", error)
        assert info.value is error
        assert await node.status(SESSION) is None


# --- stop_channel() and leave() from handlers ----------------------------------------------


@pytest.mark.registries
async def test_stop_channel_from_handler_stops_normally_after_the_command(
    backend: Backend,
) -> None:
    """`self.stop_channel()` stops the channel once the command is done: saved, released."""
    store = backend.store()
    stats = wes.MemoryStats()
    registry = backend.registry()
    node = make_node(store, stats=stats, registry=registry)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "stop")
        assert await node.status(SESSION) is None
        assert await stored(store, "counter/a") == {"value": 101}
        assert stats.counts().get(("stop", "normal")) == 1
        assert await registry.holder("channel", SESSION) is None
        assert await registry.holder("actor", actor_claim(A)) is None
        with pytest.raises(wes.ActorNotActive):
            await node.read(A, "value")
        with pytest.raises(wes.ChannelNotStarted):
            await node.command(SESSION, "incr")


@pytest.mark.registries
async def test_leave_saves_and_leaves_the_channel(backend: Backend) -> None:
    """`self.leave()` saves the channel's actors and takes the actor out once the command is done;
    the rest of the channel keeps running and the actor can join another channel."""
    store = backend.store()
    registry = backend.registry()
    node = make_node(store, registry=registry)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(B, 2)])
        await node.command(SESSION, "leave", "a")
        with pytest.raises(wes.ActorNotActive):
            await node.read(A, "value")
        assert await stored(store, "counter/a") == {"value": 11}
        assert await stored(store, "counter/b") == {"value": 2}
        ref = await node.status(SESSION)
        assert ref is not None
        assert ref.actors == (B,)
        assert await registry.holder("actor", actor_claim(A)) is None
        await node.command(SESSION, "incr")
        assert await node.read(B, "value") == 3
        await node.create_channel(OTHER, [wes.load(A)])
        assert await node.read(A, "value") == 11


# --- persistence hooks -------------------------------------------------------------------


async def test_default_key_is_type_slash_name(backend: Backend) -> None:
    """Without a `key` override an actor is stored under f"{actor_type}/{name}", int names too."""
    store = backend.store()
    node = make_node(store)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(("counter", 7), 2)])
        await node.stop_channel(SESSION)
        assert await stored(store, "counter/a") == {"value": 1}
        assert await stored(store, "counter/7") == {"value": 2}


class Keyed(Counter):
    @classmethod
    def key(cls, name: str | int) -> str:
        return f"custom:{name}"


async def test_key_override_sets_the_storage_key(backend: Backend) -> None:
    """A `key` classmethod override decides the storage key, for saving and for loading."""
    store = backend.store()
    node = make_node(store)
    node.actor_type("keyed", Keyed)
    async with node:
        await node.create_channel(SESSION, [wes.create(("keyed", "k"), 5)])
        await node.stop_channel(SESSION)
        assert await stored(store, "custom:k") == {"value": 5}
        assert await stored(store, "keyed/k") is None
        await node.create_channel(SESSION, [wes.load(("keyed", "k"))])
        assert await node.read(("keyed", "k"), "value") == 5


class Private(Counter):
    def __init__(self, start: int = 0) -> None:
        super().__init__(start)
        self._scratch = "not saved"

    @wes.read
    def scratch(self) -> str | None:
        return getattr(self, "_scratch", None)


async def test_default_to_state_saves_public_attributes_only(backend: Backend) -> None:
    """The default `to_state` stores the instance's public attributes, not `_private` ones."""
    store = backend.store()
    node = make_node(store)
    node.actor_type("private", Private)
    async with node:
        await node.create_channel(SESSION, [wes.create(("private", "p"), 4)])
        await node.stop_channel(SESSION)
        assert await stored(store, "private/p") == {"value": 4}


class Counted(Counter):
    inits: ClassVar[list[int]] = []

    def __init__(self, start: int = 0) -> None:
        Counted.inits.append(start)
        super().__init__(start)


async def test_default_from_state_restores_without_calling_init(backend: Backend) -> None:
    """The default `from_state` restores the attributes without running `__init__`."""
    Counted.inits.clear()
    store = backend.store()
    node = make_node(store)
    node.actor_type("counted", Counted)
    async with node:
        await node.create_channel(SESSION, [wes.create(("counted", "c"), 3)])
        await node.command(SESSION, "incr", 4)
        await node.stop_channel(SESSION)
        assert Counted.inits == [3]
        await node.create_channel(SESSION, [wes.load(("counted", "c"))])
        assert await node.read(("counted", "c"), "value") == 7
        assert Counted.inits == [3]


class Custom(wes.Actor):
    def __init__(self) -> None:
        self.items: set[str] = set()

    @wes.command
    def add(self, item: str) -> None:
        self.items.add(item)

    @wes.read
    def show(self) -> list[str]:
        return sorted(self.items)

    def to_state(self) -> dict[str, Any]:
        return {"items": sorted(self.items)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Custom:
        actor = cls()
        actor.items = set(state["items"])
        return actor


async def test_custom_to_state_and_from_state_round_trip(backend: Backend) -> None:
    """Overridden `to_state`/`from_state` decide what is stored and how it is restored."""
    store = backend.store()
    node = make_node(store)
    node.actor_type("custom", Custom)
    async with node:
        await node.create_channel(SESSION, [wes.create(("custom", "c"))])
        await node.command(SESSION, "add", "y")
        await node.command(SESSION, "add", "x")
        await node.stop_channel(SESSION)
        assert await stored(store, "custom/c") == {"items": ["x", "y"]}
        await node.create_channel(SESSION, [wes.load(("custom", "c"))])
        assert await node.read(("custom", "c"), "show") == ["x", "y"]


class Ephemeral(Counter):
    def should_save(self) -> bool:
        return self.value < 100


async def test_should_save_false_skips_the_save(backend: Backend) -> None:
    """An actor whose `should_save` returns False is not written; its channel mates are."""
    store = backend.store()
    node = make_node(store)
    node.actor_type("ephemeral", Ephemeral)
    async with node:
        await node.create_channel(SESSION, [wes.create(("ephemeral", "e"), 5), wes.create(A)])
        await node.command(SESSION, "incr", 200)
        await node.stop_channel(SESSION)
        assert await stored(store, "ephemeral/e") is None
        assert await stored(store, "counter/a") == {"value": 200}


async def test_should_save_true_saves(backend: Backend) -> None:
    """An actor whose `should_save` returns True is written on stop."""
    store = backend.store()
    node = make_node(store)
    node.actor_type("ephemeral", Ephemeral)
    async with node:
        await node.create_channel(SESSION, [wes.create(("ephemeral", "e"), 5)])
        await node.stop_channel(SESSION)
        assert await stored(store, "ephemeral/e") == {"value": 5}


class Amount(wes.Actor):
    """Version 2 of a counter whose version 1 stored {"value": n}."""

    version = 2
    migrations: ClassVar[list[tuple[dict[str, Any], int]]] = []

    def __init__(self) -> None:
        self.amount = 0

    @classmethod
    def migrate(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        cls.migrations.append((dict(state), from_version))
        return {"amount": state["value"]}

    @wes.command
    def incr(self, n: int = 1) -> None:
        self.amount += n

    @wes.read
    def show(self) -> int:
        return self.amount


async def test_older_stored_version_is_migrated(backend: Backend) -> None:
    """A state stored by an older class version goes through `migrate` and is then saved at the
    class's current version."""
    Amount.migrations.clear()
    store = backend.store()
    data = wes.JsonCodec().encode({"value": 9})
    assert await store.write([[Write("amount/m", data, 1, 1)]]) == [None]
    node = make_node(store)
    node.actor_type("amount", Amount)
    async with node:
        await node.create_channel(SESSION, [wes.load(("amount", "m"))])
        assert Amount.migrations == [({"value": 9}, 1)]
        assert await node.read(("amount", "m"), "show") == 9
        await node.command(SESSION, "incr")
        await node.stop_channel(SESSION)
        record = (await store.read(["amount/m"]))["amount/m"]
        assert record.version == 2
        assert wes.JsonCodec().decode(record.data) == {"amount": 10}


async def test_current_stored_version_is_not_migrated(backend: Backend) -> None:
    """A state stored at the class's current version is loaded without `migrate`."""
    Amount.migrations.clear()
    store = backend.store()
    data = wes.JsonCodec().encode({"amount": 4})
    assert await store.write([[Write("amount/m", data, 2, 1)]]) == [None]
    node = make_node(store)
    node.actor_type("amount", Amount)
    async with node:
        await node.create_channel(SESSION, [wes.load(("amount", "m"))])
        assert await node.read(("amount", "m"), "show") == 4
        assert Amount.migrations == []


async def test_default_version_is_one(backend: Backend) -> None:
    """An actor class without `version` saves its states as version 1."""
    store = backend.store()
    node = make_node(store)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.stop_channel(SESSION)
        assert (await store.read(["counter/a"]))["counter/a"].version == 1
    assert Counter.version == 1


async def test_every_actor_may_leave_and_the_channel_keeps_running(backend: Backend) -> None:
    """When every actor leaves, the channel keeps running with no actors."""
    store = backend.store()
    stats = wes.MemoryStats()
    node = make_node(store, stats=stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "leave", "a")
        ref = await node.status(SESSION)
        assert ref is not None and ref.actors == ()
        assert await stored(store, "counter/a") == {"value": 11}
        await node.command(SESSION, "incr")
        assert stats.counts().get(("dead_letter", "incr")) == 1


async def test_loaded_actor_sees_its_id_and_channel(backend: Backend) -> None:
    """An actor restored from the store has `self.id` and `self.channel` of its new channel."""
    node = make_node(backend.store())
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.stop_channel(SESSION)
        await node.create_channel(OTHER, [wes.load(A)])
        assert await node.read(A, "where") == (A, OTHER)


class Named(wes.Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @wes.command("set")
    def set_(self, *, name: str, channel: str) -> None:
        self.seen = [name, channel]

    @wes.read("get")
    def get(self, *, actor: str, name: str) -> list[Any]:
        return [*self.seen, actor, name]


async def test_handlers_may_take_keywords_named_like_the_operations_parameters() -> None:
    """Keyword arguments called `name`, `channel` or `actor` reach the handlers."""
    node = make_node()
    node.actor_type("named", Named)
    async with node:
        await node.create_channel(SESSION, [wes.create(("named", "n"))])
        await node.command(SESSION, "set", name="x", channel="y")
        assert await node.read(("named", "n"), "get", actor="z", name="w") == ["x", "y", "z", "w"]


# -- names that would replace a member of wes.Actor ---------------------------------------


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("@wes.command\ndef leave(self, who): ...", "would replace wes.Actor.leave (a method)"),
        ("@wes.read\ndef channel(self): ...", "wes.Actor.channel (a property)"),
        ("@wes.command\ndef on_timer(self, name): ...", "@wes.command('on_timer')"),
        ("set_timer = 5", "attribute 'set_timer' would replace wes.Actor.set_timer"),
        ("def stop_channel(self): ...", "wes.Actor.stop_channel"),
        ("_wes_id = None", "wes.Actor._wes_id"),
    ],
)
def test_class_member_clashing_with_actor_is_refused_at_definition(source: str, says: str) -> None:
    """A handler method named like a member of wes.Actor, or a class attribute replacing a
    fixed member, fails with InvalidName when the class is defined, saying what clashes."""
    body = "\n".join(f"    {line}" for line in source.splitlines())
    with pytest.raises(wes.InvalidName, match=re.escape(says)):
        exec(f"class Clash(wes.Actor):\n{body}\n", {"wes": wes})


def test_handler_named_like_a_member_can_keep_the_name_as_its_command() -> None:
    """`@wes.command("leave")` on another method is fine, and overriding hooks unmarked is."""

    class Fine(wes.Actor):
        version = 2
        expected_errors = (ValueError,)

        @wes.command("leave")
        def leave_now(self) -> None:
            self.leave()

        def on_timer(self, name: str) -> None:
            pass

    assert set(Fine._wes_commands) == {"leave"}


@pytest.mark.parametrize("attr", ["channel", "id"])
def test_assigning_a_property_of_actor_names_the_clash(attr: str) -> None:
    """`self.channel = ...` in __init__ fails with InvalidName, not a bare AttributeError."""

    class Room(wes.Actor):
        def __init__(self) -> None:
            setattr(self, attr, "lobby")

    with pytest.raises(wes.InvalidName, match=f"Room attribute '{attr}'.*rename it"):
        Room()


@pytest.mark.parametrize("attr", ["leave", "stop_channel", "set_timer", "cancel_timer"])
async def test_instance_attribute_hiding_an_actor_method_fails_the_spec(attr: str) -> None:
    """An attribute set in __init__ that would hide a method of wes.Actor fails at the
    assignment with InvalidName, so the create spec fails and nothing starts."""

    class Hiding(wes.Actor):
        def __init__(self) -> None:
            setattr(self, attr, True)

    node = wes.Node(store=wes.MemoryStore())
    node.actor_type("hiding", Hiding)
    node.channel_type("session")
    async with node:
        with pytest.raises(wes.InvalidName, match=f"Hiding attribute '{attr}'"):
            await node.create_channel(SESSION, wes.create(("hiding", "h")))
        assert await node.status(SESSION) is None


async def node_over_record(data: bytes, cls: type[wes.Actor]) -> wes.Node:
    """A node whose store holds `data` (version 1) at "counter/a", with `cls` as "counter"
    and a "session" channel type."""
    store = wes.MemoryStore()
    await store.write([[Write("counter/a", data, 1, 1)]])
    node = wes.Node(store=store)
    node.actor_type("counter", cls)
    node.channel_type("session")
    return node


async def test_stored_state_named_like_an_actor_method_does_not_hide_it() -> None:
    """A stored state with a key named like a method of wes.Actor loads, and the method
    still works (the stored value is only data)."""
    node = await node_over_record(b'{"value": 1, "stop_channel": 2}', Counter)
    async with node:
        await node.create_channel(SESSION, wes.load(A))
        await node.command(SESSION, "stop")  # calls self.stop_channel()
        assert await node.status(SESSION) is None


def test_fixed_methods_keep_their_docs() -> None:
    """Actor's fixed methods read as plain methods on the class."""
    assert "leaves" in (wes.Actor.leave.__doc__ or "")
    assert callable(wes.Actor.set_timer)


# -- node.stored -------------------------------------------------------------------------


class Versioned(counters.Counter):
    version = 2

    @classmethod
    def migrate(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        return {"value": state["old"] * 10}

    def on_activate(self) -> None:
        raise AssertionError("stored() must not activate")


async def test_stored_returns_the_decoded_migrated_actor_without_activating_it() -> None:
    """node.stored gives the actor as the store holds it (migrated), not activated: no
    claim, no channel, no hooks; the actor can be loaded afterwards by anyone."""
    node = await node_over_record(b'{"old": 4}', Versioned)
    async with node:
        actor = await node.stored(A)
        assert isinstance(actor, Versioned)
        assert actor.value == 40 and actor.id == A and actor.channel is None
        assert await node.stored(("counter", "missing")) is None
        assert node.live_actors == 0


async def test_stored_does_not_see_unsaved_changes_of_the_active_actor() -> None:
    """stored reads the store, not the live actor: unsaved changes are not in it."""
    node = wes.Node(store=wes.MemoryStore())
    node.actor_type("counter", counters.Counter)
    node.channel_type("session", save_interval=None)
    async with node:
        await node.create_channel(SESSION, wes.create(A, 1))
        assert await node.stored(A) is None  # created, not yet saved
        await node.stop_channel(SESSION)
        await node.create_channel(SESSION, wes.load(A))
        await node.command(SESSION, "incr", 5)
        stored_actor = await node.stored(A)
        assert isinstance(stored_actor, counters.Counter) and stored_actor.value == 1


async def test_stored_errors_name_what_was_wrong() -> None:
    """stored raises StateNotLoadable for bad bytes, UnknownActorType, InvalidId, and
    NodeNotRunning outside `async with`."""
    node = await node_over_record(b"not json", counters.Counter)
    with pytest.raises(wes.NodeNotRunning):
        await node.stored(A)
    async with node:
        with pytest.raises(wes.StateNotLoadable, match="counter/a"):
            await node.stored(A)
        with pytest.raises(wes.UnknownActorType):
            await node.stored(("nope", 1))
        with pytest.raises(wes.InvalidId):
            await node.stored("counter/a")  # type: ignore[arg-type]


class Broken(wes.abc.Store):
    async def read(self, keys: Any) -> Any:
        raise OSError("disk gone")

    async def write(self, batches: Any) -> Any:
        raise OSError("disk gone")

    def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        raise OSError("disk gone")


async def test_stored_with_a_failing_store_is_store_unavailable() -> None:
    """A store that fails makes stored raise StoreUnavailable with the cause chained."""
    node = wes.Node(store=Broken())
    node.actor_type("counter", counters.Counter)
    async with node:
        with pytest.raises(wes.StoreUnavailable) as info:
            await node.stored(A)
        assert isinstance(info.value.__cause__, OSError)
