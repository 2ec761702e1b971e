"""Bad input gets a clear WesError subclass naming what was wrong, and loses nothing: unknown
types, malformed ids, names and specs, bad channel configuration, and stored states that
cannot be decoded or migrated."""

from __future__ import annotations

import pickle
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest

import wes
from tests.support.backends import Backend
from tests.support.claims import actor_claim
from tests.support.counters import Counter
from tests.support.nodes import SESSION, A, B, node_of
from wes.abc import Record, Write

BAD_IDS: list[Any] = ["x", ("a",), (1, "a"), ("a", 1.5), ["a", "b"], ("a", "b", "c"), None]


class Cause(Exception):
    pass


class Versioned(Counter):
    version = 3

    @classmethod
    def migrate(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        if from_version == 1:
            raise Cause("cannot migrate from 1")
        return state


make_node = partial(node_of, {"counter": Counter, "versioned": Versioned})


def names(message: str, bad: Any) -> bool:
    """Whether an error message shows the offending value."""
    return repr(bad) in message or (isinstance(bad, str) and bad in message)


# --- unknown types -----------------------------------------------------------------------


CHANNEL_OPS: dict[str, Callable[[wes.Node, Any], Awaitable[Any]]] = {
    "create_channel": lambda node, ch: node.create_channel(ch),
    "ensure_channel": lambda node, ch: node.ensure_channel(ch),
    "create_actor": lambda node, ch: node.create_actor(ch, []),
    "ensure_actor": lambda node, ch: node.ensure_actor(ch, []),
    "status": lambda node, ch: node.status(ch),
    "stop_channel": lambda node, ch: node.stop_channel(ch),
    "command": lambda node, ch: node.command(ch, "incr"),
}


@pytest.mark.parametrize("op", sorted(CHANNEL_OPS))
async def test_unconfigured_channel_type_is_refused(op: str) -> None:
    """Every channel operation refuses a channel type never registered with UnknownChannelType
    naming it."""
    node = make_node()
    async with node:
        with pytest.raises(wes.UnknownChannelType, match="lobby"):
            await CHANNEL_OPS[op](node, ("lobby", "x"))


async def test_unconfigured_actor_type_in_a_spec_is_refused() -> None:
    """A spec for an actor type never registered fails with UnknownActorType naming it, and
    starts nothing."""
    registry = wes.MemoryRegistry()
    node = make_node(registry=registry)
    async with node:
        with pytest.raises(wes.UnknownActorType, match="ghost"):
            await node.create_channel(SESSION, [wes.create(A), wes.create(("ghost", "g"))])
        assert await node.status(SESSION) is None
        assert await registry.holder("actor", actor_claim(A)) is None
        await node.create_channel(SESSION)
        with pytest.raises(wes.UnknownActorType, match="ghost"):
            await node.create_actor(SESSION, wes.load(("ghost", "g")))


async def test_read_of_an_unconfigured_actor_type_is_refused() -> None:
    """A read of an actor whose type was never registered fails with UnknownActorType."""
    node = make_node()
    async with node:
        with pytest.raises(wes.UnknownActorType, match="ghost"):
            await node.read(("ghost", "g"), "value")


# --- malformed ids -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("op", sorted(CHANNEL_OPS))
async def test_malformed_channel_id_is_refused(op: str, bad: Any) -> None:
    """A channel id that is not a (str, str | int) tuple fails with InvalidId showing it."""
    node = make_node()
    async with node:
        with pytest.raises(wes.InvalidId) as info:
            await CHANNEL_OPS[op](node, bad)
        assert names(str(info.value), bad), str(info.value)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("spec", ["create", "load", "load_or_create"])
async def test_malformed_actor_id_in_a_spec_is_refused(spec: str, bad: Any) -> None:
    """A spec whose actor id is not a (str, str | int) tuple fails with InvalidId showing it and
    starts nothing."""
    node = make_node()
    async with node:
        with pytest.raises(wes.InvalidId) as info:
            await node.create_channel(SESSION, [getattr(wes, spec)(bad)])
        assert names(str(info.value), bad), str(info.value)
        assert await node.status(SESSION) is None


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
async def test_malformed_actor_id_in_a_read_is_refused(bad: Any) -> None:
    """A read whose actor id is not a (str, str | int) tuple fails with InvalidId showing it."""
    node = make_node()
    async with node:
        with pytest.raises(wes.InvalidId) as info:
            await node.read(bad, "value")
        assert names(str(info.value), bad), str(info.value)


async def test_int_names_are_valid_ids() -> None:
    """An int name is a valid id for channels and actors."""
    node = make_node()
    async with node:
        await node.create_channel(("session", 1), [wes.create(("counter", 2), 5)])
        await node.command(("session", 1), "incr")
        assert await node.read(("counter", 2), "value") == 6


# --- command and read names --------------------------------------------------------------


@pytest.mark.parametrize("bad", [42, None, b"incr", ("incr",), ["incr"], {"incr": 1}], ids=repr)
@pytest.mark.parametrize("actors", [[], [A], [A, B]], ids=["empty", "one actor", "two actors"])
async def test_command_name_not_str_is_refused(bad: Any, actors: list[Any]) -> None:
    """A command name that is not a str (hashable or not) fails with InvalidName showing it,
    whatever the channel holds; the channel keeps running, and stats count no command."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(actor) for actor in actors])
        with pytest.raises(wes.InvalidName) as info:
            await node.command(SESSION, bad)
        assert names(str(info.value), bad), str(info.value)
        assert await node.status(SESSION) is not None
        assert not [key for key in stats.counts() if key[0] in ("command", "dead_letter")]


@pytest.mark.parametrize("bad", [42, ["incr"]], ids=repr)
async def test_command_name_not_str_is_refused_on_a_busy_channel_too(bad: Any) -> None:
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        node._channels[SESSION].busy = True  # as while another command runs
        with pytest.raises(wes.InvalidName):
            await node.command(SESSION, bad)
        node._channels[SESSION].busy = False
        await node.command(SESSION, "incr")


@pytest.mark.parametrize("bad", [42, None, b"value", ("value",)], ids=repr)
async def test_read_name_not_str_is_refused(bad: Any) -> None:
    """A read name that is not a str fails with InvalidName showing it."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.InvalidName) as info:
            await node.read(A, bad)
        assert names(str(info.value), bad), str(info.value)


@pytest.mark.parametrize("bad", [42, None, b"x"], ids=repr)
def test_decorator_name_not_str_is_refused(bad: Any) -> None:
    """`@wes.command(name)` and `@wes.read(name)` with a name that is not a str fail with
    InvalidName."""
    with pytest.raises(wes.InvalidName):
        wes.command(bad)
    with pytest.raises(wes.InvalidName):
        wes.read(bad)


# --- specs of the wrong shape ------------------------------------------------------------


BAD_SPECS: list[Any] = ["counter", A, [A], [42], [None], 42, [wes.create, "x"]]


@pytest.mark.parametrize("bad", BAD_SPECS, ids=repr)
async def test_specs_of_the_wrong_shape_are_refused(bad: Any) -> None:
    """`specs` that are not a spec or a list of specs fail with InvalidSpec and start nothing."""
    node = make_node()
    async with node:
        with pytest.raises(wes.InvalidSpec):
            await node.create_channel(SESSION, bad)
        assert await node.status(SESSION) is None
        await node.create_channel(SESSION)
        with pytest.raises(wes.InvalidSpec):
            await node.create_actor(SESSION, bad)
        ref = await node.status(SESSION)
        assert ref is not None and ref.actors == ()


async def test_invalid_spec_message_shows_the_bad_item() -> None:
    """An InvalidSpec error shows the item that is not a spec."""
    node = make_node()
    async with node:
        with pytest.raises(wes.InvalidSpec) as info:
            await node.create_channel(SESSION, [wes.create(A), ("counter", "oops")])
        assert "oops" in str(info.value)


# --- channel and actor type configuration ----------------------------------------------------


BAD_CONFIGS: list[tuple[str, Any]] = [
    ("idle_timeout", -1.0),
    ("idle_timeout", "soon"),
    ("save_interval", -0.5),
    ("save_interval", "often"),
    ("lease", 0),
    ("lease", -3.0),
    ("lease", None),
    ("durability", "sometimes"),
    ("durability", None),
]


@pytest.mark.parametrize(("setting", "value"), BAD_CONFIGS, ids=repr)
def test_bad_channel_type_setting_is_refused(setting: str, value: Any) -> None:
    """A channel_type setting out of range or of the wrong kind fails with InvalidConfig naming
    the setting."""
    node = wes.Node(store=wes.MemoryStore())
    with pytest.raises(wes.InvalidConfig, match=setting):
        node.channel_type("session", **{setting: value})


def test_good_channel_type_settings_are_accepted() -> None:
    """channel_type accepts positive numbers, None for the timeouts, and both durabilities."""
    node = wes.Node(store=wes.MemoryStore())
    node.channel_type("a", idle_timeout=None, save_interval=None, lease=0.5, durability="command")
    node.channel_type("b", idle_timeout=0.1, save_interval=2, lease=30, durability="periodic")


def test_actor_type_of_a_non_actor_class_is_refused() -> None:
    """actor_type with a class that is not a wes.Actor subclass fails with a UsageError."""
    node = wes.Node(store=wes.MemoryStore())
    with pytest.raises(wes.UsageError):
        node.actor_type("counter", dict)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [1, None, ("counter",)], ids=repr)
