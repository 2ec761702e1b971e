"""The node's operations, as DESIGN.md's table lists them: returns and failure paths of
create_channel, ensure_channel, create_actor, ensure_actor, status, stop_channel, command, read;
node lifecycle and per-type backends."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from functools import partial
from pathlib import Path

import pytest

import wes
from tests.support import counters
from tests.support.backends import Backend, stored
from tests.support.claims import actor_claim
from tests.support.nodes import OTHER, SESSION, A, B, C, node_of


class Counter(counters.Counter):
    @wes.read
    def explode(self, exc: BaseException) -> None:
        raise exc


make_node = partial(node_of, {"counter": Counter})


# --- create_channel ----------------------------------------------------------------------


async def test_create_channel_returns_a_channel_ref() -> None:
    """`create_channel` returns a frozen ChannelRef with the channel id, the owner's address and
    the actor ids."""
    node = make_node()
    async with node:
        ref = await node.create_channel(SESSION, [wes.create(A), wes.create(B)])
        assert isinstance(ref, wes.ChannelRef)
        assert ref.id == SESSION
        assert isinstance(ref.owner, str)
        assert ref.actors == (A, B)
        with pytest.raises(dataclasses.FrozenInstanceError):
            ref.owner = "elsewhere"  # type: ignore[misc]


@pytest.mark.registries
async def test_create_channel_of_a_running_channel_fails(backend: Backend) -> None:
    """`create_channel` of a running channel fails with ChannelAlreadyStarted, leaves it as it was
    and locks none of the new specs' actors."""
    registry = backend.registry()
    node = make_node(backend.store(), registry)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        with pytest.raises(wes.ChannelAlreadyStarted, match="s1"):
            await node.create_channel(SESSION, [wes.create(B)])
        ref = await node.status(SESSION)
        assert ref is not None
        assert ref.actors == (A,)
        assert await node.read(A, "value") == 1
        assert await registry.holder("actor", actor_claim(B)) is None
        await node.create_channel(OTHER, [wes.create(B, 2)])
        assert await node.read(B, "value") == 2


async def test_a_stray_claim_of_this_node_is_reported_as_registry_trouble() -> None:
    """A channel name held by this very node while the channel does not run here (a claim
    whose reply was lost, or whose release failed) gives RegistryUnavailable saying it frees
    itself, not ChannelAlreadyStarted pointing at ourselves."""
    registry = wes.MemoryRegistry()
    node = make_node(registry=registry, lease=0.2)
    async with node:
        await registry.claim([("channel", ("session", "s"))], node.address, 0.2)
        with pytest.raises(wes.RegistryUnavailable, match="earlier claim of this node"):
            await node.create_channel(("session", "s"))
        assert await node.status(("session", "s")) is None


async def test_a_channel_held_by_another_node_is_already_started() -> None:
    """A channel name held by another node's address is ChannelAlreadyStarted."""
    registry = wes.MemoryRegistry()
    node = make_node(registry=registry)
    async with node:
        await registry.claim([("channel", ("session", "s"))], "elsewhere:1", 30.0)
        with pytest.raises(wes.ChannelAlreadyStarted, match="elsewhere"):
            await node.create_channel(("session", "s"))


# --- ensure_channel ----------------------------------------------------------------------


async def test_ensure_channel_starts_a_channel_that_is_not_running() -> None:
    """`ensure_channel` of a channel that is not running starts it with the specs."""
    node = make_node()
    async with node:
        ref = await node.ensure_channel(SESSION, [wes.create(A, 4)])
        assert ref.id == SESSION
        assert ref.actors == (A,)
        assert await node.read(A, "value") == 4


