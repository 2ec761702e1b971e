"""Specs: `wes.create`, `wes.load`, `wes.load_or_create`, their errors, and the rule that a
failed start releases every lock it took and starts nothing."""

from __future__ import annotations

from functools import partial

import pytest

import wes
from tests.support.backends import Backend
from tests.support.claims import actor_claim
from tests.support.counters import Counter
from tests.support.nodes import OTHER, SESSION, node_of

THIRD = ("session", "s3")
ALICE = ("counter", "alice")
BOB = ("counter", "bob")
CAROL = ("counter", "carol")


make_node = partial(node_of, {"counter": Counter})


async def persist(backend: Backend, *actors: tuple[tuple[str, str], int]) -> None:
    """Store the given (actor, value) pairs through a node of its own."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(THIRD, [wes.create(actor, value) for actor, value in actors])
        await node.stop_channel(THIRD)


# --- create ------------------------------------------------------------------------------


async def test_create_builds_a_new_actor(backend: Backend) -> None:
    """`wes.create` of an actor the store does not hold builds it with the given arguments."""
    node = make_node(backend.store())
    async with node:
        ref = await node.create_channel(SESSION, [wes.create(ALICE, 3)])
        assert ref.actors == (ALICE,)
        assert await node.read(ALICE, "value") == 3


@pytest.mark.registries
async def test_create_of_a_stored_actor_fails(backend: Backend) -> None:
    """`wes.create` of an actor the store holds fails with ActorAlreadyExists naming it."""
    await persist(backend, (ALICE, 1))
    node = make_node(backend.store(), backend.registry())
    async with node:
        with pytest.raises(wes.ActorAlreadyExists, match="alice"):
            await node.create_channel(SESSION, [wes.create(ALICE, 5)])
        assert await node.status(SESSION) is None
        await node.create_channel(SESSION, [wes.load(ALICE)])
        assert await node.read(ALICE, "value") == 1


@pytest.mark.registries
async def test_create_of_an_actor_active_elsewhere_fails_locked(backend: Backend) -> None:
    """`wes.create` of an actor (not yet stored) that is active in another channel fails with
    ActorAlreadyLocked."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(OTHER, [wes.create(ALICE, 1)])
        with pytest.raises(wes.ActorAlreadyLocked, match="alice"):
            await node.create_channel(SESSION, [wes.create(ALICE, 2)])
        assert await node.read(ALICE, "value") == 1


# --- load --------------------------------------------------------------------------------


@pytest.mark.registries
async def test_load_restores_the_stored_state(backend: Backend) -> None:
    """`wes.load` of a stored actor restores its last persisted state."""
    await persist(backend, (ALICE, 8))
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(SESSION, [wes.load(ALICE)])
        assert await node.read(ALICE, "value") == 8


async def test_load_of_a_missing_actor_fails(backend: Backend) -> None:
    """`wes.load` of an actor the store does not hold fails with ActorNotFound naming it."""
    node = make_node(backend.store())
    async with node:
        with pytest.raises(wes.ActorNotFound, match="alice"):
            await node.create_channel(SESSION, [wes.load(ALICE)])
        assert await node.status(SESSION) is None


@pytest.mark.registries
async def test_load_of_an_actor_active_elsewhere_fails_locked(backend: Backend) -> None:
    """`wes.load` of an actor active in another channel fails with ActorAlreadyLocked and leaves
    that channel as it was."""
    await persist(backend, (ALICE, 1))
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(OTHER, [wes.load(ALICE)])
        await node.command(OTHER, "incr", 4)
        with pytest.raises(wes.ActorAlreadyLocked, match="alice"):
            await node.create_channel(SESSION, [wes.load(ALICE)])
        assert await node.read(ALICE, "value") == 5
        ref = await node.status(OTHER)
        assert ref is not None
        assert ref.actors == (ALICE,)


# --- load_or_create ----------------------------------------------------------------------


async def test_load_or_create_creates_a_missing_actor(backend: Backend) -> None:
    """`wes.load_or_create` of an actor the store does not hold creates it with the arguments."""
    node = make_node(backend.store())
    async with node:
        await node.create_channel(SESSION, [wes.load_or_create(ALICE, 6)])
        assert await node.read(ALICE, "value") == 6


@pytest.mark.registries
async def test_load_or_create_loads_a_stored_actor(backend: Backend) -> None:
    """`wes.load_or_create` of a stored actor loads it and ignores the arguments."""
    await persist(backend, (ALICE, 2))
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(SESSION, [wes.load_or_create(ALICE, 99)])
        assert await node.read(ALICE, "value") == 2


