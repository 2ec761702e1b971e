"""MultiStats: every event reaches every sink, durations when any sink is timed, and a sink
that raises is logged without keeping the event from the others."""

from __future__ import annotations

import logging

import pytest

import wes
from tests.support.counters import Counter
from tests.support.nodes import SESSION, A, node_of
from tests.support.recorder import Recorder
from wes._prometheus import PrometheusStats
from wes._stats import LoggingStats, MultiStats
from wes.abc import Ident, Stats


class Broken(Stats):
    """Raises on every event."""

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        raise RuntimeError(f"broken sink on {kind}")


def make_node(stats: Stats) -> wes.Node:
    return node_of({"counter": Counter}, stats=stats)


def test_every_sink_gets_every_event_unchanged() -> None:
    """Each sink receives the same kind, name, ident, seconds and error, in sink order."""
    one, two = Recorder(), Recorder()
    multi = MultiStats(one, two)
    error = KeyError("x")
    multi.event("command", "incr", SESSION, 0.5)
    multi.event("stop", "KeyError", SESSION, error=error)
    expected = [
        ("command", "incr", SESSION, 0.5, None),
        ("stop", "KeyError", SESSION, None, error),
    ]
    assert one.events == two.events == expected
    assert multi.sinks == (one, two)


def test_timed_if_any_sink_is() -> None:
    """MultiStats is timed exactly when one of its sinks is."""
    assert MultiStats(Recorder(), Recorder(timed=True)).timed is True
    assert MultiStats(Recorder(), wes.MemoryStats()).timed is False
    assert MultiStats().timed is False
    assert MultiStats(wes.MemoryStats(), PrometheusStats()).timed is True


def test_raising_sink_is_logged_and_others_still_served(caplog: pytest.LogCaptureFixture) -> None:
    """A sink that raises is logged with its traceback; the sinks after it get the event."""
    caplog.set_level(logging.ERROR, logger="wes.stats")
    before, after = Recorder(), Recorder()
    MultiStats(before, Broken(), after).event("read", "value", A)
    assert before.events == after.events == [("read", "value", A, None, None)]
    [record] = caplog.records
    assert record.name == "wes.stats"
    assert "read value" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_node_with_several_sinks() -> None:
    """A node with MultiStats feeds counts, durations and Prometheus metrics at once, even
    with a broken sink among them."""
    memory, timed = wes.MemoryStats(), Recorder(timed=True)
    prometheus = PrometheusStats()
    node = make_node(MultiStats(memory, Broken(), timed, prometheus, LoggingStats()))
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr")
        assert await node.read(A, "value") == 1
    assert memory.counts()[("command", "incr")] == 1
    assert memory.counts()[("stop", "normal")] == 1
    [(_, _, _, seconds, _)] = [e for e in timed.events if e[:2] == ("command", "incr")]
    assert seconds is not None and seconds >= 0
    registry = prometheus.registry
    assert registry.get_sample_value("wes_commands_total", {"command": "incr"}) == 1
    assert registry.get_sample_value("wes_read_duration_seconds_count", {"read": "value"}) == 1
