"""PrometheusStats: every stats event as a counter in the exposition text, latency histograms,
live channel and actor gauges, and separate registries for separate sinks."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import wes
from tests.support import counters
from tests.support.nodes import EMPTY, OTHER, SESSION, A, B, C, node_of
from tests.support.waiting import wait_until
from wes._prometheus import PrometheusStats
from wes.abc import Stats


class Counter(counters.Counter):
    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0

    @wes.command
    def fail(self) -> None:
        raise ValueError("boom")

    @wes.command
    def tick_every(self, seconds: float) -> None:
        self.set_timer("tick", seconds)

    @wes.command
    def leave_now(self) -> None:
        self.leave()

    def on_timer(self, name: str) -> None:
        self.ticks += 1


def make_node(stats: Stats, **kw: Any) -> wes.Node:
    return node_of({"counter": Counter}, stats=stats, **kw)


def samples(stats: PrometheusStats) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, by name and labels."""
    text = stats.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(stats: PrometheusStats, metric: str, /, **labels: str) -> float | None:
    """One sample's value from the exposition text, or None if absent."""
    return samples(stats).get((metric, frozenset(labels.items())))


async def test_counters_follow_the_events() -> None:
    """Starts, commands, reads, dead letters, timers, saves and stops (normal and by exception)
    appear in the exposition text with their counts."""
    stats = PrometheusStats()
    node = make_node(stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A), wes.create(B)])
        await node.create_channel(OTHER, [wes.create(C)])
        await node.create_channel(EMPTY)
        await node.command(SESSION, "incr")
        await node.command(SESSION, "incr", 2)
        for _ in range(3):
            await node.read(A, "value")
        await node.command(EMPTY, "nobody")
        await node.command(SESSION, "tick_every", 0.01)
        await wait_until(lambda: (value(stats, "wes_timers_total", timer="tick") or 0) >= 2)
        await node.stop_channel(SESSION)
        with pytest.raises(ValueError):
            await node.command(OTHER, "fail")
        assert value(stats, "wes_channels_started_total") == 3
        assert value(stats, "wes_actors_started_total") == 3
        assert value(stats, "wes_commands_total", command="incr") == 2
        assert value(stats, "wes_commands_total", command="fail") == 1
        assert value(stats, "wes_commands_total", command="tick_every") == 1
        assert value(stats, "wes_reads_total", read="value") == 3
        assert value(stats, "wes_dead_letters_total", command="nobody") == 1
        assert value(stats, "wes_channels_stopped_total", reason="normal") == 1
        assert value(stats, "wes_channels_stopped_total", reason="ValueError") == 1
        assert value(stats, "wes_channels_stopped_total", reason="idle") == 0
        assert value(stats, "wes_saves_total", result="ok") == 1
        assert value(stats, "wes_saves_total", result="error") == 0
    assert value(stats, "wes_channels_stopped_total", reason="normal") == 2  # EMPTY at exit


