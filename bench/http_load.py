"""HTTP load on the real bank service against the same bank written the plain way.

Three servers run in processes of their own, on one server stack (uvicorn, uvloop,
httptools): `wes bank serve`, the plain bank (`plain_bank.py`: Starlette over sqlite3, a
transaction per request in the thread pool) and a bare Starlette app (`bare_app.py`). Each
scenario is a `wrk -t2 -c32 --latency` run (5 s, 1 s with `--quick`) against wes and against
its baseline, in rounds whose order alternates (wes first, then the baseline first), so a
noisy neighbour hits both alike; a row's figures are the medians over the rounds, with each
server's CPU time per request beside them (a figure that other processes barely move):

- `GET /healthz`, a constant answer, against the bare app's `async` endpoint;
- `GET /{account}/balance` over accounts at rest (created, funded and their sessions ended:
  every read of wes is a store read), against the plain bank;
- `POST /{from}/transfer` of 1 unit, each a durable SQLite commit (sessions use
  durability="command"), against the plain bank.

For transfers each load user owns a fixed pair of accounts that no other user touches and
that balance reads never see, so no request meets another session's lock; wrk rotates its
users over its connections, and two requests of one user in flight at once queue in that
user's session (they never conflict). Rates count 2xx responses; every non-2xx response and
socket error is counted in the row's note.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import Row, Settings
from rows import Want, names, row
from wrk import Result, balance_script, constant_script, find_wrk, run_wrk, transfer_script

ROWS = names("http_load")
"""The rows of this group, in table order."""

HERE = Path(__file__).resolve().parent
THREADS = 2
CONNECTIONS = 32
PAIRS = 100  # transfer users, each on its own pair of accounts (20 with --quick)
AT_REST = 200  # accounts whose balances are read (40 with --quick)
QUICK_SHARE = 5  # --quick creates a fifth of the accounts: their setup is most of its time
FUNDS = 1_000_000  # each account's opening money
ROUNDS = 3  # of each scenario on each side; 1 with --quick
SETUP_CONCURRENCY = 32  # requests in flight while creating the accounts
START_TIMEOUT = 30.0  # seconds a server gets to print its address
STOP_TIMEOUT = 60.0  # seconds it gets to save every session and exit after SIGTERM


def _wes_command() -> list[str]:
    script = Path(sys.executable).with_name("wes")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wes._cli"]


class Server:
    """A server process on a free port (it prints `...: serving on URL`), its log in `log`."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=subprocess.PIPE, stderr=log, cwd=HERE
            )
        assert self.proc.stdout is not None
        marker = ": serving on "
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
            if not line:
                raise RuntimeError(f"{self.args} exited before serving: {self.tail()}")
            text = line.decode().strip()
            if marker in text:
                self.url = text.split(marker, 1)[1]
                return

    async def stop(self) -> int | None:
        """SIGTERM, then wait (kill after `STOP_TIMEOUT`); the exit code."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(
                f"{self.args} did not exit {STOP_TIMEOUT:.0f}s after SIGTERM: {self.tail()}"
            ) from None

    def cpu_seconds(self) -> float | None:
        """The CPU time the server used so far (user and system, all threads), where
        /proc tells it: per request, a figure the noise of other processes barely moves."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@asynccontextmanager
async def running(args: list[str], log: Path) -> AsyncIterator[Server]:
    """A started server, stopped on exit; one that does not exit cleanly after SIGTERM
    fails (0, or killed by the SIGTERM, which uvicorn raises again once it has stopped)."""
    server = Server(args, log)
    try:
        await server.start()
        yield server
    except BaseException:
        with contextlib.suppress(Exception):
            await server.stop()
        raise
    code = await server.stop()
    if code not in (0, -signal.SIGTERM):
        raise RuntimeError(f"{args} exited with {code} after SIGTERM: {server.tail()}")


