"""A cluster of processes over a real NATS server: three node processes
(`tests.cluster.node_worker`) and the test's own node, the driver, share a `SqliteRegistry`,
a `SqliteStore` and one NATS server; the driver issues commands through them while a test
kills an owner, freezes one past its lease, or restarts the NATS server.

Every command appends a unique id to its channel's list (`durability="command"`), and the
driver notes what each call answered, so the stored lists show what ran: an acknowledged id
exactly once, an id that got `OutcomeUnknown` at most once, any other id never.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nats
import pytest

import wes
from tests.cluster.node_worker import actor, channel
from tests.support.node_processes import Processes, node_processes
from tests.support.servers import nats_server
from tests.support.waiting import wait_until
from wes._backends.nats import subject_token
from wes._wire import decode_answer, encode_request

pytestmark = [pytest.mark.nats, pytest.mark.subprocess]  # node processes on a NATS server

LEASE = 2.0
CALL_TIMEOUT = 2.0
MARGIN = 1.0  # seconds a failed call may take past `call_timeout` on a busy machine
MAY_HAVE_RUN = {"ok", "OutcomeUnknown"}


@dataclass
class Sent:
    """One command the driver sent: what it answered, when, and how long it took."""

    name: str
    outcome: str
    at: float
    seconds: float


@dataclass
class Load:
    """Commands sent from the driver, one at a time per loop, until `stop` is set."""

    driver: wes.Node
    sent: dict[str, Sent] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def send(self, name: str, id: str | None = None) -> str:
        """Send one `add` to `name`'s channel; what it answered ("ok" or an error type)."""
        id = id or f"{name}-{next(self._ids)}"
        started = time.monotonic()
        try:
            await self.driver.command(channel(name), "add", id)
            outcome = "ok"
        except wes.WesError as exc:
            outcome = type(exc).__name__
        self.sent[id] = Sent(name, outcome, started, time.monotonic() - started)
        return outcome

    async def loop(self, name: str) -> None:
        while not self.stop.is_set():
            if await self.send(name) != "ok":
                await asyncio.sleep(0.05)  # paces a loop whose calls fail at once

    def acked(self, name: str | None = None, since: float = 0.0) -> int:
        return sum(
            s.outcome == "ok" and s.at >= since and name in (None, s.name)
            for s in self.sent.values()
        )

    def outcomes(self) -> Counter[str]:
        return Counter(s.outcome for s in self.sent.values())

    async def check(self, names: list[str]) -> None:
        """The stored lists hold each acknowledged id once, each id that may have run at most
        once, and nothing else."""
        for name in names:
            stored = await self.driver.stored(actor(name))
            ids = [] if stored is None else stored.ids  # type: ignore[attr-defined]
            assert len(ids) == len(set(ids)), f"{name}: applied twice: {ids}"
            for id in ids:
                assert id in self.sent and self.sent[id].name == name, f"{name}: {id} never sent"
                assert self.sent[id].outcome in MAY_HAVE_RUN, (id, self.sent[id])
            acked = {id for id, s in self.sent.items() if s.name == name and s.outcome == "ok"}
            assert acked <= set(ids), f"{name}: acknowledged but lost: {acked - set(ids)}"


def owners(answers: list[dict[str, object]]) -> list[object]:
    return [a.get("owner", a.get("error")) for a in answers]


async def run_again_on(worker_index: int, c: Processes, names: list[str], within: float) -> None:
    """Ask a worker to `ensure_channel` each name until it runs them all."""
    worker = c.workers[worker_index]
    deadline = time.monotonic() + within
    while owners(await worker.ask("ensure", names)) != [worker.address] * len(names):
        assert time.monotonic() < deadline, f"not running on {worker.address} in {within}s"
        await asyncio.sleep(0.05)


# --- 1. an owner killed mid-load ----------------------------------------------------------