async def test_ensure_channel_of_a_running_channel_adds_missing_actors_only() -> None:
    """`ensure_channel` of a running channel returns it, adds the specs' missing actors and
    leaves the actors it already has untouched (not reloaded)."""
    node = make_node()
    async with node:
        first = await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr", 10)
        ref = await node.ensure_channel(
            SESSION, [wes.load_or_create(A, 0), wes.load_or_create(B, 5)]
        )
        assert ref.id == SESSION
        assert ref.owner == first.owner
        assert set(ref.actors) == {A, B}
        assert await node.read(A, "value") == 11
        assert await node.read(B, "value") == 5


async def test_ensure_channel_spec_error_leaves_the_running_channel_intact() -> None:
    """A spec error in `ensure_channel` of a running channel leaves it and its actors as they
    were."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        with pytest.raises(wes.ActorNotFound):
            await node.ensure_channel(SESSION, [wes.create(B), wes.load(C)])
        ref = await node.status(SESSION)
        assert ref is not None
        assert ref.actors == (A,)
        assert await node.read(A, "value") == 1


# --- create_actor / ensure_actor ------------------------------------------------------------


async def test_create_actor_adds_actors_to_a_running_channel() -> None:
    """`create_actor` adds the specs' actors to a running channel and returns None."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        assert await node.create_actor(SESSION, [wes.create(B, 2), wes.create(C, 3)]) is None
        ref = await node.status(SESSION)
        assert ref is not None
        assert set(ref.actors) == {A, B, C}
        await node.command(SESSION, "incr")
        assert [await node.read(x, "value") for x in (A, B, C)] == [1, 3, 4]


@pytest.mark.registries
async def test_create_actor_on_a_channel_not_started_fails(backend: Backend) -> None:
    """`create_actor` on a channel that does not run fails with ChannelNotStarted and locks
    nothing."""
    registry = backend.registry()
    node = make_node(backend.store(), registry)
    async with node:
        with pytest.raises(wes.ChannelNotStarted, match="s1"):
            await node.create_actor(SESSION, [wes.create(A)])
        assert await node.status(SESSION) is None
        assert await registry.holder("actor", actor_claim(A)) is None


@pytest.mark.registries
async def test_create_actor_of_an_actor_already_in_the_channel_fails(backend: Backend) -> None:
    """`create_actor` of an actor already in the channel fails with ActorAlreadyInChannel; the
    channel, that actor's state and the other specs' actors stay as they were."""
    registry = backend.registry()
    node = make_node(backend.store(), registry)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr", 2)
        with pytest.raises(wes.ActorAlreadyInChannel):
            await node.create_actor(SESSION, [wes.create(B), wes.load_or_create(A)])
        ref = await node.status(SESSION)
        assert ref is not None
        assert ref.actors == (A,)
        assert await node.read(A, "value") == 3
        assert await registry.holder("actor", actor_claim(B)) is None
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 4


@pytest.mark.registries
async def test_create_actor_spec_error_leaves_the_channel_intact(backend: Backend) -> None:
    """A spec error in `create_actor` adds nothing, frees the actors it locked and leaves the
    channel running as it was."""
    registry = backend.registry()
    node = make_node(backend.store(), registry)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        with pytest.raises(wes.ActorNotFound):
            await node.create_actor(SESSION, [wes.create(B), wes.load(C)])
        ref = await node.status(SESSION)
        assert ref is not None
        assert ref.actors == (A,)
        assert await registry.holder("actor", actor_claim(B)) is None
        with pytest.raises(wes.ActorNotActive):
            await node.read(B, "value")
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 2


async def test_create_actor_of_an_actor_locked_elsewhere_fails() -> None:
    """`create_actor` of an actor active in another channel fails with ActorAlreadyLocked and
    leaves both channels as they were."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.create_channel(OTHER, [wes.create(B, 2)])
        with pytest.raises(wes.ActorAlreadyLocked):
            await node.create_actor(SESSION, [wes.load_or_create(B)])
        first, second = await node.status(SESSION), await node.status(OTHER)
        assert first is not None and first.actors == (A,)
        assert second is not None and second.actors == (B,)
        await node.command(OTHER, "incr")
        assert await node.read(B, "value") == 3
        assert await node.read(A, "value") == 1


async def test_ensure_actor_accepts_actors_already_in_the_channel() -> None:
    """`ensure_actor` adds missing actors and leaves the ones already in the channel untouched."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr")
        assert await node.ensure_actor(SESSION, [wes.load_or_create(A), wes.create(B, 5)]) is None
        ref = await node.status(SESSION)
        assert ref is not None
        assert set(ref.actors) == {A, B}
        assert await node.read(A, "value") == 2
        assert await node.read(B, "value") == 5


