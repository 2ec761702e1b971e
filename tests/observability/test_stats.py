"""Stats: the events a node reports and `MemoryStats.counts()` keyed exactly as DESIGN.md lists;
stop events carry their exception; LoggingStats logs; timed sinks get durations."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import wes
from tests.support import counters
from tests.support.backends import Backend
from tests.support.nodes import EMPTY, SESSION, A, B, node_of
from tests.support.recorder import Recorder
from tests.support.waiting import wait_until
from wes.abc import Store


class Counter(counters.Counter):
    @wes.command
    def fail(self, exc: BaseException) -> None:
        raise exc

    @wes.command
    def halt(self) -> None:
        self.stop_channel()


def make_node(stats: wes.abc.Stats, store: Store | None = None, **kw: Any) -> wes.Node:
    return node_of({"counter": Counter}, store, stats=stats, **kw)


async def test_memory_stats_counts_a_channels_life(backend: Backend) -> None:
    """MemoryStats counts channel and actor starts, commands, reads, dead letters, saves and the
    normal stop under the keys DESIGN.md lists."""
    stats = wes.MemoryStats()
    node = make_node(stats, backend.store())
    async with node:
        await node.create_channel(SESSION, [wes.create(A), wes.create(B)])
        await node.create_channel(EMPTY)
        await node.command(SESSION, "incr")
        await node.command(SESSION, "incr", 2)
        await node.read(A, "value")
        await node.read(B, "value")
        await node.read(B, "value")
        await node.command(EMPTY, "nobody")
        await node.stop_channel(SESSION)
        counts = stats.counts()
        assert counts[("start", "channel")] == 2
        assert counts[("start", "actor")] == 2
        assert counts[("command", "incr")] == 2
        assert counts[("read", "value")] == 3
        assert counts[("dead_letter", "nobody")] == 1
        assert ("dead_letter", "incr") not in counts
        assert counts[("stop", "normal")] == 1
        assert counts[("save", "ok")] >= 1
        assert ("save", "error") not in counts
    assert stats.counts()[("stop", "normal")] == 2  # EMPTY stopped on leaving the node
    assert all(isinstance(k, tuple) and len(k) == 2 for k in stats.counts())
    assert all(isinstance(v, int) for v in stats.counts().values())


async def test_command_that_raises_is_counted_and_its_stop_named_after_it() -> None:
    """A command that raises counts as ("command", NAME) and its stop as ("stop", TYPE_NAME)."""
    stats = wes.MemoryStats()
    node = make_node(stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(ZeroDivisionError):
            await node.command(SESSION, "fail", ZeroDivisionError())
        counts = stats.counts()
        assert counts[("command", "fail")] == 1
        assert counts[("stop", "ZeroDivisionError")] == 1
        assert ("stop", "normal") not in counts
        assert ("save", "ok") not in counts


async def test_stop_event_carries_the_exception() -> None:
    """The stop event of a channel killed by an actor carries that very exception."""
    stats = Recorder()
    node = make_node(stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        error = KeyError("gone")
        with pytest.raises(KeyError):
            await node.command(SESSION, "fail", error)
        [(ident, _, carried)] = stats.of("stop", "KeyError")
        assert carried is error
        assert ident == SESSION


async def test_events_name_their_channel_or_actor() -> None:
    """Channel events name the channel id, actor starts name the actor id."""
    stats = Recorder()
    node = make_node(stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr")
        await node.stop_channel(SESSION)
    assert [i for i, _, _ in stats.of("start", "channel")] == [SESSION]
    assert [i for i, _, _ in stats.of("start", "actor")] == [A]
    assert [i for i, _, _ in stats.of("command", "incr")] == [SESSION]
    assert [i for i, _, _ in stats.of("stop", "normal")] == [SESSION]


async def test_stop_from_a_handler_counts_as_normal() -> None:
    """A channel stopped by `self.stop_channel()` counts as ("stop", "normal")."""
    stats = wes.MemoryStats()
    node = make_node(stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "halt")
        assert stats.counts()[("stop", "normal")] == 1


async def test_timed_stats_receive_durations() -> None:
    """A stats sink with `timed = True` receives the handling time of commands and reads."""
    stats = Recorder(timed=True)
    node = make_node(stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr")
        await node.read(A, "value")
    for kind, name in (("command", "incr"), ("read", "value")):
        [(_, seconds, _)] = stats.of(kind, name)
        assert seconds is not None and seconds >= 0


async def test_idle_stop_is_counted_as_idle() -> None:
    """A channel stopped by its idle timeout counts as ("stop", "idle"), not "normal"."""
    stats = wes.MemoryStats()
    node = make_node(stats, idle_timeout=0.1)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await wait_until(lambda: stats.counts().get(("stop", "idle"), 0) == 1)
        assert ("stop", "normal") not in stats.counts()


async def test_logging_stats_logs_events(caplog: pytest.LogCaptureFixture) -> None:
    """LoggingStats writes events to the standard logging system."""
    caplog.set_level(logging.DEBUG)
    node = make_node(wes.LoggingStats())
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr")
        with pytest.raises(ValueError):
            await node.command(SESSION, "fail", ValueError("logged"))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "incr" in text
    assert "ValueError" in text


class Refusal(Exception):
    """A business refusal the actor class declares expected."""


class Refusing(Counter):
    expected_errors = (Refusal,)

    @wes.command
    def refuse_later(self) -> None:
        self.set_timer("refuse", 0.01)

    def on_timer(self, name: str) -> None:
        raise Refusal("refused from a timer")


@pytest.mark.parametrize(
    ("error", "level", "traceback"),
    [(Refusal("not enough funds"), logging.INFO, False), (KeyError("bug"), logging.ERROR, True)],
    ids=["expected", "unexpected"],
)
async def test_logging_stats_logs_expected_errors_at_info_without_traceback(
    caplog: pytest.LogCaptureFixture, error: Exception, level: int, traceback: bool
) -> None:
    """A stop by an exception the actor class lists in `expected_errors` is logged at INFO
    without a traceback; any other at ERROR with one. The channel dies either way."""
    caplog.set_level(logging.INFO, logger="wes.stats")
    node = wes.Node(store=wes.MemoryStore(), stats=wes.LoggingStats())
    node.actor_type("counter", Refusing)
    node.channel_type("session")
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(type(error)):
            await node.command(SESSION, "fail", error)
        assert await node.status(SESSION) is None
    [stop] = [r for r in caplog.records if getattr(r, "wes", {}).get("kind") == "stop"]
    assert stop.levelno == level
    assert (stop.exc_info is not None) is traceback


async def test_default_stats_is_a_no_op() -> None:
    """A node without a stats sink runs normally."""
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry())
    node.actor_type("counter", Counter)
    node.channel_type("session")
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 1


async def test_expected_error_from_a_timer_is_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A timer that raises an exception its class expects kills the channel, and the stop is
    logged at INFO without a traceback."""
    caplog.set_level(logging.INFO, logger="wes.stats")
    stats = wes.MemoryStats()
    node = wes.Node(store=wes.MemoryStore(), stats=wes.MultiStats(wes.LoggingStats(), stats))
    node.actor_type("counter", Refusing)
    node.channel_type("session")
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "refuse_later")
        await wait_until(lambda: stats.counts().get(("stop", "Refusal"), 0) == 1)
    [stop] = [r for r in caplog.records if getattr(r, "wes", {}).get("kind") == "stop"]
    assert (stop.levelno, stop.exc_info) == (logging.INFO, None)
