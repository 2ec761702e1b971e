"""A node process of a cluster over real NATS, which `test_nats_processes.py` starts, kills,
freezes and asks to start channels.

Usage: python -m tests.cluster.node_worker CONFIG_JSON (from the repository root)

CONFIG_JSON holds `address`, `nats` (the server's URL), `cluster`, `registry` and `store`
(SQLite file paths every process shares), `lease` and `call_timeout` (seconds), the
channels' `placement`, and `freeze_before_write` (an id, or null: the worker stops itself
with SIGSTOP in front of the first durable write of a state holding that id, as a process
paused at the worst moment would). Each channel `("log", NAME)` holds the actor
`("entries", NAME)` under `durability="command"`; its command `add(id)` appends `id` to the
actor's list.

The worker reads requests from stdin, one a line, `SEQ OP {"names": [...], "at": T}`:

    ensure      ensure_channel of each name at once (load_or_create)
    status      the owner of each name's channel as this node sees it

(at the wall-clock time T if not null: several processes start together), and answers
`SEQ JSON` with one result per name: `{"owner": ADDRESS, "actors": [...]}` (or
`null` for status), or `{"error": TYPE, "message": ...}`. Other lines, flushed each:

    READY                   the node runs and takes remote calls
    W ID                    (freeze_before_write) stopping itself in front of that write
    EVENT JSON              a channel's failed save or its stop: kind, name, channel, error
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, Literal

import wes
from tests.support.delegating import DelegatingStore
from tests.system.fault_worker import Watched
from wes.abc import Ident, Stats, Store, Write


class Entries(wes.Actor):
    """The ids of the commands applied to it, in order: a command applied twice shows."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    @wes.command("add")
    def add(self, id: str) -> None:
        self.ids.append(id)

    @wes.read("ids")
    def view_ids(self) -> list[str]:
        return list(self.ids)


def channel(name: str) -> Ident:
    return ("log", name)


def actor(name: str) -> Ident:
    return ("entries", name)


def configure(node: wes.Node, lease: float, placement: Literal["local", "hash"]) -> None:
    """The actor and channel types every node of the cluster registers."""
    node.actor_type("entries", Entries)
    node.channel_type(
        "log",
        idle_timeout=None,
        save_interval=None,
        lease=lease,
        durability="command",
        placement=placement,
    )


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Printed(Stats):
    """Prints the events the tests look for: failed saves and stops."""

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        if kind == "stop" or (kind, name) == ("save", "error"):
            err = None if error is None else type(error).__name__
            body = {"kind": kind, "name": name, "channel": list(ident), "error": err}
            out("EVENT " + json.dumps(body))


class FreezeBeforeWrite(DelegatingStore):
    """Stops the process once, in front of the first write of a state holding `id` (when no
    registry call is in flight, so it holds no SQLite lock)."""

    def __init__(self, inner: Store, registry: Watched, id: str) -> None:
        super().__init__(inner)
        self.registry = registry
        self.id: str | None = id

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        if self.id is not None and any(self._holds(w) for batch in batches for w in batch):
            while self.registry.busy:  # noqa: ASYNC110 - polls a counter for a moment
                await asyncio.sleep(0.001)
            out(f"W {self.id}")
            self.id = None
            os.kill(os.getpid(), signal.SIGSTOP)
        return await self.inner.write(batches)

    def _holds(self, write: Write) -> bool:
        return self.id in json.loads(write.data).get("ids", [])


async def answer(node: wes.Node, op: str, names: list[str]) -> list[Any]:
    async def one(name: str) -> Any:
        try:
            ref: wes.ChannelRef | None
            if op == "ensure":
                ref = await node.ensure_channel(channel(name), wes.load_or_create(actor(name)))
            else:
                ref = await node.status(channel(name))
        except Exception as exc:
            tb = "".join(traceback.format_exception(exc))
            return {"error": type(exc).__name__, "message": str(exc), "traceback": tb}
        return None if ref is None else {"owner": ref.owner, "actors": ref.actors}

    return list(await asyncio.gather(*(one(name) for name in names)))


async def serve_requests(node: wes.Node) -> None:
    """Answer the requests on stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def reply(seq: str, op: str, body: dict[str, Any]) -> None:
        if body["at"] is not None:  # a start line shared with other processes
            await asyncio.sleep(body["at"] - time.time())
        out(f"{seq} {json.dumps(await answer(node, op, body['names']))}")

    while line := await reader.readline():
        seq, op, body = line.decode().split(" ", 2)
        task = asyncio.create_task(reply(seq, op, json.loads(body)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def main(config: dict[str, Any]) -> None:
    registry = Watched(wes.SqliteRegistry(config["registry"]))
    store: Store = wes.SqliteStore(config["store"])
    if config.get("freeze_before_write"):
        store = FreezeBeforeWrite(store, registry, config["freeze_before_write"])
    node = wes.Node(
        store=store,
        registry=registry,
        stats=Printed(),
        address=config["address"],
        transport=wes.NatsTransport(config["nats"], cluster=config["cluster"]),
        call_timeout=config["call_timeout"],
    )
    configure(node, config["lease"], config["placement"])
    async with node:
        out("READY")
        await serve_requests(node)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