def test_type_name_not_str_is_refused(bad: Any) -> None:
    """actor_type and channel_type with a type name that is not a str fail with a UsageError."""
    node = wes.Node(store=wes.MemoryStore())
    with pytest.raises(wes.UsageError):
        node.actor_type(bad, Counter)
    with pytest.raises(wes.UsageError):
        node.channel_type(bad)


# --- stored states that cannot be loaded ---------------------------------------------------


async def check_not_loadable(backend: Backend, key: str, record: Record, spec: Any) -> None:
    """Store `record` under `key`, start a channel with `spec`, expect StateNotLoadable naming
    the key with a chained cause, nothing started and the stored bytes untouched."""
    store = backend.store()
    registry = backend.registry()
    assert await store.write([[Write(key, record.data, record.version, record.token)]]) == [None]
    node = make_node(store, registry)
    async with node:
        with pytest.raises(wes.StateNotLoadable) as info:
            await node.create_channel(SESSION, [wes.create(("counter", "other")), spec])
        assert key in str(info.value)
        assert info.value.__cause__ is not None
        assert await node.status(SESSION) is None
        assert await registry.holder("actor", ("counter", "other")) is None
        assert (await store.read([key]))[key] == record
    store = backend.store()
    async with store:
        assert (await store.read([key]))[key] == record


