"""The program `test_crash.py` runs and kills: a bank on a SQLite store, moving money fast.

Usage: python crash_worker.py DB DURABILITY RUN SEED [SECONDS]

Accounts are actors; each session channel holds two of them and gets `transfer` commands,
broadcast to both: the source debits, the destination credits, so the total money is constant
at every command boundary. Each account counts the transfers it applied (`seq`, rising by one
per transfer) and remembers the last one (`last`). The worker reads the counters when a session
starts, so it knows which `seq` each transfer gives each account, and prints, flushing each line:

    READY                                       node started
    S <tid> <src> <src_seq> <dst> <dst_seq> <amount>   before sending a transfer
    A <tid>                                     the transfer was acknowledged
    F <tid>                                     it raised Overdraft: the session died unsaved
    DONE                                        (with SECONDS) the node stopped normally

Without SECONDS it runs until killed; with SECONDS it stops normally after that long. Any
other failure escapes and ends the process with a traceback and a non-zero status.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any, Literal

import wes

ACCOUNTS = [f"a{i:02}" for i in range(16)]
INITIAL = 1000
CLIENTS = 6


class Overdraft(Exception):
    """A transfer larger than the source's balance; it kills its session unsaved."""


class SeqMismatch(Exception):
    """The worker's idea of an account's counter is wrong: a bug somewhere."""


class Account(wes.Actor):
    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.seq = 0
        self.last = ""

    @wes.command
    def transfer(
        self, tid: str, src: str, src_seq: int, dst: str, dst_seq: int, amount: int
    ) -> None:
        name = self.id[1]
        if name == src:
            expected, delta = src_seq, -amount
            if self.balance < amount:
                raise Overdraft(f"{name}: balance {self.balance} < {amount}")
        elif name == dst:
            expected, delta = dst_seq, amount
        else:
            raise SeqMismatch(f"{name} got transfer {tid} between {src} and {dst}")
        if self.seq + 1 != expected:
            raise SeqMismatch(f"{name}: seq {self.seq}, transfer {tid} expects {expected - 1}")
        self.balance += delta
        self.seq = expected
        self.last = tid

    @wes.read("seq")
    def current_seq(self) -> int:
        return self.seq


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def client(node: wes.Node, run: str, cid: int, rng: random.Random, stop: list[bool]) -> None:
    n = 0
    count = 0
    while not stop[0]:
        a, b = rng.sample(ACCOUNTS, 2)
        ch = ("session", f"{run}.{cid}.{n}")
        n += 1
        specs = [wes.load_or_create(("account", x), INITIAL) for x in (a, b)]
        try:
            await node.create_channel(ch, specs)
        except wes.ActorAlreadyLocked:
            await asyncio.sleep(0.001)
            continue
        seq = {x: await node.read(("account", x), "seq") for x in (a, b)}
        alive = True
        for _ in range(rng.randint(1, 30)):
            src, dst = rng.sample([a, b], 2)
            amount = rng.randint(1, 400)
            count += 1
            tid = f"{run}.{cid}.{count}"
            args: list[Any] = [tid, src, seq[src] + 1, dst, seq[dst] + 1, amount]
            out("S " + " ".join(map(str, args[:5])) + f" {amount}")
            try:
                await node.command(ch, "transfer", *args)
            except Overdraft:
                out(f"F {tid}")
                alive = False
                break
            seq[src] += 1
            seq[dst] += 1
            out(f"A {tid}")
        if alive:
            await node.stop_channel(ch)


async def main(
    db: str, durability: Literal["periodic", "command"], run: str, seed: int, seconds: float | None
) -> None:
    node = wes.Node(store=wes.SqliteStore(db), registry=wes.MemoryRegistry())
    node.actor_type("account", Account)
    node.channel_type(
        "session",
        idle_timeout=None,
        save_interval=0.05 if durability == "periodic" else None,
        lease=30.0,
        durability=durability,
    )
    stop = [False]
    async with node:
        out("READY")
        tasks = [
            asyncio.create_task(client(node, run, cid, random.Random(seed * 100 + cid), stop))
            for cid in range(CLIENTS)
        ]
        if seconds is None:
            await asyncio.gather(*tasks)
        else:
            await asyncio.sleep(seconds)
            stop[0] = True
            await asyncio.gather(*tasks)
    out("DONE")


if __name__ == "__main__":
    db, durability, run, seed = sys.argv[1:5]
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else None
    if durability == "periodic":
        asyncio.run(main(db, "periodic", run, int(seed), seconds))
    elif durability == "command":
        asyncio.run(main(db, "command", run, int(seed), seconds))
    else:
        sys.exit(f"durability must be periodic or command, not {durability!r}")