async def test_owner_killed_mid_load_loses_no_acknowledged_command(
    tmp_path: Path, nats_url: str
) -> None:
    """An owner killed with SIGKILL under load loses no acknowledged command and applies
    none twice, and its channels run again on another node within lease + 1 s."""
    names = ["k0", "k1", "k2", "k3"]
    async with node_processes(tmp_path, nats_url, lease=LEASE, call_timeout=CALL_TIMEOUT) as c:
        assert owners(await c.workers[0].ask("ensure", names)) == ["n0"] * 4
        load = Load(c.driver)
        loops = [asyncio.create_task(load.loop(name)) for name in names for _ in range(2)]
        await wait_until(lambda: load.acked() >= 40, timeout=10)
        c.workers[0].proc.kill()
        killed = time.monotonic()
        await run_again_on(1, c, names, within=LEASE + 5)
        failover = time.monotonic() - killed
        await wait_until(lambda: all(load.acked(n, since=killed + failover) for n in names), 10)
        load.stop.set()
        await asyncio.gather(*loops)
        await load.check(names)
        print(f"failover {failover:.2f}s; outcomes {dict(load.outcomes())}")
        assert failover <= LEASE + 1.0, f"failover took {failover:.2f}s"


# --- 2. an owner frozen past its lease ----------------------------------------------------


async def raw_request(url: str, c: Processes, address: str, id: str) -> bytes:
    """A command `add(id)` to `f`'s channel sent straight to the node at `address`, with a
    deadline far ahead (so only the lease check can refuse it); its raw answer."""
    data = encode_request(
        "command",
        channel("f"),
        name="add",
        args=[id],
        rid=f"raw-{id}",
        deadline=time.time() + 60,
        max_payload=1 << 20,
    )
    client = await nats.connect(url)
    try:
        msg = await client.request(f"{c.cluster}.node.{subject_token(address)}", data, 20)
        return msg.data
    finally:
        await client.close()


async def test_owner_frozen_past_its_lease_executes_nothing_queued_and_is_fenced(
    tmp_path: Path, nats_url: str
) -> None:
    """An owner stopped (SIGSTOP) in front of a durable write until past its lease, then
    continued, executes none of the commands queued for it meanwhile (they time out or are
    refused), its late write is refused (StaleToken), and the new owner's state wins."""
    freeze = {0: "late"}
    async with node_processes(
        tmp_path, nats_url, lease=LEASE, call_timeout=CALL_TIMEOUT, freeze_before_write=freeze
    ) as c:
        n0 = c.workers[0]
        assert owners(await n0.ask("ensure", ["f"])) == ["n0"]
        load = Load(c.driver)
        for _ in range(3):
            assert await load.send("f") == "ok"
        late = asyncio.create_task(load.send("f", "late"))
        await n0.printed("W late")
        await n0.stopped()
        frozen = time.monotonic()
        await wait_until(c.unlocked)
        raw = [asyncio.create_task(raw_request(nats_url, c, "n0", f"raw-{i}")) for i in range(3)]
        queued = [asyncio.create_task(load.send("f", f"queued-{i}")) for i in range(3)]
        assert await late == "OutcomeUnknown"
        assert await asyncio.gather(*queued) == ["OutcomeUnknown"] * 3

        await run_again_on(1, c, ["f"], within=LEASE + 5)
        assert time.monotonic() - frozen >= LEASE * 0.5
        assert await load.send("f", "after-0") == "ok"  # written by n1, a newer token
        n0.signal(signal.SIGCONT)
        for answer in [decode_answer(data) for data in await asyncio.gather(*raw)]:
            assert not answer.ok and answer.refused in ("not_here", "expired"), answer
        await wait_until(lambda: len(n0.events) >= 2, timeout=10)
        assert load.sent["after-0"].outcome == "ok"
        assert await load.send("f", "after-1") == "ok"

        # The late write reached the store, which refused it; the channel stopped as one
        # whose lease was lost (found by that write or by the lease sweep, whichever first,
        # so the stop may be reported before or after the refused save).
        events = [(e["kind"], e["name"], e["error"]) for e in n0.events]
        [fenced] = [e for e in events if e[0] == "save"]
        [stop] = [e for e in events if e[0] == "stop"]
        assert fenced == ("save", "error", "StaleToken"), n0.lines
        assert stop in (("stop", "lease_lost", "StaleToken"), ("stop", "lease_lost", "LeaseLost"))
        stored = await c.driver.stored(actor("f"))
        assert stored is not None
        assert stored.ids == ["f-0", "f-1", "f-2", "after-0", "after-1"]  # type: ignore[attr-defined]
        assert owners(await n0.ask("status", ["f"])) == ["n1"]
        assert await c.driver.registry.holder("channel", channel("f")) == "n1"


