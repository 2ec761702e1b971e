"""`PrometheusStats`: the stats events as Prometheus metrics (needs prometheus-client).

- `("start", "channel")`, `("start", "actor")`: `wes_channels_started_total`,
  `wes_actors_started_total`
- `("command", NAME)`: `wes_commands_total{command}`, `wes_command_duration_seconds{command}`
- `("read", NAME)`: `wes_reads_total{read}`, `wes_read_duration_seconds{read}`
- `("dead_letter", NAME)`: `wes_dead_letters_total{command}`
- `("timer", NAME)`: `wes_timers_total{timer}`
- `("stop", REASON)`: `wes_channels_stopped_total{reason}` (normal, idle, lease_lost or the
  exception type's name)
- `("save", RESULT)`: `wes_saves_total{result}` (ok, error), `wes_save_duration_seconds`
- any other event: `wes_events_total{kind, name}`

plus the gauges `wes_live_channels` and `wes_live_actors`. Labels never name a channel or an
actor, only command, read and timer names, stop reasons and save results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._abc import Ident, Stats

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import Metric

LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005,
    0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Histogram buckets from 10 µs to 10 s: an in-memory command takes microseconds, a durable
one waits for a commit."""

OTHER = "_other"
"""The label value that stands for names beyond `max_names` of one kind."""


class LiveCounts(Protocol):
    """What the gauges read from a node at scrape time (`wes.Node` provides it)."""

    @property
    def live_channels(self) -> int: ...

    @property
    def live_actors(self) -> int: ...


class PrometheusStats(Stats):
    """Exports every stats event as Prometheus counters, latency histograms and gauges.

    The gauge of live channels follows the start and stop events. The events do not say
    which actors a stopping channel held, so live actors are read from the node itself at
    scrape time: pass `node=` or call `watch(node)` (the node takes its stats when it is
    built, so `watch` is the usual way). Until a node is watched, `wes_live_actors` is not
    exported rather than exported wrong; once one is, both gauges read the node(s).

    Args:
        registry: the `prometheus_client.CollectorRegistry` to register in; default a fresh
            one (never the global `REGISTRY` implicitly, so two nodes in one process don't
            clash). Available as `.registry`.
        node: a node (or anything with `live_channels` and `live_actors`) to read the gauges
            from.
        buckets: the latency histogram buckets, in seconds.
        max_names: distinct command, read or timer names (or stop reasons) kept per kind
            before further ones are counted under the label value `"_other"`, so a caller
            sending made-up command names cannot blow up the number of series.
    """

    timed = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        node: LiveCounts | None = None,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        max_names: int = 1000,
    ) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ImportError(
                "PrometheusStats needs: pip install 'wes-actors[prometheus]'"
            ) from None
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        self.content_type: str = prom.CONTENT_TYPE_LATEST
        """The content type of `exposition()`, for the `/metrics` response."""
        self._nodes: list[LiveCounts] = [] if node is None else [node]
        self._channels = 0  # live channels as the events tell
        self._max_names = max_names
        reg = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return prom.Counter(name, doc, labels, registry=reg)

        def histogram(name: str, doc: str, *labels: str) -> Histogram:
            return prom.Histogram(name, doc, labels, registry=reg, buckets=buckets)

        # kind -> (counter, latency histogram or None); both labelled by the event name.
        self._by_kind: dict[str, tuple[Counter, Histogram | None]] = {
            "command": (
                counter("wes_commands", "Commands received by running channels.", "command"),
                histogram("wes_command_duration_seconds", "Command handling time.", "command"),
            ),
            "read": (
                counter("wes_reads", "Reads of active actors.", "read"),
                histogram("wes_read_duration_seconds", "Read handling time.", "read"),
            ),
            "dead_letter": (
                counter("wes_dead_letters", "Commands sent to channels with no actors.", "command"),
                None,
            ),
            "timer": (counter("wes_timers", "Actor timers fired.", "timer"), None),
            "stop": (counter("wes_channels_stopped", "Channel stops by reason.", "reason"), None),
            "save": (counter("wes_saves", "Channel saves by result.", "result"), None),
        }
        self._started = {
            "channel": counter("wes_channels_started", "Channels started."),
            "actor": counter("wes_actors_started", "Actors started in channels."),
        }
        self._events = counter("wes_events", "Events of other kinds.", "kind", "name")
        self._save_seconds = histogram("wes_save_duration_seconds", "Channel save time.")
        # Cached label children: `labels()` costs more than the increment itself.
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._names: dict[str, int] = {}
        for kind, names in (
            ("stop", ("normal", "idle", "lease_lost")),
            ("save", ("ok", "error")),
        ):
            for name in names:  # zero series from the start, so rates work from the first event
                self._children[kind, name] = self._make(kind, name)
        reg.register(_LiveCollector(self))

    def watch(self, node: LiveCounts) -> None:
        """Read the live channel and actor gauges from `node` (summed over watched nodes)."""
        self._nodes.append(node)

    def exposition(self) -> bytes:
        """The registry's metrics in the Prometheus text format (`generate_latest`)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        child = self._children.get((kind, name))
        if child is None:
            child = self._child(kind, name)
        child[0].inc()
        if seconds is not None and child[1] is not None:
            child[1].observe(seconds)
        if kind == "start":
            if name == "channel":
                self._channels += 1
        elif kind == "stop":
            self._channels -= 1

    def _child(self, kind: str, name: str) -> tuple[Any, Any]:
        count = self._names.get(kind, 0)
        if count >= self._max_names:
            return self._make(kind, OTHER)  # not cached: the cache must not grow either
        self._names[kind] = count + 1
        child = self._children[kind, name] = self._make(kind, name)
        return child

    def _make(self, kind: str, name: str) -> tuple[Any, Any]:
        """The counter child and latency histogram child (or None) of an event."""
        if kind == "start" and name in self._started:
            return self._started[name], None
        if kind == "save":
            return self._by_kind[kind][0].labels(name), self._save_seconds
        pair = self._by_kind.get(kind)
        if pair is None:
            return self._events.labels(kind, name), None
        counter, hist = pair
        return counter.labels(name), None if hist is None else hist.labels(name)

    def live(self) -> tuple[int, int | None]:
        """Live channels and live actors now (actors `None` until a node is watched)."""
        if not self._nodes:
            return self._channels, None
        return (
            sum(n.live_channels for n in self._nodes),
            sum(n.live_actors for n in self._nodes),
        )


class _LiveCollector:
    """Yields the live gauges at scrape time."""

    def __init__(self, stats: PrometheusStats) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        return [
            GaugeMetricFamily("wes_live_channels", "Channels running now."),
            GaugeMetricFamily("wes_live_actors", "Actors in running channels now."),
        ]

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        channels, actors = self._stats.live()
        yield GaugeMetricFamily("wes_live_channels", "Channels running now.", value=channels)
        if actors is not None:
            yield GaugeMetricFamily(
                "wes_live_actors", "Actors in running channels now.", value=actors
            )
