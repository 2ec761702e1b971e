"""wrk, the HTTP load generator of the HTTP rows: its Lua scripts and one run's figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

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
    cpu_us: float | None = None  # the server's CPU time per response (all its threads)

    @property
    def ok_rate(self) -> float:
        """Successful responses per second."""
        return (self.requests - self.non_2xx) / self.seconds

    @property
    def failed(self) -> int:
        """Responses outside 2xx and 3xx, and socket errors."""
        return self.non_2xx + sum(self.socket_errors.values())

    @property
    def many_errors(self) -> bool:
        return self.failed > MANY_ERRORS * max(1, self.requests)

    def summary(self) -> str:
        """Rate and latencies in a few words, and the failures if any."""
        text = f"{self.ok_rate:,.0f} rps, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
        if self.cpu_us is not None:
            text += f", server CPU {self.cpu_us:.0f} us/request"
        if self.failed:
            errors = {k: v for k, v in self.socket_errors.items() if v}
            details = ", ".join(
                f"{k} {v:,}" for k, v in {"non-2xx": self.non_2xx, **errors}.items()
            )
            text += f" ({self.failed:,} failed: {details})"
        return text


def find_wrk() -> str:
    """The path of wrk, or `RuntimeError` saying how to install it."""
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