@pytest.mark.parametrize("spec", [wes.load, wes.load_or_create])
async def test_undecodable_stored_state_is_not_loadable(backend: Backend, spec: Any) -> None:
    """Stored bytes the codec cannot decode fail the spec with StateNotLoadable naming the key;
    nothing starts and the bytes stay as they were."""
    record = Record(b"\xff\x00 not json", 1, 1)
    await check_not_loadable(backend, "counter/a", record, spec(A))


async def test_failing_migration_is_not_loadable(backend: Backend) -> None:
    """A `migrate` that raises fails the spec with StateNotLoadable naming the key and chaining
    the exception; nothing starts and the bytes stay as they were."""
    record = Record(wes.JsonCodec().encode({"value": 1}), 1, 1)
    store = backend.store()
    assert await store.write([[Write("versioned/v", record.data, 1, 1)]]) == [None]
    node = make_node(store)
    async with node:
        with pytest.raises(wes.StateNotLoadable, match="versioned/v") as info:
            await node.create_channel(SESSION, [wes.load(("versioned", "v"))])
        assert isinstance(info.value.__cause__, Cause)
        assert await node.status(SESSION) is None
        assert (await store.read(["versioned/v"]))["versioned/v"] == record
    await check_not_loadable(backend, "versioned/v", record, wes.load_or_create(("versioned", "v")))


