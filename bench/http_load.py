"""HTTP load on the real bank service: `wes bank serve` in a process of its own, driven by `wrk`.

Three scenarios against one server in one run, each a `wrk -t2 -c32 --latency` run (5 s, 1 s
with `--quick`): `GET /healthz`, a constant answer (the baseline), `GET /{account}/balance`
spread over the accounts, and `POST /{from}/transfer` of 1 unit, each a durable SQLite commit
(sessions use durability="command").

The accounts are created over HTTP first, each in a session of its own, funded and unlocked
(`DELETE /`), so balance reads find them at rest (every read is a store read). For transfers
each load user owns a fixed pair of accounts that no other user touches, so no request meets
another session's lock; wrk rotates its users over its connections, and two requests of one
user in flight at once queue in that user's session (they never conflict). The figures are
2xx responses per second and wrk's 99th percentile latency; every non-2xx response and socket
error is counted in the row's note.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import Row, Settings
from rows import Want, names, row

ROWS = names("http_load")
"""The rows of this group, in table order."""

THREADS = 2
CONNECTIONS = 32
ACCOUNTS = 200  # an even number: transfers use them in pairs
FUNDS = 1_000_000  # each account's opening money
SETUP_CONCURRENCY = 32  # requests in flight while creating the accounts
START_TIMEOUT = 30.0  # seconds the server gets to print its address
STOP_TIMEOUT = 60.0  # seconds it gets to save every session and exit after SIGTERM
MANY_ERRORS = 0.01  # a share of failed requests that the note shouts about

_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p99_us": %d, "p50_us": %d, "status": %d,'
    .. ' "connect": %d, "read": %d, "write": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(99.0), latency:percentile(50.0),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""
"""wrk's exact figures as one JSON line (its text output rounds them and varies its units)."""


@dataclass(slots=True)
class Result:
    """One wrk run's figures."""

    requests: int  # responses received, whatever their status
    seconds: float
    p99_ms: float
    p50_ms: float
    non_2xx: int  # responses with a status outside 2xx and 3xx
    socket_errors: dict[str, int]  # connect, read, write, timeout

    @property
    def ok_rate(self) -> float:
        """Successful responses per second."""
        return (self.requests - self.non_2xx) / self.seconds

    def note(self, what: str) -> str:
        failed = self.non_2xx + sum(self.socket_errors.values())
        errors = {k: v for k, v in self.socket_errors.items() if v}
        text = (
            f"{what}; {self.requests:,} responses in {self.seconds:.1f}s, p50"
            f" {self.p50_ms:.2f} ms; non-2xx: {self.non_2xx:,}; socket errors:"
            f" {', '.join(f'{k} {v:,}' for k, v in errors.items()) or 'none'}"
        )
        if failed > MANY_ERRORS * max(1, self.requests):
            text = f"MANY ERRORS ({failed:,} failed requests): {text}"
        return text


def _wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "the HTTP load benchmark needs wrk: install Debian's package (apt-get install wrk;"
            " .ci/install-servers does it)"
        )
    return wrk


def _lua_list(items: list[str]) -> str:
    return "{" + ", ".join(json.dumps(item) for item in items) + "}"


def balance_script(accounts: list[str]) -> str:
    """Each thread cycles through every account, from its own starting point."""
    return (
        f"local accounts = {_lua_list(accounts)}\n"
        """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  reqs = {}
  for i, name in ipairs(accounts) do
    reqs[i] = wrk.format("GET", "/" .. name .. "/balance", {["User-Id"] = "bench-reader"})
  end
  n = (id * 7919) % #reqs
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end
""" + _DONE
    )


def transfer_script(pairs: list[tuple[str, str]], threads: int) -> str:
    """Pair k belongs to user `load-k` and to thread k mod `threads`; a thread rotates its
    users, each transfer going the other way from the user's previous one."""
    firsts = _lua_list([a for a, _ in pairs])
    seconds = _lua_list([b for _, b in pairs])
    return (
        f"local firsts = {firsts}\nlocal seconds = {seconds}\nlocal threads = {threads}\n"
        """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local function transfer(user, source, target)
  return wrk.format("POST", "/" .. source .. "/transfer",
    {["User-Id"] = user, ["Content-Type"] = "application/json"},
    '{"to": "' .. target .. '", "amount": 1}')
end

function init(args)
  reqs = {}
  for k = 1, #firsts do
    if (k - 1) % threads == id then
      local user = "load-" .. (k - 1)
      reqs[#reqs + 1] = transfer(user, firsts[k], seconds[k])
      reqs[#reqs + 1] = transfer(user, seconds[k], firsts[k])
    end
  end
  users = #reqs / 2
  n = 0
  back = {}
end

function request()
  n = n % users + 1
  back[n] = not back[n]
  return reqs[2 * n - (back[n] and 1 or 0)]
end
""" + _DONE
    )


def constant_script() -> str:
    return _DONE


async def run_wrk(
    wrk: str, url: str, script: Path, seconds: int, threads: int, connections: int
) -> Result:
    """One wrk run; its figures, from the script's `done()`."""
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    args += ["--timeout", "10s", "-s", str(script), url]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("WRK_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk exited with {proc.returncode}: {text[-2000:]} {err.decode(errors='replace')}"
        )
    fields = json.loads(lines[-1].removeprefix("WRK_RESULT "))
    return Result(
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        p99_ms=fields["p99_us"] / 1e3,
        p50_ms=fields["p50_us"] / 1e3,
        non_2xx=fields["status"],
        socket_errors={k: fields[k] for k in ("connect", "read", "write", "timeout")},
    )


