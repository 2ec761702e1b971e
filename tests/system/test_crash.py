"""Crash consistency: a worker process banking on SQLite is killed with SIGKILL at random moments.

After every kill the persisted accounts must be a consistent cut: the money is conserved, and
each account's balance is exactly its start plus the transfers its counter says it applied, in
order (the worker logs every transfer before sending it). Under `durability="command"` no
acknowledged transfer is lost: each account's stored counter is at least the highest the
worker saw acknowledged. Set WES_CRASH_SEED to replay a run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import wes
from tests.system.crash_worker import ACCOUNTS, INITIAL

pytestmark = pytest.mark.subprocess  # every test runs and kills crash_worker

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = 6
START_TIMEOUT = 20.0


@dataclass
class Ledger:
    """What the worker said it did, replayed against what the store holds."""

    # account -> seq -> (tid, delta): the transfer that took the account to that seq
    history: dict[str, dict[int, tuple[str, int]]] = field(
        default_factory=lambda: {a: {} for a in ACCOUNTS}
    )
    # tid -> ((src, src_seq), (dst, dst_seq))
    sent: dict[str, tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=dict)
    acked_total: int = 0

    def feed(self, lines: list[str]) -> dict[str, int]:
        """Take one run's output; return the highest acknowledged seq per account in it."""
        acked: dict[str, int] = {}
        for line in lines:
            kind, *rest = line.split()
            if kind == "S":
                tid, src, src_seq, dst, dst_seq, amount = rest
                # a later line for the same seq wins: it belongs to the state that survived
                self.history[src][int(src_seq)] = (tid, -int(amount))
                self.history[dst][int(dst_seq)] = (tid, int(amount))
                self.sent[tid] = ((src, int(src_seq)), (dst, int(dst_seq)))
            elif kind == "A":
                self.acked_total += 1
                for account, seq in self.sent[rest[0]]:
                    acked[account] = max(acked.get(account, 0), seq)
        return acked

    def check(
        self, states: dict[str, dict[str, Any]], acked: dict[str, int], durable: bool
    ) -> None:
        """Assert `states` is a consistent cut (and, if `durable`, holds every ack)."""
        assert set(states) <= set(ACCOUNTS), sorted(states)
        total = sum(s["balance"] for s in states.values())
        assert total == INITIAL * len(states), f"money not conserved: {total} in {len(states)}"
        for account in ACCOUNTS:
            state = states.get(account, {"balance": INITIAL, "seq": 0, "last": ""})
            seq = state["seq"]
            hist = self.history[account]
            for lost in [s for s in hist if s > seq]:
                del hist[lost]  # applied in memory only (or never): gone with the process
            assert sorted(hist) == list(range(1, seq + 1)), (
                f"{account}: stored seq {seq} but the worker logged seqs {sorted(hist)[-5:]}"
            )
            expected = INITIAL + sum(delta for _, delta in hist.values())
            assert state["balance"] == expected, (
                f"{account}: balance {state['balance']} != replayed {expected} at seq {seq}"
            )
            if seq:
                assert state["last"] == hist[seq][0], f"{account}: last transfer differs"
            if durable:
                assert seq >= acked.get(account, 0), (
                    f"{account}: acknowledged seq {acked[account]} lost, stored {seq}"
                )


def read_lines(path: Path) -> list[str]:
    """Complete lines of a worker's stdout; a line cut by the kill is dropped."""
    text = path.read_text()
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]


async def stored_accounts(db: Path) -> dict[str, dict[str, Any]]:
    codec = wes.JsonCodec()
    async with wes.SqliteStore(db) as store:
        return {
            key.removeprefix("account/"): codec.decode(record.data)
            async for key, record in store.scan("account/")
        }


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


class Worker:
    def __init__(self, tmp: Path, durability: str, run: int, seed: int, seconds: float | None):
        self.out = tmp / f"run{run}.out"
        self.err = tmp / f"run{run}.err"
        args = [sys.executable, str(WORKER), str(tmp / "bank.db"), durability, str(run), str(seed)]
        if seconds is not None:
            args.append(str(seconds))
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=tmp)

    def why(self) -> str:
        return f"worker exit {self.proc.returncode}; stderr:\n{self.err.read_text()[-3000:]}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while "READY" not in read_lines(self.out):
            assert self.proc.poll() is None, self.why()
            assert time.monotonic() < deadline, "worker did not start in time"
            time.sleep(0.01)

    def kill(self) -> None:
        assert self.proc.poll() is None, f"worker died before the kill: {self.why()}"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL, self.why()

    def finish(self) -> None:
        try:
            self.proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("worker did not stop normally in time") from None
        assert self.proc.returncode == 0, self.why()
        assert read_lines(self.out)[-1] == "DONE"


@pytest.mark.parametrize("durability", ["command", "periodic"])
def test_sigkill_leaves_consistent_cut(tmp_path: Path, durability: str) -> None:
    """SIGKILLed at random moments, the worker leaves a consistent cut of its accounts on disk,
    and under durability="command" every acknowledged transfer."""
    seed = int(os.environ.get("WES_CRASH_SEED", random.randrange(2**31)))
    rng = random.Random(seed)
    ledger = Ledger()
    durable = durability == "command"
    db = tmp_path / "bank.db"
    kills_after_work = 0
    for run in range(KILLS + 1):
        last = run == KILLS
        worker = Worker(tmp_path, durability, run, rng.randrange(2**31), 0.5 if last else None)
        try:
            worker.wait_ready()
            if last:
                worker.finish()
            else:
                time.sleep(rng.uniform(0.2, 1.0))
                worker.kill()
        finally:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()
        acked = ledger.feed(read_lines(worker.out))
        kills_after_work += bool(acked) and not last
        where = f"(seed {seed}, {durability}, run {run}, {'clean stop' if last else 'kill'})"
        assert integrity(db) == "ok", where
        states = asyncio.run(stored_accounts(db))
        try:
            ledger.check(states, acked, durable)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    assert ledger.acked_total >= 50, f"the worker barely worked: {ledger.acked_total} acks"
    assert kills_after_work >= KILLS // 2, f"only {kills_after_work} kills hit a working worker"