async def test_ensure_actor_on_a_channel_not_started_fails() -> None:
    """`ensure_actor` on a channel that does not run fails with ChannelNotStarted."""
    node = make_node()
    async with node:
        with pytest.raises(wes.ChannelNotStarted):
            await node.ensure_actor(SESSION, [wes.create(A)])


# --- status ------------------------------------------------------------------------------


async def test_status_of_a_channel_not_running_is_none() -> None:
    """`status` of a channel that never ran returns None."""
    node = make_node()
    async with node:
        assert await node.status(SESSION) is None


async def test_status_of_a_running_channel_is_its_ref() -> None:
    """`status` of a running channel returns its current ChannelRef."""
    node = make_node()
    async with node:
        created = await node.create_channel(SESSION, [wes.create(A)])
        ref = await node.status(SESSION)
        assert ref == created
        await node.create_actor(SESSION, wes.create(B))
        ref = await node.status(SESSION)
        assert ref is not None
        assert ref.id == SESSION
        assert ref.owner == created.owner
        assert ref.actors == (A, B)


# --- stop_channel ------------------------------------------------------------------------


@pytest.mark.registries
async def test_stop_channel_saves_and_releases_every_lock(backend: Backend) -> None:
    """`stop_channel` saves every actor, frees the channel and actor claims and returns None."""
    store = backend.store()
    registry = backend.registry()
    node = make_node(store, registry)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(B, 2)])
        await node.command(SESSION, "incr", 10)
        assert await node.stop_channel(SESSION) is None
        assert await stored(store, "counter/a") == {"value": 11}
        assert await stored(store, "counter/b") == {"value": 12}
        assert await node.status(SESSION) is None
        assert await registry.holder("channel", SESSION) is None
        assert await registry.holder("actor", actor_claim(A)) is None
        assert await registry.holder("actor", actor_claim(B)) is None
        await node.create_channel(OTHER, [wes.load(A)])
        assert await node.read(A, "value") == 11


async def test_stop_channel_of_a_channel_not_started_fails() -> None:
    """`stop_channel` of a channel that does not run fails with ChannelNotStarted, also when it
    was stopped already."""
    node = make_node()
    async with node:
        with pytest.raises(wes.ChannelNotStarted):
            await node.stop_channel(SESSION)
        await node.create_channel(SESSION)
        await node.stop_channel(SESSION)
        with pytest.raises(wes.ChannelNotStarted, match="s1"):
            await node.stop_channel(SESSION)


@pytest.mark.registries
async def test_stopped_channel_can_start_again_with_its_saved_state(backend: Backend) -> None:
    """After a normal stop the channel starts again and sees the saved states."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr", 4)
        await node.stop_channel(SESSION)
        await node.create_channel(SESSION, [wes.load(A)])
        assert await node.read(A, "value") == 5


# --- command -----------------------------------------------------------------------------


async def test_command_returns_none_once_every_actor_handled_it() -> None:
    """`command` returns None after every actor of the channel handled it."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A), wes.create(B)])
        assert await node.command(SESSION, "incr", 3) is None
        assert await node.read(A, "value") == 3
        assert await node.read(B, "value") == 3