@pytest.mark.registries
async def test_load_or_create_of_an_actor_active_elsewhere_fails_locked(backend: Backend) -> None:
    """`wes.load_or_create` of an actor active in another channel fails with ActorAlreadyLocked."""
    node = make_node(backend.store(), backend.registry())
    async with node:
        await node.create_channel(OTHER, [wes.load_or_create(ALICE, 1)])
        with pytest.raises(wes.ActorAlreadyLocked):
            await node.create_channel(SESSION, [wes.load_or_create(ALICE, 1)])


# --- shapes ------------------------------------------------------------------------------


async def test_one_spec_may_be_given_without_a_list(backend: Backend) -> None:
    """`specs` may be a single spec instead of a list."""
    node = make_node(backend.store())
    async with node:
        ref = await node.create_channel(SESSION, wes.create(ALICE, 1))
        assert ref.actors == (ALICE,)
        await node.create_actor(SESSION, wes.create(BOB, 2))
        assert await node.read(BOB, "value") == 2


async def test_specs_default_to_no_actors() -> None:
    """`create_channel(channel)` starts a channel with no actors."""
    node = make_node(wes.MemoryStore())
    async with node:
        ref = await node.create_channel(SESSION)
        assert ref.actors == ()


@pytest.mark.registries
async def test_several_specs_start_every_actor(backend: Backend) -> None:
    """A list of specs of different kinds starts every actor in one channel."""
    await persist(backend, (BOB, 20))
    node = make_node(backend.store(), backend.registry())
    async with node:
        ref = await node.create_channel(
            SESSION, [wes.create(ALICE, 1), wes.load(BOB), wes.load_or_create(CAROL, 3)]
        )
        assert set(ref.actors) == {ALICE, BOB, CAROL}
        await node.command(SESSION, "incr")
        assert [await node.read(a, "value") for a in (ALICE, BOB, CAROL)] == [2, 21, 4]


# --- a failed start releases its locks and starts nothing ----------------------------------


@pytest.mark.registries
async def test_failed_create_channel_releases_every_lock_it_took(backend: Backend) -> None:
    """When a later spec fails, `create_channel` starts nothing and frees the actors it locked."""
    registry = backend.registry()
    node = make_node(backend.store(), registry)
    async with node:
        with pytest.raises(wes.ActorNotFound):
            await node.create_channel(SESSION, [wes.create(ALICE, 1), wes.load(BOB)])
        assert await node.status(SESSION) is None
        assert await registry.holder("channel", SESSION) is None
        assert await registry.holder("actor", actor_claim(ALICE)) is None
        assert await registry.holder("actor", actor_claim(BOB)) is None
        with pytest.raises(wes.ActorNotActive):
            await node.read(ALICE, "value")
        await node.create_channel(OTHER, [wes.create(ALICE, 7)])
        assert await node.read(ALICE, "value") == 7
        # The failed channel can be started afresh.
        await node.create_channel(SESSION, [wes.create(BOB, 2)])
        assert await node.read(BOB, "value") == 2


@pytest.mark.registries
async def test_failed_create_channel_leaves_other_channels_locks_alone(backend: Backend) -> None:
    """A start that fails on an actor locked by another channel frees only its own locks."""
    registry = backend.registry()
    node = make_node(backend.store(), registry)
    async with node:
        await node.create_channel(OTHER, [wes.create(BOB, 5)])
        with pytest.raises(wes.ActorAlreadyLocked):
            await node.create_channel(SESSION, [wes.create(ALICE, 1), wes.load_or_create(BOB)])
        assert await node.status(SESSION) is None
        assert await registry.holder("actor", actor_claim(ALICE)) is None
        assert await registry.holder("actor", actor_claim(BOB)) == OTHER
        assert await node.read(BOB, "value") == 5
        await node.command(OTHER, "incr")
        assert await node.read(BOB, "value") == 6


async def test_failed_create_channel_writes_nothing(backend: Backend) -> None:
    """A failed start leaves the store as it was: no created actor is written."""
    store = backend.store()
    node = make_node(store)
    async with node:
        with pytest.raises(wes.ActorNotFound):
            await node.create_channel(SESSION, [wes.create(ALICE, 1), wes.load(BOB)])
        assert await store.read(["counter/alice", "counter/bob"]) == {}
