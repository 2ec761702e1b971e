"""The cluster rows: remote calls between node processes over a real nats-server.

The bench process is a node ("n0", owning nothing) that calls channels owned by node
processes (`cluster_child.py`), all on one private nats-server and shared SQLite files. Each
rate is paired, rounds interleaved, with raw nats-py request-reply between the same two
processes (a plain subscription in the child answering at once): what wes adds to the
transport it rides on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from cluster_child import channel_of, cluster_node, specs_of, timed_clients
from common import Loop, Row, Settings, calibrate, paired_rates, profiled
from rows import Want, names, row

import wes

ROWS = names("cluster")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHANNELS = 64  # per owner
CLIENTS = 64
RAW_PAYLOAD = b"x" * 180  # about a wes command request's size (the note gives the real one)


def _servers() -> Any:
    """`tests.support.servers`, which starts a private nats-server (from the repository)."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    return importlib.import_module("tests.support.servers")


class Child:
    """A node process (`cluster_child.py`), spoken to by JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process, address: str) -> None:
        self.proc = proc
        self.address = address

    @classmethod
    async def start(cls, url: str, folder: Path, address: str) -> Child:
        script = str(HERE / "cluster_child.py")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, script, url, str(folder), address, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        child = cls(proc, address)
        await child._answer()  # {"ready": pid}
        return child

    async def ask(self, **order: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(order).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._answer()

    async def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError(f"node process {self.address} exited ({await self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        """kill -9."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "exit"}\n')
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 20)
        self.kill()
        await self.proc.wait()


@contextlib.asynccontextmanager
async def children(url: str, folder: Path, addresses: list[str]) -> AsyncIterator[list[Child]]:
    """Node processes at `addresses`, started together (they import wes in parallel)."""
    started = await asyncio.gather(
        *(Child.start(url, folder, a) for a in addresses), return_exceptions=True
    )
    ok = [c for c in started if isinstance(c, Child)]
    try:
        for c in started:
            if isinstance(c, BaseException):
                raise c
        yield ok
    finally:
        await asyncio.gather(*(c.close() for c in ok))


async def cluster(settings: Settings, want: Want) -> list[Row]:
    """cluster_command_1client, cluster_command_64clients, cluster_read_1client,
    failover_seconds, cluster_scaling."""
    import nats

    rows: list[Row] = []
    with _servers().nats_server() as server, tempfile.TemporaryDirectory(prefix="wes-") as tmp:
        folder = Path(tmp)
        node = cluster_node(server.url, folder, "n0")
        raw = await nats.connect(server.url)
        scaling = ["n1", "n2", "n3", "n4"] if want("cluster_scaling") else ["n1"]
        try:
            async with node, children(server.url, folder, scaling) as kids:
                await asyncio.gather(*(k.ask(op="own", n=CHANNELS) for k in kids))
                rows += await round_trips(settings, want, node, raw)
                if want("cluster_scaling"):
                    rows.append(await cluster_scaling(settings, node, kids))
                if want("failover_seconds"):
                    rows.append(await failover(settings, node, server.url, folder))
        finally:
            await raw.close()
    return rows


# -- remote commands and reads against raw request-reply ----------------------------------


