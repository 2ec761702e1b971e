"""The program `test_faults.py` freezes with SIGSTOP: a node holding one channel on shared backends,
sending durable commands to it until something goes wrong.

Usage: python -m tests.system.fault_worker CONFIG_JSON (from the repository root)

CONFIG_JSON holds `registry` (`["sqlite", path]` or `["redis", url, prefix]`), `store`
(`["sqlite", path]`, `["postgres", dsn, table]` or `["redis", url, prefix]`), `lease` (seconds)
and `freeze_before_write` (0, or the counter value whose write the worker freezes itself in
front of). The channel `("session", "s")` holds the counter `("counter", "c")` under
`durability="command"`; the worker sends it `incr` every few milliseconds and prints, flushing
each line:

    READY                    the channel runs
    A <value>                an `incr` was acknowledged; the counter is now <value>
    W <value>                (freeze_before_write) the durable write of <value> has passed the
                             lease check and is about to reach the store: the worker now stops
                             itself with SIGSTOP, as a process paused at the worst moment would
    E <error type>           a command failed; the worker sends no more
    STATUS <running|None>    the channel's status after that
    STATS <json>             its stats counts, as [[kind, name], count] pairs, once the
                             channel's stop was counted (or after 5 s)
    DONE                     the node closed
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Hashable, Sequence
from typing import Any

import wes
from tests.support import counters
from tests.support.delegating import DelegatingRegistry, DelegatingStore
from wes.abc import Claim, ClaimKind, Ident, Registry, Store, Write

CHANNEL = ("session", "s")
ACTOR = ("counter", "c")
KEY = "counter/c"


class Counter(counters.Counter):
    @wes.command("set")
    def set_value(self, value: int) -> None:
        self.value = value


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Watched(DelegatingRegistry):
    """Passes every call to a real registry; knows whether one is in flight and what every
    renewal answered."""

    def __init__(self, inner: Registry) -> None:
        super().__init__(inner)
        self.busy = 0
        self.renewals: list[list[bool]] = []  # the answer to every renewal, in order

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        self.busy += 1
        try:
            return await self.inner.claim(names, holder, lease)
        finally:
            self.busy -= 1

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        self.busy += 1
        try:
            renewed = await self.inner.renew(claims)
            self.renewals.append(list(renewed))
            return renewed
        finally:
            self.busy -= 1

    async def release(self, claims: Sequence[Claim]) -> None:
        self.busy += 1
        try:
            await self.inner.release(claims)
        finally:
            self.busy -= 1


class FreezeBeforeWrite(DelegatingStore):
    """Passes every call to a real store; stops the process once, in front of the write of a
    given counter value (when no registry call is in flight, so it holds no SQLite lock)."""

    def __init__(self, inner: Store, registry: Watched, value: int) -> None:
        super().__init__(inner)
        self.registry = registry
        self.value = value

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        for batch in batches:
            for w in batch:
                if self.value and json.loads(w.data) == {"value": self.value}:
                    self.value = 0
                    while self.registry.busy:  # noqa: ASYNC110 - polls a counter for a moment
                        await asyncio.sleep(0.001)
                    out(f"W {json.loads(w.data)['value']}")
                    os.kill(os.getpid(), signal.SIGSTOP)
        return await self.inner.write(batches)


def make_registry(spec: list[str]) -> Registry:
    if spec[0] == "sqlite":
        return wes.SqliteRegistry(spec[1])
    if spec[0] == "redis":
        return wes.RedisRegistry(spec[1], prefix=spec[2], timeout=1.0)
    raise ValueError(spec)


def make_store(spec: list[str]) -> Store:
    if spec[0] == "sqlite":
        return wes.SqliteStore(spec[1])
    if spec[0] == "postgres":
        return wes.PostgresStore(spec[1], table=spec[2], connect_timeout=1.0)
    if spec[0] == "redis":
        return wes.RedisStore(spec[1], prefix=spec[2], timeout=1.0)
    raise ValueError(spec)


async def main(config: dict[str, Any]) -> None:
    registry = Watched(make_registry(config["registry"]))
    store = make_store(config["store"])
    if config["freeze_before_write"]:
        store = FreezeBeforeWrite(store, registry, config["freeze_before_write"])
    stats = wes.MemoryStats()
    node = wes.Node(store=store, registry=registry, stats=stats)
    node.actor_type("counter", Counter)
    node.channel_type(
        "session",
        idle_timeout=None,
        save_interval=None,
        lease=config["lease"],
        durability="command",
    )
    async with node:
        await node.ensure_channel(CHANNEL, wes.load_or_create(ACTOR))
        value = await node.read(ACTOR, "value")
        out("READY")
        while True:
            try:
                await node.command(CHANNEL, "incr")
            except wes.WesError as exc:
                out(f"E {type(exc).__name__}")
                break
            value += 1
            out(f"A {value}")
            await asyncio.sleep(0.01)
        status = await node.status(CHANNEL)
        out(f"STATUS {'running' if status is not None else None}")
        # A channel's stop event comes once its claims are released, which may take a moment.
        for _ in range(500):
            if any(kind == "stop" for kind, _ in stats.counts()):
                break
            await asyncio.sleep(0.01)
        out("STATS " + json.dumps(sorted(stats.counts().items())))
    out("DONE")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
