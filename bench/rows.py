"""The one registry of benchmark rows: every row name in table order, with its unit.

`run.py` prints the rows in this order and each group (`wes_rows.py`, `http_load.py`,
`backend_rows.py`) takes the names of its rows from here.
"""

from __future__ import annotations

from collections.abc import Callable

Want = Callable[[str], bool]
"""Whether a row of the given name is to be measured (from `--only`)."""

GROUP_ROWS: dict[str, dict[str, str]] = {
    "round_trips": {
        "command_1client": "commands/s",
        "command_100clients": "commands/s",
        "read_1client": "reads/s",
        "read_100clients": "reads/s",
    },
    "idle_channel_bytes": {"idle_channel_bytes": "B"},
    "million_channels": {
        "million_channels_rss_bytes": "B",
        "million_channels_create_rate": "channels/s",
    },
    "periodic_saves": {"periodic_saves": "states/s"},
    "durable_commands": {"durable_commands": "commands/s"},
    "timers": {"timer_p99_ms": "ms", "timer_p99_vs_last_tick_ms": "ms"},
    "http_load": {
        "http_constant_rps": "requests/s",
        "http_balance_rps": "requests/s",
        "http_balance_p99_ms": "ms",
        "http_transfer_rps": "requests/s",
        "http_transfer_p99_ms": "ms",
    },
    "backend_rows": {
        "postgres_periodic_saves": "states/s",
        "postgres_durable_commands": "commands/s",
        "redis_periodic_saves": "states/s",
        "redis_durable_commands": "commands/s",
    },
}
"""Each measuring group's rows, name → unit, groups and rows in table order."""

UNITS: dict[str, str] = {name: unit for rows in GROUP_ROWS.values() for name, unit in rows.items()}
"""Every row name in table order, with its unit."""


def names(group: str) -> tuple[str, ...]:
    """The row names of a group, in table order."""
    return tuple(GROUP_ROWS[group])
