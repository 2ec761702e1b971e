"""wes benchmarks: prints a table and writes bench/latest.json.

Usage: python bench/run.py [--quick] [--only NAME ...] [--out PATH] [--profile]

Each row is measured against a baseline in the same run where one exists (the asyncio floor,
raw SQLite loops, psycopg and redis-py on private servers, the bank written the plain way and
a bare Starlette app); `ratio` = value / baseline, higher is better for rates. Throughput
figures are medians of several repetitions, interleaved with their baselines (the machine is
noisy); the HTTP rows (bench/http_load.py) are medians of alternated wrk rounds. The
PostgreSQL and Redis rows are in bench/backend_rows.py, the cluster rows (node processes over
a private nats-server) in bench/cluster_rows.py.
`--only` takes row names or shell patterns (`command_*`); `--quick` is a fast smoke run with
small sizes; `--profile` prints a cProfile of each wes measurement to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import math
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from common import Row, Settings
from rows import UNITS

HERE = Path(__file__).resolve().parent


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run with small sizes")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="measure only rows matching NAME (a name or shell pattern; repeatable)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "latest.json", help="JSON output")
    parser.add_argument("--profile", action="store_true", help="cProfile wes measurements")
    return parser.parse_args(argv)


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    header = ("name", "value", "unit", "baseline", "ratio", "target", "met")
    lines = [header]
    for row in rows:
        ratio = row.ratio
        met = {True: "yes", False: "NO", None: ""}[row.met]
        lines.append(
            (
                row.name,
                fmt(row.value),
                row.unit,
                fmt(row.baseline),
                "-" if ratio is None else f"{ratio:.2f}",
                row.target,
                met,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        cells = [
            cell.ljust(w) if i in (0, 2, 5) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"  {row.name}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


async def baselines_only(settings: Settings) -> list[Row]:
    """The baselines alone, for when wes cannot be imported."""
    from baselines import Floor, PerRowCommits, batched_upserts
    from common import calibrate, time_loop

    async def rate(body: object) -> float:
        assert callable(body)
        n = await calibrate(body, settings.seconds)
        return sorted([n / await time_loop(body, n) for _ in range(settings.reps)])[
            settings.reps // 2
        ]

    async with Floor() as floor:
        one = await rate(floor.one_client())
        many = await rate(floor.many_clients(100))
    with tempfile.TemporaryDirectory(prefix="wes-bench-") as tmp:
        batched = batched_upserts(Path(tmp) / "b.db", 20_000, 5, 1000)
        raw = PerRowCommits(Path(tmp) / "p.db", 100)
        try:
            per_row = await rate(raw.body)
        finally:
            raw.close()
    baseline = {
        "command_1client": one,
        "read_1client": one,
        "command_100clients": many,
        "read_100clients": many,
        "periodic_saves": batched,
        "durable_commands": per_row,
    }
    return [Row(name, None, unit, baseline.get(name)) for name, unit in UNITS.items()]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    settings = Settings.make(args.quick, args.profile)
    patterns: list[str] = args.only or ["*"]

    def want(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    print(
        f"wes benchmarks ({'quick' if settings.quick else 'full'}):"
        f" Python {platform.python_version()} on {platform.machine()},"
        f" {time.strftime('%Y-%m-%d %H:%M:%S')}",
        file=sys.stderr,
    )
    failed = False
    rows: list[Row] = []
    try:
        from backend_rows import ROWS as BACKEND_ROWS
        from backend_rows import backend_rows
        from cluster_rows import ROWS as CLUSTER_ROWS
        from cluster_rows import cluster
        from http_load import ROWS as HTTP_ROWS
        from http_load import http_load
        from wes_rows import GROUPS
    except ImportError as exc:
        print(f"wes is not importable ({exc}); measuring the baselines only", file=sys.stderr)
        rows = asyncio.run(baselines_only(settings))
        failed = True
    else:
        more = [(HTTP_ROWS, http_load), (BACKEND_ROWS, backend_rows), (CLUSTER_ROWS, cluster)]
        for names, group in [*GROUPS, *more]:
            wanted = [name for name in names if want(name)]
            if not wanted:
                continue
            print(f"  measuring {', '.join(wanted)} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            timeout = 120.0 if settings.quick else 420.0
            try:
                rows += asyncio.run(asyncio.wait_for(group(settings, want), timeout))
            except Exception:
                traceback.print_exc()
                rows += [Row(name, None, UNITS[name]) for name in wanted]
                failed = True
            print(f"    {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    rows = [row for row in rows if want(row.name)]
    print(table(rows))
    args.out.write_text(json.dumps([row.as_json() for row in rows], indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
