"""Contention: several processes race `ensure_channel` for overlapping channels and actors.

Each worker process (this file run as a program) is a `wes.Node` on a shared registry and a
shared `SqliteStore` file. In each of a few rounds it makes 250 concurrent `ensure_channel`
calls of random channels with random overlapping actors, checks through the registry that it
holds what it thinks it holds, then stops its channels, so names change hands between
processes from round to round. A recording registry wrapper notes, in wall-clock time, when
each claim was granted and when its release began: those spans lie inside the real holds, so
two overlapping spans of one name prove two holders at once. Every call must give the
channel or `ChannelAlreadyStarted` / `ActorAlreadyLocked`, nothing else.

A registry joins with one entry in `BACKENDS` and a branch in `make_registry`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest

import wes
from tests.support.claims import actor_claim
from tests.support.delegating import DelegatingRegistry
from tests.support.programs import ROOT, python_module
from wes.abc import Claim, ClaimKind, Ident, Registry

pytestmark = pytest.mark.subprocess  # every test runs workers: this module as a program

PROCESSES = 4
CALLS = 250  # concurrent ensure_channel calls per process per round
ROUNDS = 3
CHANNELS = 50
ACTORS = 60
TIMEOUT = 25.0  # seconds for the whole run

# name -> factory(tmp_path, request) -> [kind, *arguments], what `make_registry` builds the
# registry of every worker of a run from (sent to the workers as JSON).
BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], list[str]]] = {
    "sqlite": lambda tmp, request: ["sqlite", str(tmp / "registry.db")],
    "redis": lambda tmp, request: ["redis", request.getfixturevalue("redis_url"), f"wes-c:{tmp}:"],
}


def make_registry(spec: list[str]) -> Registry:
    """The registry a worker uses."""
    kind, *args = spec
    if kind == "sqlite":
        return wes.SqliteRegistry(args[0])
    if kind == "redis":
        return wes.RedisRegistry(args[0], prefix=args[1])
    raise ValueError(f"unknown registry {spec!r}")


# --- the worker --------------------------------------------------------------------------


class Account(wes.Actor):
    def __init__(self, balance: int = 0) -> None:
        self.balance = balance


class Recorder(DelegatingRegistry):
    """Delegates to a registry and notes when each claim was granted and released."""

    def __init__(self, inner: Registry) -> None:
        super().__init__(inner)
        # token -> [kind, type, name, holder, granted_at, released_at]
        self.spans: dict[int, list[Any]] = {}

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        claims = await self.inner.claim(names, holder, lease)
        now = time.time()
        for c in claims:
            self.spans[c.token] = [c.kind, *c.ident, repr(c.holder), now, None]
        return claims

    async def release(self, claims: Sequence[Claim]) -> None:
        now = time.time()
        for c in claims:
            span = self.spans[c.token]
            span[5] = now if span[5] is None else span[5]
        await self.inner.release(claims)


async def call(node: wes.Node, rng: random.Random, run: str, result: Counter[str]) -> None:
    channel = ("room", f"{run}:{rng.randrange(CHANNELS)}")
    actors = [("account", f"{run}:{a}") for a in rng.sample(range(ACTORS), rng.randint(1, 3))]
    try:
        ref = await node.ensure_channel(channel, [wes.load_or_create(a, 10) for a in actors])
    except (wes.ChannelAlreadyStarted, wes.ActorAlreadyLocked) as exc:
        result[type(exc).__name__] += 1
        return
    except Exception as exc:
        result[f"unexpected {exc!r}"] += 1
        return
    if not (isinstance(ref, wes.ChannelRef) and ref.id == channel and ref.owner == node.address):
        result[f"bad ref {ref!r} for {channel!r}"] += 1
    elif not set(actors) <= set(ref.actors):
        result[f"ref {ref!r} lacks some of {actors!r}"] += 1
    else:
        result["ChannelRef"] += 1


async def work(registry_spec: list[str], store_path: str, run: str, index: int) -> dict[str, Any]:
    registry = Recorder(make_registry(registry_spec))
    store = wes.SqliteStore(store_path, synchronous="NORMAL")
    node = wes.Node(store=store, registry=registry, address=f"proc-{index}")
    node.actor_type("account", Account)
    node.channel_type("room", idle_timeout=None, save_interval=None, lease=30.0)
    result: Counter[str] = Counter()
    problems: list[str] = []
    rng = random.Random(f"{run}:{index}")
    async with node:
        for _ in range(ROUNDS):
            await asyncio.gather(*(call(node, rng, run, result) for _ in range(CALLS)))
            running = await running_refs(node, run)
            for ref in running:
                held = await registry.holder("channel", ref.id)
                if held != node.address:
                    problems.append(f"{ref.id} runs here but the registry says {held!r}")
                for actor in ref.actors:
                    held = await registry.holder("actor", actor_claim(actor))
                    if held != ref.id:
                        problems.append(f"{actor} is in {ref.id} but the registry says {held!r}")
            await asyncio.gather(*(node.stop_channel(ref.id) for ref in running))
    end = time.time()
    for span in registry.spans.values():
        span[5] = end if span[5] is None else span[5]
    return {"result": dict(result), "problems": problems, "spans": list(registry.spans.items())}


async def running_refs(node: wes.Node, run: str) -> list[wes.ChannelRef]:
    refs = [await node.status(("room", f"{run}:{i}")) for i in range(CHANNELS)]
    return [ref for ref in refs if ref is not None]


def main(registry_spec: list[str], store_path: str, run: str, index: int) -> None:
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit("no GO")
    report = asyncio.run(work(registry_spec, store_path, run, index))
    print(json.dumps(report), flush=True)


# --- the test ----------------------------------------------------------------------------


@pytest.fixture(params=sorted(BACKENDS))
def registry_spec(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The registry every worker of one run shares."""
    return BACKENDS[request.param](tmp_path, request)