async def test_latency_histograms_have_counts() -> None:
    """Commands, reads and saves are observed in their latency histograms, in seconds."""
    stats = PrometheusStats()
    node = make_node(stats, durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        for n in range(4):
            await node.command(SESSION, "incr", n + 1)
        await node.read(A, "value")
        got = samples(stats)

    def sample(name: str, **labels: str) -> float:
        return got[name, frozenset(labels.items())]

    assert sample("wes_command_duration_seconds_count", command="incr") == 4
    assert sample("wes_read_duration_seconds_count", read="value") == 1
    assert sample("wes_save_duration_seconds_count") == 4  # durable: one save per command
    assert 0 < sample("wes_command_duration_seconds_sum", command="incr") < 5
    assert sample("wes_command_duration_seconds_bucket", command="incr", le="+Inf") == 4
    assert sample("wes_command_duration_seconds_bucket", command="incr", le="1e-05") <= 4


async def test_gauges_follow_a_watched_node() -> None:
    """With the node watched, the live gauges read its channels and actors at scrape time,
    including actors that joined or left a running channel."""
    stats = PrometheusStats()
    node = make_node(stats)
    stats.watch(node)
    async with node:
        await node.create_channel(SESSION, [wes.create(A), wes.create(B)])
        await node.create_channel(OTHER)
        assert value(stats, "wes_live_channels") == 2
        assert value(stats, "wes_live_actors") == 2
        await node.create_actor(OTHER, wes.create(C))
        assert value(stats, "wes_live_actors") == 3
        await node.command(OTHER, "leave_now")
        assert value(stats, "wes_live_actors") == 2
        await node.stop_channel(SESSION)
        assert (value(stats, "wes_live_channels"), value(stats, "wes_live_actors")) == (1, 0)
    assert (value(stats, "wes_live_channels"), value(stats, "wes_live_actors")) == (0, 0)


async def test_channel_gauge_follows_events_without_a_node() -> None:
    """Without a watched node the live channel gauge follows start and stop events (normal and
    by exception), and no live actor gauge is exported rather than a wrong one."""
    stats = PrometheusStats()
    node = make_node(stats)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.create_channel(OTHER, [wes.create(B)])
        assert value(stats, "wes_live_channels") == 2
        with pytest.raises(ValueError):
            await node.command(OTHER, "fail")
        assert value(stats, "wes_live_channels") == 1
        assert not any(name == "wes_live_actors" for name, _ in samples(stats))
    assert value(stats, "wes_live_channels") == 0


async def test_node_given_at_construction_is_watched() -> None:
    """`node=` reads the gauges from any object with `live_channels` and `live_actors`."""

    class Fixed:
        live_channels = 7
        live_actors = 11

    stats = PrometheusStats(node=Fixed())
    assert value(stats, "wes_live_channels") == 7
    assert value(stats, "wes_live_actors") == 11


async def test_two_sinks_in_one_process_do_not_clash() -> None:
    """Two PrometheusStats get registries of their own and count their own node's events."""
    one, two = PrometheusStats(), PrometheusStats()
    assert one.registry is not two.registry
    node_one, node_two = make_node(one), make_node(two)
    async with node_one, node_two:
        await node_one.create_channel(SESSION, [wes.create(A)])
        await node_two.create_channel(SESSION, [wes.create(A)])
        await node_one.command(SESSION, "incr")
        for _ in range(2):
            await node_two.command(SESSION, "incr")
        assert value(one, "wes_commands_total", command="incr") == 1
        assert value(two, "wes_commands_total", command="incr") == 2


def test_given_registry_is_used_and_a_second_sink_in_it_is_refused() -> None:
    """A registry passed in is the one exported; a second sink in it is a duplicate."""
    registry = CollectorRegistry()
    stats = PrometheusStats(registry)
    assert stats.registry is registry
    stats.event("command", "incr", SESSION, 0.001)
    assert registry.get_sample_value("wes_commands_total", {"command": "incr"}) == 1
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusStats(registry)


def test_label_values_are_capped() -> None:
    """Names beyond `max_names` of one kind are counted under "_other", so made-up command
    names cannot grow the series without bound; labels never name a channel or actor."""
    stats = PrometheusStats(max_names=2)
    for i in range(5):
        stats.event("command", f"made_up_{i}", ("session", f"s{i}"), 0.001)
    stats.event("command", "made_up_0", SESSION, 0.001)
    assert value(stats, "wes_commands_total", command="made_up_0") == 2
    assert value(stats, "wes_commands_total", command="made_up_1") == 1
    assert value(stats, "wes_commands_total", command="_other") == 3
    assert value(stats, "wes_command_duration_seconds_count", command="_other") == 3
    stats.event("stop", "lease_lost", SESSION)  # known from the start: never "_other"
    assert value(stats, "wes_channels_stopped_total", reason="lease_lost") == 1
    text = stats.exposition().decode()
    assert "s1" not in text and "session" not in text


def test_unknown_event_kinds_are_counted() -> None:
    """An event of a kind DESIGN.md does not list is counted by kind and name."""
    stats = PrometheusStats()
    stats.event("start", "other", SESSION)
    stats.event("migrate", "v2", A)
    assert value(stats, "wes_events_total", kind="start", name="other") == 1
    assert value(stats, "wes_events_total", kind="migrate", name="v2") == 1


def test_is_timed_and_serves_its_content_type() -> None:
    """PrometheusStats asks for durations and names the exposition's content type."""
    stats = PrometheusStats()
    assert stats.timed is True
    assert isinstance(stats, Stats)
    assert stats.content_type.startswith("text/plain")


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus-client, constructing PrometheusStats names the extra to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'wes-actors\[prometheus\]'"):
        PrometheusStats()