async def test_command_to_a_channel_not_started_fails() -> None:
    """`command` to a channel that does not run fails with ChannelNotStarted, also after stop."""
    node = make_node()
    async with node:
        with pytest.raises(wes.ChannelNotStarted, match="s1"):
            await node.command(SESSION, "incr")
        await node.create_channel(SESSION, [wes.create(A)])
        await node.stop_channel(SESSION)
        with pytest.raises(wes.ChannelNotStarted):
            await node.command(SESSION, "incr")


# --- read --------------------------------------------------------------------------------


async def test_a_read_of_an_actor_in_no_channel_leaves_no_cycle_for_the_collector() -> None:
    """A miss is a common read (a service asks first, then reads the store): its
    exception must not keep its own frame alive, which makes garbage at every miss."""
    node = make_node()
    async with node:
        gc.collect()
        gc.disable()
        try:
            for _ in range(100):
                with contextlib.suppress(wes.ActorNotActive):
                    await node.read(A, "value")
            assert gc.collect() < 100  # not a cycle per miss
        finally:
            gc.enable()


async def test_read_of_an_actor_in_no_channel_fails() -> None:
    """`read` of an actor in no channel fails with ActorNotActive naming it."""
    node = make_node()
    async with node:
        with pytest.raises(wes.ActorNotActive):
            await node.read(A, "value")
        await node.create_channel(SESSION, [wes.create(A)])
        await node.stop_channel(SESSION)
        with pytest.raises(wes.ActorNotActive):
            await node.read(A, "value")


async def test_read_of_an_unknown_name_fails() -> None:
    """`read` with a name the actor has no read handler for fails with UnknownRead naming it."""
    node = make_node()
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.UnknownRead, match="nope"):
            await node.read(A, "nope")
        with pytest.raises(wes.UnknownRead):
            await node.read(A, "incr")  # a command is not a read
        assert await node.status(SESSION) is not None


async def test_read_exception_reaches_caller_and_channel_keeps_running() -> None:
    """An exception in a read handler reaches the caller unchanged; the channel keeps running."""
    stats = wes.MemoryStats()
    node = make_node(stats=stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        error = LookupError("no view")
        with pytest.raises(LookupError) as info:
            await node.read(A, "explode", error)
        assert info.value is error
        assert await node.status(SESSION) is not None
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 2
        assert not any(kind == "stop" for kind, _ in stats.counts())


# --- node lifecycle ----------------------------------------------------------------------


async def test_operations_outside_async_with_fail() -> None:
    """Operations before `async with node` and after it fail with NodeNotRunning."""
    node = make_node()
    with pytest.raises(wes.NodeNotRunning):
        await node.create_channel(SESSION)
    with pytest.raises(wes.NodeNotRunning):
        await node.status(SESSION)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
    with pytest.raises(wes.NodeNotRunning):
        await node.command(SESSION, "incr")
    with pytest.raises(wes.NodeNotRunning):
        await node.read(A, "value")


async def test_async_with_returns_the_node() -> None:
    """`async with node as n` binds the node itself."""
    node = make_node()
    async with node as entered:
        assert entered is node


@pytest.mark.registries
async def test_leaving_the_node_stops_every_channel_saving(backend: Backend) -> None:
    """Leaving `async with node` stops every channel normally, saving all their actors, and
    releases their claims."""
    stats = wes.MemoryStats()
    node = make_node(backend.store(), backend.registry(), stats)
    async with node:
        for i, actor in enumerate((A, B, C)):
            await node.create_channel(("session", i), [wes.create(actor, i)])
            await node.command(("session", i), "incr", 100)
    assert stats.counts().get(("stop", "normal")) == 3
    async with backend.registry() as registry:
        assert await registry.holder("actor", actor_claim(A)) is None
        assert await registry.holder("channel", ("session", 0)) is None
    store = backend.store()
    async with store:
        for i, key in enumerate(("counter/a", "counter/b", "counter/c")):
            assert await stored(store, key) == {"value": 100 + i}


@pytest.mark.registries
async def test_restarted_node_sees_the_saved_states(backend: Backend) -> None:
    """A new node on the same store and registry loads what the previous node saved."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1)])
        await node.command(SESSION, "incr", 2)
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(SESSION, [wes.load(A)])
        assert await node.read(A, "value") == 3


async def test_default_store_is_sqlite_file_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wes.Node()` without a store persists to the SQLite file "wes.db" in the working
    directory."""
    monkeypatch.chdir(tmp_path)
    node = wes.Node()
    node.actor_type("counter", Counter)
    node.channel_type("session")
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 5)])
    assert (tmp_path / "wes.db").exists()
    store = wes.SqliteStore(str(tmp_path / "wes.db"))
    async with store:
        assert await stored(store, "counter/a") == {"value": 5}