def spawn(registry_spec: list[str], store: Path, run: str, index: int) -> subprocess.Popen[str]:
    args = python_module(__name__, json.dumps(registry_spec), str(store), run, str(index))
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_workers(registry_spec: list[str], store: Path, run: str) -> list[dict[str, Any]]:
    procs = [spawn(registry_spec, store, run, i) for i in range(PROCESSES)]
    deadline = time.monotonic() + TIMEOUT
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY", proc.communicate()[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        reports = []
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            assert proc.returncode == 0, f"worker {i} exited {proc.returncode}:\n{err[-3000:]}"
            reports.append(json.loads(out))
        return reports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_no_name_has_two_holders(registry_spec: list[str], tmp_path: Path) -> None:
    """Processes racing `ensure_channel` over overlapping channels and actors never hold one
    name together, and every call gets the channel or a clear wes error."""
    run = uuid.uuid4().hex[:8]
    reports = run_workers(registry_spec, tmp_path / "store.db", run)

    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report["result"])
        assert report["problems"] == []
    allowed = {"ChannelRef", "ChannelAlreadyStarted", "ActorAlreadyLocked"}
    assert set(outcomes) <= allowed, outcomes
    assert sum(outcomes.values()) == PROCESSES * CALLS * ROUNDS
    assert all(outcomes[name] > 0 for name in allowed), outcomes

    by_name: dict[tuple[str, str, str], list[tuple[float, float, int, str]]] = {}
    for index, report in enumerate(reports):
        for token, (kind, type_, name, holder, start, end) in report["spans"]:
            if kind == "channel":
                assert holder == repr(f"proc-{index}"), (name, holder)
            by_name.setdefault((kind, type_, name), []).append((start, end, token, f"{index}"))
    handed_over = 0
    for name, spans in by_name.items():
        spans.sort()
        for (_, e1, t1, p1), (s2, _, t2, p2) in itertools.pairwise(spans):
            assert e1 <= s2, f"{name}: held by process {p1} until {e1} and {p2} from {s2}"
            assert t1 < t2, f"{name}: token {t2} of a later claim is not above {t1}"
        handed_over += len({p for *_, p in spans}) > 1
    assert handed_over > 0, "no name ever changed process: the test proved little"


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