async def test_newer_stored_version_is_not_loadable(backend: Backend) -> None:
    """A state stored by a newer class version than the running one cannot be migrated: the spec
    fails with StateNotLoadable naming the key."""
    record = Record(wes.JsonCodec().encode({"value": 1}), 9, 1)
    await check_not_loadable(backend, "counter/a", record, wes.load(A))


async def test_create_over_undecodable_state_still_fails_as_existing(backend: Backend) -> None:
    """`wes.create` of an actor whose stored bytes are garbage fails with ActorAlreadyExists and
    leaves the bytes as they were."""
    store = backend.store()
    record = Record(b"garbage", 1, 1)
    assert await store.write([[Write("counter/a", record.data, 1, 1)]]) == [None]
    node = make_node(store)
    async with node:
        with pytest.raises(wes.ActorAlreadyExists):
            await node.create_channel(SESSION, [wes.create(A)])
        assert (await store.read(["counter/a"]))["counter/a"] == record


async def test_command_name_not_str_is_refused_before_channel_lookup() -> None:
    """A command name that is not a str fails with InvalidName also when the channel does not
    run: the caller's mistake is reported, not a consequence of it."""
    node = make_node()
    async with node:
        with pytest.raises(wes.InvalidName):
            await node.command(SESSION, 42)  # type: ignore[arg-type]  # the wrong type on purpose


async def test_read_name_not_str_is_refused_for_an_inactive_actor() -> None:
    """A read name that is not a str fails with InvalidName also when the actor is in no
    channel."""
    node = make_node()
    async with node:
        with pytest.raises(wes.InvalidName):
            await node.read(A, 42)  # type: ignore[arg-type]  # the wrong type on purpose


async def test_an_actor_listed_twice_in_specs_is_refused() -> None:
    """Specs naming one actor twice fail with InvalidSpec naming it, and start nothing."""
    registry = wes.MemoryRegistry()
    node = make_node(registry=registry)
    async with node:
        with pytest.raises(wes.InvalidSpec, match="twin"):
            await node.create_channel(
                SESSION, [wes.create(("counter", "twin")), wes.load_or_create(("counter", "twin"))]
            )
        assert await node.status(SESSION) is None
        assert await registry.holder("actor", ("counter", "twin")) is None
        await node.create_channel(SESSION)
        with pytest.raises(wes.InvalidSpec, match="twin"):
            await node.create_actor(
                SESSION, [wes.create(("counter", "twin")), wes.create(("counter", "twin"))]
            )
        ref = await node.status(SESSION)
        assert ref is not None and ref.actors == ()


async def test_not_running_here_shows_and_pickles_as_the_public_class() -> None:
    """What a missing channel or actor raises is `ChannelNotStarted` / `ActorNotActive` by
    name too (tracebacks, logs, stats keys), and pickles as exactly that class."""
    async with make_node() as node:
        with pytest.raises(wes.ChannelNotStarted) as channel:
            await node.command(SESSION, "incr")
        with pytest.raises(wes.ActorNotActive) as actor:
            await node.read(A, "value")
    for info, public in ((channel, wes.ChannelNotStarted), (actor, wes.ActorNotActive)):
        assert type(info.value).__name__ == public.__name__
        again = pickle.loads(pickle.dumps(info.value))
        assert type(again) is public
        assert str(again) == str(info.value)
