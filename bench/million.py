"""Child process of the benchmark: start N live channels, report max RSS and creation rate.

Usage: python bench/million.py N [BUDGET]. Stops creating after BUDGET seconds if it has not
reached N by then. Prints one JSON object on stdout: {"channels": created, "seconds": ...,
"rate": channels/s, "max_rss_bytes": ..., "rss_bytes": ..., "stopped": {reason: count} of
channels that stopped meanwhile (none should)}.

Each channel holds one small actor, with the default channel settings, a `MemoryRegistry`
and a `MemoryStore` (creating an actor reads the store, but nothing is written before the
first periodic save). The process exits hard after reporting: stopping a million channels
normally would save them all, which is not what is measured here.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

from actors import Counter

import wes

YIELD_EVERY = 100


def max_rss_bytes() -> int:
    """The peak resident set of this process since its exec (VmHWM)."""
    # Not ru_maxrss: Linux carries the forking parent's peak over exec into it.
    return _status("VmHWM")


def rss_bytes() -> int:
    return _status("VmRSS")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def main(n: int, budget: float) -> None:
    stats = wes.MemoryStats()
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry(), stats=stats)
    node.actor_type("counter", Counter)
    node.channel_type("live")
    await node.start()
    create_channel, create = node.create_channel, wes.create
    start = time.perf_counter()
    deadline = start + budget
    created = 0
    for i in range(n):
        await create_channel(("live", i), create(("counter", i)))
        created += 1
        if i % YIELD_EVERY == 0:
            # Creating a channel need not suspend; a server creating them on requests would
            # return to the loop between requests, which lets the node renew leases in time.
            await asyncio.sleep(0)
            if time.perf_counter() > deadline:
                break
    seconds = time.perf_counter() - start
    await asyncio.sleep(0.5)  # let the wheel catch up with due deadlines
    counts = stats.counts()
    stopped = {name: v for (kind, name), v in counts.items() if kind == "stop"}
    report = {
        "channels": created,
        "seconds": seconds,
        "rate": created / seconds,
        "max_rss_bytes": max_rss_bytes(),
        "rss_bytes": rss_bytes(),
        "stopped": stopped,
    }
    print(json.dumps(report), flush=True)
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1e9))
