"""Smoke test of the benchmark programs: `bench/run.py --quick` runs and reports every figure."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.programs import ROOT

pytestmark = pytest.mark.subprocess  # runs bench/run.py

REQUIRED = {
    "command_1client",
    "command_100clients",
    "read_1client",
    "read_100clients",
    "idle_channel_bytes",
    "million_channels_rss_bytes",
    "million_channels_create_rate",
    "periodic_saves",
    "durable_commands",
    "timer_p99_ms",
    "http_constant_rps",
    "http_balance_rps",
    "http_balance_p99_ms",
    "http_transfer_rps",
    "http_transfer_p99_ms",
    "postgres_periodic_saves",
    "postgres_durable_commands",
    "redis_periodic_saves",
    "redis_durable_commands",
}
WITH_BASELINE = {
    "command_1client",
    "command_100clients",
    "read_1client",
    "read_100clients",
    "periodic_saves",
    "durable_commands",
    "http_balance_rps",
    "http_transfer_rps",
    "postgres_periodic_saves",
    "postgres_durable_commands",
    "redis_periodic_saves",
    "redis_durable_commands",
}


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    """A quick benchmark run exits cleanly and writes a numeric value for every required row."""
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(out.read_text())
    assert isinstance(rows, list)
    by_name = {row["name"]: row for row in rows}
    assert not REQUIRED - by_name.keys(), "missing rows"
    for row in rows:
        assert set(row) == {"name", "value", "unit", "baseline", "ratio", "target", "met", "note"}
    for name in REQUIRED:
        row = by_name[name]
        assert isinstance(row["value"], int | float) and math.isfinite(row["value"]), row
        if name in WITH_BASELINE:
            assert row["baseline"] > 0, row
            assert math.isclose(row["ratio"], row["value"] / row["baseline"]), row
    # Every row keeps its target, whether it met it, and its note.
    assert by_name["command_1client"]["target"] == ">= 5.5x", by_name["command_1client"]
    assert by_name["idle_channel_bytes"]["met"] in (True, False)
    assert all(isinstance(row["note"], str) for row in rows)
    assert "command_1client" in proc.stdout  # the table went to stdout