async def round_trips(settings: Settings, want: Want, node: wes.Node, raw: Any) -> list[Row]:
    subject = "raw.n1"
    channels = [channel_of("n1", i) for i in range(CHANNELS)]
    command, read = node.command, node.read

    async def raw_one(n: int) -> None:
        request = raw.request
        for _ in range(n):
            await request(subject, RAW_PAYLOAD, timeout=10)

    async def raw_many(n: int) -> None:
        async def client(m: int) -> None:
            await raw_one(m)

        await asyncio.gather(*(client(max(1, n // CLIENTS)) for _ in range(CLIENTS)))

    async def command_one(n: int) -> None:
        channel = channels[0]
        for _ in range(n):
            await command(channel, "incr", 1)

    async def command_many(n: int) -> None:
        async def client(k: int, m: int) -> None:
            for i in range(m):
                await command(channels[(k + i) % CHANNELS], "incr", 1)

        await asyncio.gather(*(client(k, max(1, n // CLIENTS)) for k in range(CLIENTS)))

    async def read_one(n: int) -> None:
        actor = ("counter", channels[0][1])
        for _ in range(n):
            await read(actor, "value")

    plan: list[tuple[str, Loop, Loop]] = [
        ("cluster_command_1client", raw_one, command_one),
        ("cluster_command_64clients", raw_many, command_many),
        ("cluster_read_1client", raw_one, read_one),
    ]
    rows = []
    for name, base_loop, wes_loop in plan:
        if not want(name):
            continue
        base, value = await _rounds(base_loop, wes_loop, settings)
        note = (
            f"median of {len(value)} rounds, wes {_spread(value)}, raw nats-py request-reply"
            f" ({len(RAW_PAYLOAD)} B) {_spread(base)}"
        )
        rows.append(row(name, statistics.median(value), statistics.median(base), note))
        if settings.profile:
            n = await calibrate(wes_loop, settings.seconds)
            await profiled(settings, name, _bind(wes_loop, n))
    return rows


async def _rounds(base: Loop, subject: Loop, settings: Settings) -> tuple[list[float], list[float]]:
    """The rates of each round, the two loops alternated (each round calibrated anew)."""
    pairs = [await paired_rates(base, subject, settings.seconds, 1) for _ in range(settings.reps)]
    return [b for b, _ in pairs], [s for _, s in pairs]


def _spread(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})/s"


def _bind(body: Loop, n: int) -> Callable[[], Awaitable[None]]:
    return lambda: body(n)


# -- throughput with 1, 2 and 4 node processes ---------------------------------------------


async def cluster_scaling(settings: Settings, node: wes.Node, kids: list[Child]) -> Row:
    """Remote commands/s in all, by 64 clients per commanding node over the channels of the
    others: with 1 owner (clients in the bench process), 2 and 4 (each owner commands the
    other owners' channels); the sizes interleaved, rounds alternated."""
    seconds = 0.3 if settings.quick else 1.5
    rates: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for _ in range(max(1, settings.reps - 2)):
        for size in rates:
            at = time.time() + 0.3  # every process starts its clients, then counts from `at`
            if size == 1:
                counts = [await timed_clients(node, CLIENTS, ["n1"], CHANNELS, at, seconds)]
            else:
                owners = [k.address for k in kids[:size]]
                counts = await asyncio.gather(
                    *(
                        _count(k, [o for o in owners if o != k.address], at, seconds)
                        for k in kids[:size]
                    )
                )
            rates[size].append(sum(counts) / seconds)
    med = {size: statistics.median(r) for size, r in rates.items()}
    note = "; ".join(
        f"{size} node{'s' if size > 1 else ''}: {med[size]:,.0f} ({min(r):,.0f}-{max(r):,.0f})"
        for size, r in rates.items()
    )
    return row("cluster_scaling", med[4], med[1], f"commands/s, value 4 nodes, baseline 1: {note}")


async def _count(kid: Child, owners: list[str], at: float, seconds: float) -> int:
    got = await kid.ask(
        op="clients", clients=CLIENTS, owners=owners, n=CHANNELS, at=at, seconds=seconds
    )
    count: int = got["count"]
    return count


# -- failover ------------------------------------------------------------------------------


async def failover(settings: Settings, node: wes.Node, url: str, folder: Path) -> Row:
    """Seconds from kill -9 of a channel's owner (lease 2 s) to the first command
    acknowledged elsewhere, by a loop of `ensure_channel` then `command` as a service
    would run; the median of a few runs, each with a fresh owner process."""
    runs: list[float] = []
    errors: set[str] = set()
    for k in range(1 if settings.quick else 5):
        address = f"f{k}"
        async with children(url, folder, [address]) as (owner,):
            await owner.ask(op="own", n=1, type="failover")
            channel = channel_of(address, 0, "failover")
            for _ in range(10):  # the owner is remembered, and the path warm
                await node.ensure_channel(channel, specs_of(channel))
                await node.command(channel, "incr", 1)
            owner.kill()
            killed = time.monotonic()
            await owner.proc.wait()
            runs.append(await _first_ack(node, channel, errors) - killed)
    note = (
        f"runs {', '.join(f'{r:.2f}' for r in runs)} s; lease 2 s; errors retried:"
        f" {', '.join(sorted(errors)) or 'none'}"
    )
    return row("failover_seconds", statistics.median(runs), None, note)


async def _first_ack(node: wes.Node, channel: tuple[str, str], errors: set[str]) -> float:
    while True:
        try:
            await node.ensure_channel(channel, specs_of(channel))
            await node.command(channel, "incr", 1)
            return time.monotonic()
        except wes.WesError as exc:
            errors.add(type(exc).__name__)
            await asyncio.sleep(0.05)
