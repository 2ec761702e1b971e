"""One node process of the cluster benchmarks (`bench/cluster.py` drives it).

Usage: python bench/cluster_child.py NATS_URL DIR ADDRESS

The node shares `DIR/registry.db` (SqliteRegistry) and `DIR/store.db` (SqliteStore) with the
other processes and talks to them over NATS (cluster "bench"). Beside it, a plain nats-py
connection answers requests on `raw.<ADDRESS>` at once: the baseline, raw request-reply into
this very process. Orders come as JSON lines on stdin, one answer line each on stdout:

    {"op": "own", "n": N, "type": T}  start channels (T, "ADDRESS.i") with counters, i < N
    {"op": "clients", ...}    run `timed_clients` (see there), answer {"count": C}
    {"op": "exit"}
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors import Counter

import wes

CLUSTER = "bench"
FAILOVER_LEASE = 2.0


def cluster_node(url: str, folder: Path, address: str) -> wes.Node:
    """A node of the benchmark cluster on the shared SQLite files and NATS: channels of type
    "bench" (lease 30 s) for the rates, of type "failover" (lease 2 s) for failover."""
    node = wes.Node(
        store=wes.SqliteStore(folder / "store.db", synchronous="NORMAL"),
        registry=wes.SqliteRegistry(folder / "registry.db"),
        transport=wes.NatsTransport(url, cluster=CLUSTER),
        address=address,
        call_timeout=10.0,
    )
    node.actor_type("counter", Counter)
    node.channel_type("bench")
    node.channel_type("failover", lease=FAILOVER_LEASE, save_interval=0.5)
    return node


def channel_of(owner: str, i: int, type: str = "bench") -> tuple[str, str]:
    return (type, f"{owner}.{i}")


def specs_of(channel: tuple[str, str]) -> list[wes.Spec]:
    return [wes.load_or_create(("counter", channel[1]))]


async def own(node: wes.Node, n: int, type: str) -> None:
    """Start `n` channels of `type` here, each holding one counter of the same id."""
    for i in range(n):
        ident = channel_of(node.address, i, type)
        await node.ensure_channel(ident, specs_of(ident))


async def timed_clients(
    node: wes.Node, clients: int, owners: Sequence[str], n: int, at: float, seconds: float
) -> int:
    """Commands acknowledged within the wall-clock window [at, at + seconds] by `clients`
    loops, each over the `n` channels of every owner in its own random order (drawn first)."""
    targets = [channel_of(owner, i) for owner in owners for i in range(n)]
    orders = [random.Random(k).sample(targets, len(targets)) for k in range(clients)]
    counted = [0]
    end = at + seconds

    async def client(order: list[tuple[str, str]]) -> None:
        command, clock = node.command, time.time
        for channel in itertools.cycle(order):
            await command(channel, "incr", 1)
            now = clock()
            if now >= end:
                return
            if now >= at:
                counted[0] += 1

    await asyncio.gather(*(client(order) for order in orders))
    return counted[0]


async def raw_responder(url: str, address: str) -> Any:
    """A nats-py connection answering every request on `raw.<address>` with b"ok"."""
    import nats

    nc = await nats.connect(url)

    async def echo(msg: Any) -> None:
        await nc.publish(msg.reply, b"ok")

    await nc.subscribe(f"raw.{address}", cb=echo)
    await nc.flush()
    return nc


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    node = cluster_node(args.url, Path(args.dir), args.address)
    raw = await raw_responder(args.url, args.address)
    async with node:
        answer({"ready": os.getpid()})
        while line := await reader.readline():
            order = json.loads(line)
            if order["op"] == "exit":
                break
            if order["op"] == "own":
                await own(node, order["n"], order.get("type", "bench"))
                answer({"ok": True})
            elif order["op"] == "clients":
                fields = ("clients", "owners", "n", "at", "seconds")
                count = await timed_clients(node, *(order[f] for f in fields))
                answer({"count": count})
    await raw.close()


def answer(value: dict[str, Any]) -> None:
    print(json.dumps(value), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("dir")
    parser.add_argument("address")
    asyncio.run(serve(parser.parse_args()))
    sys.stdout.flush()
    os._exit(0)  # the node closed (channels saved); skip the interpreter's slow teardown


if __name__ == "__main__":
    main()
