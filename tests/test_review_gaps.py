"""Failure paths and batched work found in review: a bad SQLite setting, a state that refers
to itself, and several actors leaving a channel at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import wes
from claims import actor_claim


class Leaver(wes.Actor):
    def __init__(self) -> None:
        self.value = 0

    @wes.command
    def go(self) -> None:
        self.value += 1
        self.leave()

    @wes.command
    def ping(self) -> None:
        pass

    @wes.command
    def loop_back(self) -> None:
        self.value = [self]  # to_state sees a list holding the actor itself

    def to_state(self) -> dict[str, Any]:
        if isinstance(self.value, list):
            state: dict[str, Any] = {}
            state["me"] = state  # refers to itself: no codec can write it
            return state
        return {"value": self.value}


def test_sqlite_store_refuses_an_unknown_synchronous_setting(tmp_path: Path) -> None:
    """`SqliteStore(synchronous=...)` accepts only SQLite's levels and names the bad one."""
    with pytest.raises(wes.InvalidConfig, match="'SOMETIMES'"):
        wes.SqliteStore(tmp_path / "s.db", synchronous="SOMETIMES")  # type: ignore[arg-type]


async def test_a_state_that_refers_to_itself_fails_its_save_and_the_channel_runs_on() -> None:
    """A self-referring state cannot be encoded: the periodic save fails naming the actor,
    counted as ("save", "error"), and the channel keeps serving."""
    stats = wes.MemoryStats()
    node = wes.Node(store=wes.MemoryStore(), stats=stats)
    node.actor_type("leaver", Leaver)
    node.channel_type("s")
    async with node:
        await node.create_channel(("s", 1), wes.create(("leaver", "a")))
        await node.command(("s", 1), "loop_back")
        with pytest.raises(wes.StateNotEncodable, match="'leaver', 'a'"):
            await node.stop_channel(("s", 1))
        assert stats.counts()[("save", "error")] == 1
        assert await node.status(("s", 1)) is not None
        await node.command(("s", 1), "ping")  # the channel still serves commands
        assert await node.status(("s", 1)) is not None


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
        stored = await store.read([f"leaver/{n}" for n in "abc"])
        assert [stored[f"leaver/{n}"].data for n in "abc"] == [b'{"value":1}'] * 3
        await node.create_channel(("s", 2), [wes.load(a) for a in actors])
        assert (await node.status(("s", 2))) is not None
