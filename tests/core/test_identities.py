"""Identities: the storage key is what is exclusive, whatever id names it."""

from __future__ import annotations

import pytest

import wes
from tests.support.backends import Backend, stored
from tests.support.counters import Counter
from tests.support.nodes import node_of

ONE, OTHER = ("session", "one"), ("session", "other")


class Folded(Counter):
    """A class whose own `key` maps two names to one key (case-folded)."""

    @classmethod
    def key(cls, name: str | int) -> str:
        return f"folded/{str(name).lower()}"


def make_node(backend: Backend) -> wes.Node:
    return node_of({"counter": Counter, "folded": Folded}, backend.store(), backend.registry())


@pytest.mark.registries
async def test_int_and_str_names_with_one_key_exclude_each_other(backend: Backend) -> None:
    """While ("counter", 1) is active, a spec for ("counter", "1") (same key) is
    ActorAlreadyLocked, in every registry."""
    async with make_node(backend) as node:
        await node.create_channel(ONE, wes.create(("counter", 1), 5))
        with pytest.raises(wes.ActorAlreadyLocked, match="counter/1"):
            await node.create_channel(OTHER, wes.load(("counter", "1")))
        assert await node.status(OTHER) is None


@pytest.mark.registries
async def test_key_exclusion_holds_across_nodes_with_their_own_registries(
    backend: Backend,
) -> None:
    """Two nodes with registry instances of their own (as two processes would open) cannot
    both activate ids that share a key; after the first stops, the other id loads its state."""
    async with make_node(backend) as first, make_node(backend) as second:
        await first.create_channel(ONE, wes.create(("counter", 1), 5))
        with pytest.raises(wes.ActorAlreadyLocked):
            await second.create_channel(OTHER, wes.load(("counter", "1")))
        await first.command(ONE, "incr", 2)
        await first.stop_channel(ONE)
        await second.create_channel(OTHER, wes.load(("counter", "1")))
        assert await second.read(("counter", "1"), "value") == 7


async def test_own_key_mapping_two_names_to_one_key_excludes_them(backend: Backend) -> None:
    """A class whose `key` maps "A" and "a" to one key lets only one of them be active."""
    async with make_node(backend) as node:
        await node.create_channel(ONE, wes.create(("folded", "A"), 1))
        with pytest.raises(wes.ActorAlreadyLocked, match="folded/a"):
            await node.create_channel(OTHER, wes.load_or_create(("folded", "a")))


async def test_ids_sharing_a_key_in_one_spec_list_are_refused(backend: Backend) -> None:
    """Two specs whose ids share a key are InvalidSpec, and nothing starts."""
    async with make_node(backend) as node:
        specs = [wes.create(("counter", 1)), wes.create(("counter", "1"))]
        with pytest.raises(wes.InvalidSpec, match="one storage key 'counter/1'"):
            await node.create_channel(ONE, specs)
        assert await node.status(ONE) is None
        await node.create_channel(ONE, wes.create(("counter", "1")))  # nothing was held


async def test_alias_cannot_join_the_channel_its_twin_is_in(backend: Backend) -> None:
    """ensure_actor of ("counter", "1") into the channel where ("counter", 1) is active is
    ActorAlreadyLocked, and the channel keeps its actor."""
    async with make_node(backend) as node:
        await node.create_channel(ONE, wes.create(("counter", 1)))
        with pytest.raises(wes.ActorAlreadyLocked):
            await node.ensure_actor(ONE, wes.load_or_create(("counter", "1")))
        ref = await node.status(ONE)
        assert ref is not None and ref.actors == (("counter", 1),)


async def test_only_the_live_alias_writes_the_key(backend: Backend) -> None:
    """The state under the shared key is the one written by the actor that was active."""
    async with make_node(backend) as node:
        await node.create_channel(ONE, wes.create(("counter", 1), 5))
        with pytest.raises(wes.ActorAlreadyLocked):
            await node.create_channel(OTHER, wes.load_or_create(("counter", "1"), 100))
        await node.command(ONE, "incr", 1)
    async with backend.store() as store:
        assert await stored(store, "counter/1") == {"value": 6}


@pytest.mark.parametrize("kind", ["actor", "channel"])
def test_type_name_with_a_slash_is_refused(kind: str) -> None:
    """A type name containing "/" is InvalidConfig: it would let two ids share a key."""
    node = wes.Node(store=wes.MemoryStore())
    with pytest.raises(wes.InvalidConfig, match="contains '/'"):
        if kind == "actor":
            node.actor_type("counter/x", Counter)
        else:
            node.channel_type("session/x")


async def test_actor_type_with_its_own_registry_is_exclusive_by_key() -> None:
    """Keys are exclusive within an actor type's own registry too."""
    node = wes.Node(store=wes.MemoryStore())
    node.actor_type("counter", Counter, registry=wes.MemoryRegistry())
    node.channel_type("session", idle_timeout=None, save_interval=None)
    async with node:
        await node.create_channel(ONE, wes.create(("counter", 1)))
        with pytest.raises(wes.ActorAlreadyLocked):
            await node.create_channel(OTHER, wes.load_or_create(("counter", "1")))
        await node.command(ONE, "incr", 3)
        assert await node.read(("counter", 1), "value") == 3