def _wes_command() -> list[str]:
    script = Path(sys.executable).with_name("wes")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wes._cli"]


class Server:
    """`wes bank serve` on a free port, its log in `log`."""

    def __init__(self, db: Path, log: Path) -> None:
        self.db, self.log = db, log
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        args = [*_wes_command(), "bank", "serve", "--port", "0", "--db", str(self.db)]
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdout=subprocess.PIPE, stderr=log
            )
        assert self.proc.stdout is not None
        prefix = "wes bank: serving on "
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
            if not line:
                raise RuntimeError(f"wes bank serve exited before serving: {self.tail()}")
            text = line.decode().strip()
            if text.startswith(prefix):
                self.url = text.removeprefix(prefix)
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
                f"wes bank serve did not exit {STOP_TIMEOUT:.0f}s after SIGTERM: {self.tail()}"
            ) from None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


async def create_accounts(url: str, names: list[str]) -> None:
    """Create and fund each account in a session of its own, then end the session."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(client: httpx.AsyncClient, i: int, name: str) -> None:
        headers = {"User-Id": f"setup-{i}"}
        async with limit:
            for method, path, body, status in (
                ("POST", f"/{name}", None, 201),
                ("POST", f"/{name}/insert", {"amount": FUNDS}, 200),
                ("DELETE", "/", None, 200),
            ):
                response = await client.request(method, path, json=body, headers=headers)
                if response.status_code != status:
                    raise RuntimeError(
                        f"{method} {path} answered {response.status_code}: {response.text}"
                    )

    limits = httpx.Limits(max_connections=SETUP_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        await asyncio.gather(*(one(client, i, name) for i, name in enumerate(names)))


async def warm_transfers(url: str, pairs: list[tuple[str, str]]) -> None:
    """One transfer per load user and back, so its session holds its pair before timing."""
    limits = httpx.Limits(max_connections=SETUP_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:

        async def one(k: int, a: str, b: str) -> None:
            for source, target in ((a, b), (b, a)):
                response = await client.post(
                    f"/{source}/transfer",
                    json={"to": target, "amount": 1},
                    headers={"User-Id": f"load-{k}"},
                )
                if response.status_code != 200:
                    raise RuntimeError(
                        f"transfer {source} -> {target} answered {response.status_code}:"
                        f" {response.text}"
                    )

        await asyncio.gather(*(one(k, a, b) for k, (a, b) in enumerate(pairs)))


async def http_load(settings: Settings, want: Want) -> list[Row]:
    """http_constant_rps, http_balance_rps, http_balance_p99_ms, http_transfer_rps,
    http_transfer_p99_ms."""
    balance = want("http_balance_rps") or want("http_balance_p99_ms")
    transfer = want("http_transfer_rps") or want("http_transfer_p99_ms")
    constant = want("http_constant_rps") or want("http_balance_rps") or want("http_transfer_rps")
    if not (balance or transfer or constant):
        return []
    wrk = _wrk()
    seconds = 1 if settings.quick else 5
    names = [f"acct-{i}" for i in range(ACCOUNTS)]
    pairs = list(zip(names[0::2], names[1::2], strict=True))
    load = f"wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="wes-bench-http-") as tmp:
        server = Server(Path(tmp) / "bank.db", Path(tmp) / "server.log")
        stopped = False
        try:
            await server.start()
            await create_accounts(server.url, names)

            async def measure(name: str, path: str, script: str) -> Result:
                lua = Path(tmp) / f"{name}.lua"
                lua.write_text(script)
                return await run_wrk(wrk, server.url + path, lua, seconds, THREADS, CONNECTIONS)

            base: Result | None = None
            if constant:
                base = await measure("constant", "/healthz", constant_script())
                rows.append(
                    row(
                        "http_constant_rps",
                        base.ok_rate,
                        note=base.note(f"GET /healthz, {load}; p99 {base.p99_ms:.2f} ms"),
                    )
                )
            base_rate = None if base is None else base.ok_rate
            if balance:
                got = await measure("balance", "/", balance_script(names))
                what = f"GET /{{account}}/balance over {ACCOUNTS} accounts at rest, {load}"
                rows += [
                    row(
                        "http_balance_rps",
                        got.ok_rate,
                        base_rate,
                        note=got.note(what),
                    ),
                    row("http_balance_p99_ms", got.p99_ms),
                ]
            if transfer:
                await warm_transfers(server.url, pairs)
                got = await measure("transfer", "/", transfer_script(pairs, THREADS))
                what = (
                    f"POST /{{from}}/transfer, {len(pairs)} users each on its own pair of"
                    f" accounts, durable commits, {load}"
                )
                rows += [
                    row(
                        "http_transfer_rps",
                        got.ok_rate,
                        base_rate,
                        note=got.note(what),
                    ),
                    row("http_transfer_p99_ms", got.p99_ms),
                ]
            stopped = True
            code = await server.stop()
        finally:
            if not stopped:
                with contextlib.suppress(Exception):
                    await server.stop()
        if code != 0:
            raise RuntimeError(f"wes bank serve exited with {code} after SIGTERM: {server.tail()}")
    return rows