@pytest.mark.registries
async def test_actor_type_store_and_registry_override_the_nodes(backend: Backend) -> None:
    """`actor_type(..., store=, registry=)` keeps that type's states and claims in its own
    backends."""
    other = backend.sibling()
    node_store, type_store = backend.store(), other.store()
    node_registry, type_registry = backend.registry(), other.registry()
    node = wes.Node(store=node_store, registry=node_registry)
    node.actor_type("counter", Counter)
    node.actor_type("special", Counter, store=type_store, registry=type_registry)
    node.channel_type("session", idle_timeout=None, save_interval=None)
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 1), wes.create(("special", "s"), 2)])
        special = actor_claim(("special", "s"), scope="special")
        assert await type_registry.holder("actor", special) == SESSION
        assert await node_registry.holder("actor", special) is None
        assert await node_registry.holder("actor", actor_claim(A)) == SESSION
        await node.stop_channel(SESSION)
        assert await stored(type_store, "special/s") == {"value": 2}
        assert await stored(node_store, "special/s") is None
        assert await stored(node_store, "counter/a") == {"value": 1}
        assert await stored(type_store, "counter/a") is None


@pytest.mark.registries
async def test_two_nodes_share_a_registry_and_exclude_each_other(backend: Backend) -> None:
    """Two nodes on one registry cannot both run a channel or hold one actor."""
    first = make_node(backend.store(), backend.registry())
    second = make_node(backend.store(), backend.registry())
    async with first, second:
        await first.create_channel(SESSION, [wes.create(A, 1)])
        with pytest.raises(wes.ChannelAlreadyStarted):
            await second.create_channel(SESSION)
        with pytest.raises(wes.ActorAlreadyLocked):
            await second.create_channel(OTHER, [wes.load_or_create(A)])
        assert await second.status(OTHER) is None


@pytest.mark.registries
async def test_channel_ref_owner_is_the_registered_holder(backend: Backend) -> None:
    """A ChannelRef's owner is the node address the registry holds the channel for."""
    registry = backend.registry()
    node = make_node(backend.store(), registry)
    async with node:
        ref = await node.create_channel(SESSION, [wes.create(A)])
        assert await registry.holder("channel", SESSION) == ref.owner
        assert await registry.holder("actor", actor_claim(A)) == SESSION


async def test_sqlite_store_accepts_a_path(tmp_path: Path) -> None:
    """`wes.SqliteStore` takes a `pathlib.Path` as well as a str."""
    path = tmp_path / "path.db"
    node = make_node(wes.SqliteStore(path))
    async with node:
        await node.create_channel(SESSION, [wes.create(A, 2)])
    store = wes.SqliteStore(str(path))
    async with store:
        assert await stored(store, "counter/a") == {"value": 2}


async def test_leaving_the_node_by_an_exception_still_saves(backend: Backend) -> None:
    """Leaving `async with node` by an exception stops every channel normally, saving, and lets
    the exception through."""
    node = make_node(backend.store())
    with pytest.raises(KeyError):
        async with node:
            await node.create_channel(SESSION, [wes.create(A, 1)])
            await node.command(SESSION, "incr", 1)
            raise KeyError("user code failed")
    store = backend.store()
    async with store:
        assert await stored(store, "counter/a") == {"value": 2}
