"""The one registry of benchmark rows: every row name in table order, its unit and target.

`run.py` prints the rows in this order and each group (`wes_rows.py`, `http_load.py`,
`backend_rows.py`) takes the names of its rows from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from common import Row

Want = Callable[[str], bool]
"""Whether a row of the given name is to be measured (from `--only`)."""


class Spec(NamedTuple):
    """A row's unit and target: a minimum ratio to its baseline, or a maximum value."""

    unit: str
    min_ratio: float | None = None
    max_value: float | None = None


MIN_RATIO = 0.7
"""The target ratio of the PostgreSQL and Redis rows to their raw drivers."""

GROUP_ROWS: dict[str, dict[str, Spec]] = {
    "round_trips": {
        "command_1client": Spec("commands/s", min_ratio=5.5),
        "command_100clients": Spec("commands/s", min_ratio=1.7),
        "read_1client": Spec("reads/s", min_ratio=5.5),
        "read_100clients": Spec("reads/s", min_ratio=1.7),
    },
    "idle_channel_bytes": {
        "idle_channel_bytes": Spec("B", max_value=1000),
        "idle_channel_bytes_rss": Spec("B", max_value=1000),
    },
    "million_channels": {
        "million_channels_rss_bytes": Spec("B", max_value=1.5e9),
        "million_channels_create_rate": Spec("channels/s"),
    },
    "periodic_saves": {"periodic_saves": Spec("states/s", min_ratio=0.75)},
    "durable_commands": {"durable_commands": Spec("commands/s", min_ratio=2.0)},
    "timers": {"timer_p99_ms": Spec("ms", max_value=10), "timer_p99_vs_last_tick_ms": Spec("ms")},
    "million_timers": {"timer_p99_1m_ms": Spec("ms", max_value=10)},
    "http_load": {
        "http_constant_rps": Spec("requests/s"),
        "http_balance_rps": Spec("requests/s"),
        "http_balance_p99_ms": Spec("ms"),
        "http_transfer_rps": Spec("requests/s"),
        "http_transfer_p99_ms": Spec("ms"),
        "http_constant_vs_bare": Spec("requests/s", min_ratio=0.95),
        "http_balance_vs_plain": Spec("requests/s", min_ratio=1.5),
        "http_transfer_vs_plain": Spec("requests/s", min_ratio=2.0),
    },
    "backend_rows": {
        "postgres_periodic_saves": Spec("states/s", min_ratio=MIN_RATIO),
        "postgres_durable_commands": Spec("commands/s", min_ratio=MIN_RATIO),
        "redis_periodic_saves": Spec("states/s", min_ratio=MIN_RATIO),
        "redis_durable_commands": Spec("commands/s", min_ratio=MIN_RATIO),
    },
    "cluster": {
        "cluster_command_1client": Spec("commands/s", min_ratio=0.7),
        "cluster_command_64clients": Spec("commands/s", min_ratio=0.7),
        "cluster_read_1client": Spec("reads/s", min_ratio=0.7),
        "failover_seconds": Spec("s", max_value=3),
        "cluster_scaling": Spec("commands/s"),
    },
}
"""Each measuring group's rows, name → unit and target, groups and rows in table order."""

SPECS: dict[str, Spec] = {name: spec for rows in GROUP_ROWS.values() for name, spec in rows.items()}
"""Every row name in table order, with its unit and target."""

UNITS: dict[str, str] = {name: spec.unit for name, spec in SPECS.items()}
"""Every row name in table order, with its unit."""


def names(group: str) -> tuple[str, ...]:
    """The row names of a group, in table order."""
    return tuple(GROUP_ROWS[group])


def row(name: str, value: float | None, baseline: float | None = None, note: str = "") -> Row:
    """The row `name` with its registered unit and target."""
    spec = SPECS[name]
    return Row(name, value, spec.unit, baseline, spec.min_ratio, spec.max_value, note)