# --- 3. the NATS server restarted under load ----------------------------------------------

FAILED_AS = {"NodeUnreachable", "OutcomeUnknown"}


async def test_nats_restart_under_load_fails_calls_in_time_and_recovers(tmp_path: Path) -> None:
    """While the NATS server is down, calls fail with `NodeUnreachable` or `OutcomeUnknown`
    within `call_timeout` (never hang); once it is back on the same port, calls to every node
    work again by themselves; nothing acknowledged is lost, nothing unreachable ran."""
    names = ["a0", "a1", "b0", "b1", "c0", "c1"]
    with nats_server() as server:
        async with node_processes(tmp_path, server.url, call_timeout=CALL_TIMEOUT) as c:
            for i, worker in enumerate(c.workers):
                pair = names[2 * i : 2 * i + 2]
                assert owners(await worker.ask("ensure", pair)) == [worker.address] * 2
            load = Load(c.driver)
            loops = [asyncio.create_task(load.loop(name)) for name in names for _ in range(2)]
            await wait_until(lambda: all(load.acked(n) >= 3 for n in names), timeout=10)
            await asyncio.to_thread(server.stop)
            stopped = time.monotonic()
            await wait_until(lambda: failures_since(load, stopped) >= len(loops), timeout=10)
            await asyncio.to_thread(server.start)
            started = time.monotonic()
            await wait_until(lambda: all(load.acked(n, since=started) for n in names), 15)
            recovered = time.monotonic() - started
            load.stop.set()
            await asyncio.gather(*loops)
            await load.check(names)
            failed = [s for s in load.sent.values() if s.outcome != "ok"]
            print(f"recovered in {recovered:.2f}s; outcomes {dict(load.outcomes())}")
            assert {s.outcome for s in failed} <= FAILED_AS, load.outcomes()
            slowest = max(s.seconds for s in failed)
            assert slowest <= CALL_TIMEOUT + MARGIN, f"a failed call took {slowest:.2f}s"


def failures_since(load: Load, since: float) -> int:
    return sum(s.outcome != "ok" and s.at >= since for s in load.sent.values())


# --- 4. ensure_channel raced from every process -------------------------------------------


@pytest.mark.parametrize("placement", ["local", "hash"])
async def test_ensure_raced_from_three_processes_gives_one_owner(
    tmp_path: Path, nats_url: str, placement: Literal["local", "hash"]
) -> None:
    """3 processes x 200 concurrent `ensure_channel` of 50 names: every answer for a name
    names one owner, which the registry holds it for and which runs it. (Under "hash" the
    driver is a live node too, so it takes its share.)"""
    names = [f"r{i}" for i in range(50)]
    calls = [names[i % len(names)] for i in range(200)]
    # Each process starts from other names, so that every name is contested by claims.
    orders = [calls[17 * i :] + calls[: 17 * i] for i in range(3)]
    async with node_processes(
        tmp_path, nats_url, lease=10.0, call_timeout=10.0, placement=placement
    ) as c:
        at = time.time() + 0.3
        asks = [w.ask("ensure", o, at) for w, o in zip(c.workers, orders, strict=True)]
        answers = await asyncio.gather(*asks)
        by_name: dict[str, set[object]] = {name: set() for name in names}
        for order, answer in zip(orders, answers, strict=True):
            for name, got in zip(order, answer, strict=True):
                assert "owner" in got, got.get("traceback", got)
                assert got["actors"] == [list(actor(name))], got
                by_name[name].add(got["owner"])
        two = {name: found for name, found in by_name.items() if len(found) != 1}
        assert two == {}, f"names with more than one owner: {two}"
        for name, (owner,) in by_name.items():
            assert await c.driver.registry.holder("channel", channel(name)) == owner
        statuses = await asyncio.gather(*(w.ask("status", names) for w in c.workers))
        for status in statuses:
            assert owners(status) == [next(iter(by_name[name])) for name in names]
        spread = Counter(next(iter(found)) for found in by_name.values())
        print(f"owners: {dict(spread)}")
