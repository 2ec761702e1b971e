"""Node processes of a cluster over real NATS (`tests.cluster.node_worker`), driven from a
test: started together, asked to start channels, killed, frozen and thawed.

    async with node_processes(tmp_path, nats_url, lease=2.0) as c:
        await c.workers[0].ask("ensure", ["a"])     # ("log", "a") now runs on n0
        await c.driver.command(channel("a"), "add", "x")  # from the test's own node
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import wes
from tests.cluster.node_worker import configure
from tests.support.programs import ROOT, python_module
from tests.support.waiting import wait_until

START_TIMEOUT = 20.0  # seconds for a worker to come up on a busy machine
ANSWER_TIMEOUT = 20.0


class Worker:
    """One node process: its requests on stdin, its answers and events read from stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, address: str, stderr: Path) -> None:
        self.proc = proc
        self.address = address
        self.stderr = stderr
        self.lines: list[str] = []  # everything it printed, in order
        self.events: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self._answers: dict[str, asyncio.Future[list[Any]]] = {}
        self._seqs = iter(range(1 << 62))
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: dict[str, Any], stderr: Path) -> Worker:
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *python_module("tests.cluster.node_worker", json.dumps(config)),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return cls(proc, config["address"], stderr)

    async def wait_ready(self) -> None:
        """Wait until the node runs; fail at once, with its stderr, if it ended instead."""
        ready = asyncio.ensure_future(self.ready.wait())
        await asyncio.wait(
            [ready, self._reader], timeout=START_TIMEOUT, return_when="FIRST_COMPLETED"
        )
        if not ready.done():
            ready.cancel()
            raise AssertionError(f"{self.address} did not start: {self.why()}")

    def why(self) -> str:
        """The end of its output and its stderr, for a failure's message."""
        return f"{self.lines[-10:]}; stderr:\n{self.stderr.read_text()[-3000:]}"

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            head, _, rest = line.partition(" ")
            if head == "READY":
                self.ready.set()
            elif head == "EVENT":
                self.events.append(json.loads(rest))
            elif head in self._answers:
                self._answers.pop(head).set_result(json.loads(rest))
        for waiting in self._answers.values():
            waiting.set_exception(AssertionError(f"{self.address} ended: {self.why()}"))

    async def ask(self, op: str, names: list[str], at: float | None = None) -> list[Any]:
        """The worker's answer to `op` ("ensure" or "status") of each name's channel, done
        at the wall-clock time `at` if given (so that several workers start together)."""
        assert self.proc.stdin is not None
        seq = str(next(self._seqs))
        self._answers[seq] = answer = asyncio.get_running_loop().create_future()
        body = json.dumps({"names": names, "at": at})
        self.proc.stdin.write(f"{seq} {op} {body}\n".encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(answer, ANSWER_TIMEOUT)

    async def printed(self, line: str) -> None:
        """Wait until the worker printed `line`."""
        await wait_until(lambda: line in self.lines, timeout=ANSWER_TIMEOUT)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def stopped(self) -> None:
        """Wait until the process is stopped (state T)."""
        stat = Path(f"/proc/{self.proc.pid}/stat")
        await wait_until(lambda: stat.read_text().rpartition(")")[2].split()[0] == "T")

    async def kill(self) -> None:
        """SIGKILL, as a crash would; it may be frozen."""
        if self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
        await self.proc.wait()
        await self._reader


@dataclass
class Processes:
    """The running cluster: its node processes and the test's own node, the driver."""

    workers: list[Worker]
    driver: wes.Node
    registry_path: Path
    store_path: Path
    cluster: str

    def unlocked(self) -> bool:
        """Whether no process holds a SQLite write lock (a frozen one would block all)."""
        for path in (self.registry_path, self.store_path):
            with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as c:
                try:
                    c.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    return False
                c.execute("ROLLBACK")
        return True


@contextlib.asynccontextmanager
async def node_processes(
    tmp: Path,
    nats_url: str,
    *,
    count: int = 3,
    lease: float = 2.0,
    call_timeout: float = 2.0,
    freeze_before_write: dict[int, str] | None = None,
    placement: Literal["local", "hash"] = "local",
) -> AsyncIterator[Processes]:
    """`count` node processes `n0`, `n1`, ... and a driver node in this process, sharing a
    `SqliteRegistry`, a `SqliteStore` (files in `tmp`) and a NATS cluster of their own on the
    server at `nats_url`; every process is killed on exit."""
    cluster = f"t{uuid.uuid4().hex[:10]}"
    base = {
        "nats": nats_url,
        "cluster": cluster,
        "registry": str(tmp / "registry.db"),
        "store": str(tmp / "store.db"),
        "lease": lease,
        "call_timeout": call_timeout,
        "placement": placement,
    }
    freeze = freeze_before_write or {}
    workers: list[Worker] = []
    try:
        for i in range(count):
            config = {**base, "address": f"n{i}", "freeze_before_write": freeze.get(i)}
            workers.append(await Worker.start(config, tmp / f"n{i}.err"))
        for worker in workers:
            await worker.wait_ready()
        driver = wes.Node(
            store=wes.SqliteStore(tmp / "store.db"),
            registry=wes.SqliteRegistry(tmp / "registry.db"),
            address="driver",
            transport=wes.NatsTransport(nats_url, cluster=cluster),
            call_timeout=call_timeout,
        )
        configure(driver, lease, placement)
        async with driver:
            yield Processes(workers, driver, tmp / "registry.db", tmp / "store.db", cluster)
    finally:
        for worker in workers:
            await worker.kill()
