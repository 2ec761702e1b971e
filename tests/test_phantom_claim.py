"""A claim of this node's that outlived the call that took it."""

from __future__ import annotations

import pytest

import wes


class Counter(wes.Actor):
    def __init__(self) -> None:
        self.value = 0


async def test_a_stray_claim_of_this_node_is_reported_as_registry_trouble() -> None:
    """A channel name held by this very node while the channel does not run here (a claim
    whose reply was lost, or whose release failed) gives RegistryUnavailable saying it frees
    itself, not ChannelAlreadyStarted pointing at ourselves."""
    registry = wes.MemoryRegistry()
    node = wes.Node(store=wes.MemoryStore(), registry=registry)
    node.actor_type("counter", Counter)
    node.channel_type("session", lease=0.2)
    async with node:
        await registry.claim([("channel", ("session", "s"))], node.address, 0.2)
        with pytest.raises(wes.RegistryUnavailable, match="earlier claim of this node"):
            await node.create_channel(("session", "s"))
        assert await node.status(("session", "s")) is None


async def test_a_channel_held_by_another_node_is_already_started() -> None:
    """A channel name held by another node's address is ChannelAlreadyStarted."""
    registry = wes.MemoryRegistry()
    node = wes.Node(store=wes.MemoryStore(), registry=registry)
    node.channel_type("session")
    async with node:
        await registry.claim([("channel", ("session", "s"))], "elsewhere:1", 30.0)
        with pytest.raises(wes.ChannelAlreadyStarted, match="elsewhere"):
            await node.create_channel(("session", "s"))