async def _each(url: str, jobs: list[tuple[str, list[tuple[str, str, object, int]]]]) -> None:
    """Run each job's requests in order, `SETUP_CONCURRENCY` jobs at a time; a job is a user
    and its requests (method, path, JSON body, expected status)."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    limits = httpx.Limits(max_connections=SETUP_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:

        async def one(user: str, requests: list[tuple[str, str, object, int]]) -> None:
            async with limit:
                for method, path, body, status in requests:
                    response = await client.request(
                        method, path, json=body, headers={"User-Id": user}
                    )
                    if response.status_code != status:
                        raise RuntimeError(
                            f"{method} {path} answered {response.status_code}: {response.text}"
                        )

        await asyncio.gather(*(one(user, requests) for user, requests in jobs))


async def create_accounts(url: str, names: list[str]) -> None:
    """Create and fund each account in a session of its own, then end the session."""
    await _each(
        url,
        [
            (
                f"setup-{i}",
                [
                    ("POST", f"/{name}", None, 201),
                    ("POST", f"/{name}/insert", {"amount": FUNDS}, 200),
                    ("DELETE", "/", None, 200),
                ],
            )
            for i, name in enumerate(names)
        ],
    )


async def warm_transfers(url: str, pairs: list[tuple[str, str]]) -> None:
    """One transfer per load user and back, so its session holds its pair before timing."""
    await _each(
        url,
        [
            (
                f"load-{k}",
                [
                    ("POST", f"/{a}/transfer", {"to": b, "amount": 1}, 200),
                    ("POST", f"/{b}/transfer", {"to": a, "amount": 1}, 200),
                ],
            )
            for k, (a, b) in enumerate(pairs)
        ],
    )


@dataclass(slots=True)
class Scenario:
    """One load against wes and its baseline: the wrk script and both sides' results."""

    name: str
    path: str
    script: str
    what: str
    baseline: str  # what the baseline is, for the note
    wes: list[Result] = field(default_factory=list)
    base: list[Result] = field(default_factory=list)

    def median(self, side: list[Result]) -> Result:
        """The run of median rate (the lower middle one of an even count)."""
        ordered = sorted(side, key=lambda r: r.ok_rate)
        return ordered[(len(ordered) - 1) // 2]

    def rows(self, ratio_row: str) -> tuple[Result, Row]:
        """The median wes run, and the row of wes against the baseline."""
        wes, base = self.median(self.wes), self.median(self.base)
        ratios = [
            w.ok_rate / b.ok_rate for w, b in zip(self.wes, self.base, strict=True) if b.ok_rate
        ]
        note = (
            f"{self.what}; wes {wes.summary()}; {self.baseline} {base.summary()}; median of"
            f" {len(self.wes)} alternated rounds"
        )
        if ratios:
            note += f", per-round ratio {min(ratios):.2f}-{max(ratios):.2f}"
        if any(r.many_errors for r in (*self.wes, *self.base)):
            note = f"MANY ERRORS: {note}"
        value = statistics.median(r.ok_rate for r in self.wes)
        baseline = statistics.median(r.ok_rate for r in self.base)
        return wes, row(ratio_row, value, baseline, note)


def scenarios(settings: Settings, want: Want, pairs: list[tuple[str, str]]) -> list[Scenario]:
    """The scenarios the wanted rows need, in the order they run in a round."""
    load = f"wrk -t{THREADS} -c{CONNECTIONS} -d{_seconds(settings)}s"
    chosen: list[Scenario] = []
    if (
        want("http_constant_rps")
        or want("http_constant_vs_bare")
        or _balance(want)
        or _transfer(want)
    ):
        chosen.append(
            Scenario("constant", "/healthz", constant_script(), f"GET /healthz, {load}", "bare app")
        )
    if _balance(want):
        at_rest = _at_rest(settings)
        what = f"GET /{{account}}/balance over {len(at_rest)} accounts at rest, {load}"
        chosen.append(Scenario("balance", "/", balance_script(at_rest), what, "plain"))
    if _transfer(want):
        what = (
            f"POST /{{from}}/transfer, {len(pairs)} users each on its own pair of accounts,"
            f" durable commits, {load}"
        )
        chosen.append(Scenario("transfer", "/", transfer_script(pairs, THREADS), what, "plain"))
    return chosen


def _balance(want: Want) -> bool:
    return any(
        want(n) for n in ("http_balance_rps", "http_balance_p99_ms", "http_balance_vs_plain")
    )


def _transfer(want: Want) -> bool:
    return any(
        want(n) for n in ("http_transfer_rps", "http_transfer_p99_ms", "http_transfer_vs_plain")
    )


def _seconds(settings: Settings) -> int:
    return 1 if settings.quick else 5


def _at_rest(settings: Settings) -> list[str]:
    count = AT_REST // QUICK_SHARE if settings.quick else AT_REST
    return [f"rest-{i}" for i in range(count)]


def _pairs(settings: Settings) -> list[tuple[str, str]]:
    count = PAIRS // QUICK_SHARE if settings.quick else PAIRS
    return [(f"pair-{k}-a", f"pair-{k}-b") for k in range(count)]


async def http_load(settings: Settings, want: Want) -> list[Row]:
    """The rows of `ROWS` that `want` asks for."""
    pairs = _pairs(settings)
    chosen = scenarios(settings, want, pairs)
    if not chosen:
        return []
    wrk = find_wrk()
    rounds = 1 if settings.quick else ROUNDS
    seconds = _seconds(settings)
    with tempfile.TemporaryDirectory(prefix="wes-bench-http-") as tmp:
        work = Path(tmp)
        async with AsyncExitStack() as stack:
            wes, plain, bare = [
                await stack.enter_async_context(running(args, work / f"{name}.log"))
                for name, args in _servers(work)
            ]
            accounts = _at_rest(settings) + [name for pair in pairs for name in pair]
            await asyncio.gather(*(_set_up(server.url, accounts, pairs) for server in (wes, plain)))
            for k in range(rounds):
                for scenario in chosen:
                    base = bare if scenario.name == "constant" else plain
                    lua = work / f"{scenario.name}.lua"
                    lua.write_text(scenario.script)
                    for side in (wes, base) if k % 2 == 0 else (base, wes):
                        url = side.url + scenario.path
                        before = side.cpu_seconds()
                        got = await run_wrk(wrk, url, lua, seconds, THREADS, CONNECTIONS)
                        after = side.cpu_seconds()
                        if before is not None and after is not None and got.requests:
                            got.cpu_us = (after - before) / got.requests * 1e6
                        (scenario.wes if side is wes else scenario.base).append(got)
    return _rows(chosen)


async def _set_up(url: str, accounts: list[str], pairs: list[tuple[str, str]]) -> None:
    await create_accounts(url, accounts)
    await warm_transfers(url, pairs)


def _servers(work: Path) -> list[tuple[str, list[str]]]:
    plain = [sys.executable, str(HERE / "plain_serve.py")]
    return [
        ("wes", [*_wes_command(), "bank", "serve", "--port", "0", "--db", str(work / "wes.db")]),
        ("plain", [*plain, "plain", "--db", str(work / "plain.db")]),
        ("bare", [*plain, "bare"]),
    ]


def _rows(chosen: list[Scenario]) -> list[Row]:
    """The rows in table order: wes's own figures, then wes against the baselines."""
    by_name = {s.name: s for s in chosen}
    constant, versus_bare = by_name["constant"].rows("http_constant_vs_bare")
    rows = [row("http_constant_rps", constant.ok_rate, note=f"GET /healthz: {constant.summary()}")]
    versus = [versus_bare]
    for name in ("balance", "transfer"):
        if name in by_name:
            wes, against_plain = by_name[name].rows(f"http_{name}_vs_plain")
            note = f"baseline: the constant route; {wes.summary()}"
            rows += [
                row(f"http_{name}_rps", wes.ok_rate, constant.ok_rate, note=note),
                row(f"http_{name}_p99_ms", wes.p99_ms),
            ]
            versus.append(against_plain)
    return rows + versus
