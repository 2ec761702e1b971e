"""Behaviour under faults, against real backends: leases that cannot be renewed, a process frozen
past its lease (SIGSTOP) and resumed, a store or registry that goes down mid-use.

The servers here are private to this module, so that tests can stop them, start them again on
the same port with their data (PostgreSQL, and Redis with an append-only file), or freeze them
with SIGSTOP. Tests that only need a server to stay up use the session's `redis_url` and
`postgres_dsn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio

import wes
from tests.support.claims import actor_claim
from tests.support.delegating import DelegatingRegistry, DelegatingStore
from tests.support.nodes import node_of
from tests.support.programs import ROOT, python_module
from tests.support.servers import (
    _as_postgres_user,
    _binary,
    _wait_for_port,
    _wait_for_postgres,
    free_port,
)
from tests.support.waiting import wait_until
from tests.system.fault_worker import ACTOR, CHANNEL, KEY, Counter, Watched
from wes.abc import Claim, ClaimKind, Ident, Registry, Store, Write

# --- servers a test can stop, start again and freeze ------------------------------------------


class Server:
    """A private server process: `stop` ends it, `start` brings it back on the same port with
    its data, `freeze` / `thaw` send SIGSTOP / SIGCONT (a server that hangs)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        assert self.proc is not None
        _wait_for_port(self.port, self.proc, self.command()[0])

    def server_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.ready()

    def stop(self) -> None:
        self.thaw()
        if self.proc is not None:
            os.kill(self.server_pid(), self.stop_signal)
            self.proc.wait(20)
            self.proc = None

    stop_signal = signal.SIGTERM

    def freeze(self) -> None:
        os.kill(self.server_pid(), signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            os.kill(self.server_pid(), signal.SIGCONT)
            self.frozen = False

    def up(self) -> None:
        """Running and answering, whatever a test did to it."""
        self.thaw()
        if self.proc is None:
            self.start()


class RedisServer(Server):
    """redis-server with an append-only file synced on every write, so a restart keeps the
    data (it flushes the file when it stops on SIGTERM)."""

    def __init__(self, workdir: str) -> None:
        super().__init__()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            _binary("redis-server"),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.workdir),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
        ]


class PostgresServer(Server):
    """A PostgreSQL cluster of its own. It stops with a fast shutdown (SIGINT to the
    postmaster), which ends the open sessions as a crash or a restart would."""

    stop_signal = signal.SIGINT

    def __init__(self, workdir: str) -> None:
        super().__init__()
        pg_bin = "/usr/lib/postgresql/*/bin/"
        self.prefix = _as_postgres_user()
        self.workdir = workdir
        self.data = Path(workdir) / "data"
        self.postgres = _binary("postgres", pg_bin + "postgres")
        if self.prefix:
            shutil.chown(workdir, "postgres", "postgres")
        initdb = _binary("initdb", pg_bin + "initdb")
        subprocess.run(
            [
                *(*self.prefix, initdb, "-D", str(self.data), "-U", "wes", "--auth=trust"),
                *("-E", "UTF8", "--no-sync"),
            ],
            check=True,
            capture_output=True,
        )
        self.dsn = f"postgresql://wes@127.0.0.1:{self.port}/postgres"

    def command(self) -> list[str]:
        return [
            *self.prefix,
            self.postgres,
            *("-D", str(self.data), "-p", str(self.port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}"),
        ]

    def ready(self) -> None:
        super().ready()
        assert self.proc is not None
        _wait_for_postgres(self.dsn, self.proc)

    def server_pid(self) -> int:
        # The Popen may be `runuser`, which does not pass signals on as they are.
        return int((self.data / "postmaster.pid").read_text().split()[0])


@pytest.fixture(scope="module")
def redis_box() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="wes-faults-redis-") as workdir:
        server = RedisServer(workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def postgres_box() -> Iterator[PostgresServer]:
    workdir = tempfile.mkdtemp(prefix="wes-faults-pg-")
    try:
        server = PostgresServer(workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_srv(redis_box: RedisServer) -> Iterator[RedisServer]:
    """The module's Redis server, up again after the test whatever the test did to it."""
    redis_box.up()
    yield redis_box
    redis_box.up()


@pytest.fixture
def postgres_srv(postgres_box: PostgresServer) -> Iterator[PostgresServer]:
    """The module's PostgreSQL server, up again after the test whatever the test did to it."""
    postgres_box.up()
    yield postgres_box
    postgres_box.up()


@pytest.fixture(params=["postgres", "redis"])
def store_srv(request: pytest.FixtureRequest) -> Iterator[StoreServer]:
    """A store on a server that the test can stop and start again."""
    server: Server = request.getfixturevalue(f"{request.param}_srv")
    yield StoreServer(request.param, server, uuid.uuid4().hex[:12])


class StoreServer:
    """Makes stores of one table (or key prefix) on a server the test controls."""

    def __init__(self, kind: str, server: Server, name: str) -> None:
        self.kind = kind
        self.server = server
        self.name = name

    def store(self) -> Store:
        if isinstance(self.server, PostgresServer):
            return wes.PostgresStore(self.server.dsn, table=f"t_{self.name}", connect_timeout=0.2)
        assert isinstance(self.server, RedisServer)
        return wes.RedisStore(self.server.url, prefix=f"{self.name}:", timeout=0.2)


# --- instruments ------------------------------------------------------------------------------


class Recorder(wes.abc.Stats):
    """Counts events like `MemoryStats`, and keeps each with its time (`time.monotonic`)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, Any]] = []  # (time, kind, name, ident)

    def event(
        self,
        kind: str,
        name: str,
        ident: Any,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.events.append((time.monotonic(), kind, name, ident))

    def count(self, kind: str, name: str) -> int:
        return len(self.times(kind, name))

    def times(self, kind: str, name: str) -> list[float]:
        return [t for t, k, n, _ in self.events if (k, n) == (kind, name)]

    def stops(self) -> list[str]:
        return [n for _, k, n, _ in self.events if k == "stop"]

    def about(self, *idents: Any) -> list[tuple[str, str]]:
        """The events about these channels and actors."""
        return [(k, n) for _, k, n, ident in self.events if ident in idents]


class Recording(DelegatingStore):
    """Passes every call to a real store, and keeps every write it was asked for: when it was
    sent, its keys with their tokens and values, and the store's answer."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.writes: list[tuple[float, list[tuple[str, int, Any]], list[Any]]] = []

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        rows = [(w.key, w.token, json.loads(w.data)) for batch in batches for w in batch]
        answer: list[Any] = ["in flight"]
        self.writes.append((time.monotonic(), rows, answer))
        try:
            answer[:] = await self.inner.write(batches)
        except BaseException as exc:
            answer[:] = [exc]
            raise
        return list(answer)

    def accepted(self) -> list[tuple[float, str, int, Any]]:
        """Every row the store took: (time sent, key, token, value)."""
        return [
            (t, key, token, value)
            for t, rows, answer in self.writes
            if answer == [None] * len(answer) and answer
            for key, token, value in rows
        ]


async def stored(store: Store, key: str = KEY) -> tuple[Any, int]:
    """The decoded state at `key` and the token it was written with; fails if there is none."""
    records = await store.read([key])
    assert key in records, f"nothing stored at {key!r}"
    return json.loads(records[key].data), records[key].token


async def stored_fresh(make: Callable[[], Store], key: str = KEY) -> tuple[Any, int]:
    """The state at `key` as a new store instance reads it."""
    async with make() as store:
        return await stored(store, key)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a polling helper
    """Poll an async condition until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


make_node = partial(node_of, {"counter": Counter}, lease=30.0)


# --- 1. a lease that cannot be renewed --------------------------------------------------------


async def test_channel_that_cannot_renew_stops_unsaved_and_never_writes_again(
    redis_srv: RedisServer, tmp_path: Path
) -> None:
    """A channel whose registry hangs (Redis frozen with SIGSTOP) stops when its lease runs
    out, without saving, counted as ("stop", "lease_lost"); no write with its token reaches
    the store after that, and the store keeps the last state it saved."""
    store = Recording(wes.SqliteStore(tmp_path / "state.db"))
    prefix = f"{uuid.uuid4().hex}:"
    registry = wes.RedisRegistry(redis_srv.url, prefix=prefix, timeout=0.2)
    stats = Recorder()
    node = make_node(store, registry, stats, lease=0.6, save_interval=0.1)
    acked: list[tuple[float, int]] = []
    async with node:
        await node.create_channel(CHANNEL, [wes.create(ACTOR, 0)])
        for _ in range(3):
            await node.command(CHANNEL, "incr")
        await wait_until(lambda: any(v == {"value": 3} for *_, v in store.accepted()))
        redis_srv.freeze()
        frozen_at = time.monotonic()
        try:
            while await node.status(CHANNEL) is not None:  # serve until the lease runs out
                with contextlib.suppress(wes.ChannelNotStarted):
                    await node.command(CHANNEL, "incr")
                    acked.append((time.monotonic(), await node.read(ACTOR, "value")))
                await asyncio.sleep(0.005)
                assert time.monotonic() - frozen_at < 10, "the channel outlived its lease"
            stopped_at = time.monotonic()
            # The stop event comes once its claims are released (here: given up on).
            await wait_until(lambda: stats.stops() == ["lease_lost"])
            await asyncio.sleep(0.4)  # four save intervals
        finally:
            redis_srv.thaw()
        with pytest.raises(wes.ChannelNotStarted):
            await node.command(CHANNEL, "incr")
    assert stats.stops() == ["lease_lost"]
    accepted = store.accepted()
    token = accepted[-1][2]
    assert {t for _, _, t, _ in accepted} == {token}  # one incarnation, one token
    assert all(sent < stopped_at for sent, *_ in store.writes), "a write after the stop"
    last_saved = accepted[-1][3]
    assert await stored_fresh(lambda: wes.SqliteStore(tmp_path / "state.db")) == (
        last_saved,
        token,
    )
    assert last_saved["value"] <= max(v for t, v in acked if t < stopped_at)
    # Its claims expired in the registry: a new owner loads the last saved state.
    registry2 = wes.RedisRegistry(redis_srv.url, prefix=prefix)
    node2 = make_node(wes.SqliteStore(tmp_path / "state.db"), registry2)
    async with node2:
        await until(lambda: free(registry2))
        await node2.ensure_channel(CHANNEL, wes.load(ACTOR))
        assert await node2.read(ACTOR, "value") == last_saved["value"]


async def free(registry: Registry) -> bool:
    """Whether the registry holds neither the channel nor its actor (their claims, taken one
    after the other, run out one after the other)."""
    held = (
        await registry.holder("channel", CHANNEL),
        await registry.holder("actor", actor_claim(ACTOR)),
    )
    return held == (None, None)


class Registries:
    """Registry instances sharing one backend, and a way to lose every claim in it."""

    def __init__(self, kind: str, tmp_path: Path, redis_url: str) -> None:
        self.kind = kind
        self.path = tmp_path / "registry.db"
        self.url = redis_url
        self.prefix = f"{uuid.uuid4().hex}:"

    def registry(self) -> Registry:
        if self.kind == "sqlite":
            return wes.SqliteRegistry(self.path)
        return wes.RedisRegistry(self.url, prefix=self.prefix)

    async def lose_every_claim(self) -> None:
        """Every claim ends on the registry's side before its lease does: on SQLite as after a
        clock jump on the host, on Redis as after a failover to a replica that had not seen
        them. (This reaches into the registry's own layout, which only this test may do.)"""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                conn.execute("UPDATE wes_claims SET expires = 0")
            return
        client = redis.asyncio.Redis.from_url(self.url)
        try:
            keys = [k async for k in client.scan_iter(match=self.prefix.encode() + b"claim:*")]
            assert keys
            await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_renewal_answered_not_held_stops_the_channel(
    kind: str, tmp_path: Path, redis_url: str
) -> None:
    """A channel whose renewal the registry answers "not held" (its claims ended and another
    node took the names) stops with ("stop", "lease_lost") without writing, and the other
    node's state stays in the store."""
    regs = Registries(kind, tmp_path, redis_url)
    db = tmp_path / "state.db"
    store = Recording(wes.SqliteStore(db))
    watched = Watched(regs.registry())
    stats = Recorder()
    old = make_node(store, watched, stats, lease=1.0)
    new = make_node(wes.SqliteStore(db), regs.registry(), durability="command")
    async with old, new:
        await old.create_channel(CHANNEL, [wes.create(ACTOR, 1)])
        await old.stop_channel(CHANNEL)
        await old.ensure_channel(CHANNEL, wes.load(ACTOR))
        await old.command(CHANNEL, "incr", 10)  # 11, in memory only
        await regs.lose_every_claim()
        lost_at = time.monotonic()
        await new.ensure_channel(CHANNEL, wes.load(ACTOR))
        assert await new.read(ACTOR, "value") == 1
        await new.command(CHANNEL, "set", 100)
        await wait_until(lambda: stats.stops() == ["normal", "lease_lost"])
        assert any(False in answer for answer in watched.renewals), "lost by a renewal answer"
        assert await old.status(CHANNEL) is None
        with pytest.raises(wes.ChannelNotStarted):
            await old.command(CHANNEL, "incr")
        assert not [sent for sent, *_ in store.writes if sent > lost_at]
        assert await new.status(CHANNEL) is not None
        assert await watched.holder("channel", CHANNEL) == new.address
        assert (await stored(store))[0] == {"value": 100}
    assert not [sent for sent, *_ in store.writes if sent > lost_at]
    assert (await stored_fresh(lambda: wes.SqliteStore(db)))[0] == {"value": 100}


async def test_lease_lost_just_before_the_node_closes_is_counted(
    redis_srv: RedisServer, tmp_path: Path
) -> None:
    """A channel that lost its lease while the node closes (its claims still being released)
    is counted as ("stop", "lease_lost") all the same."""
    registry = wes.RedisRegistry(redis_srv.url, prefix=f"{uuid.uuid4().hex}:", timeout=0.3)
    stats = Recorder()
    node = make_node(wes.SqliteStore(tmp_path / "state.db"), registry, stats, lease=0.3)
    try:
        async with node:
            await node.create_channel(CHANNEL, [wes.create(ACTOR, 0)])
            redis_srv.freeze()
            await until(lambda: is_stopped(node), timeout=5)
    finally:
        redis_srv.thaw()
    assert stats.stops() == ["lease_lost"]


async def is_stopped(node: wes.Node) -> bool:
    return await node.status(CHANNEL) is None


class LateReply(DelegatingRegistry):
    """A real registry whose answers to claims arrive `delay` seconds late (a slow network,
    or a process paused right after sending the claim)."""

    def __init__(self, inner: Registry) -> None:
        super().__init__(inner)
        self.delay = 0.0

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        claims = await self.inner.claim(names, holder, lease)
        await asyncio.sleep(self.delay)
        return claims


async def test_channel_claimed_with_a_late_reply_renews_in_time(tmp_path: Path) -> None:
    """A channel whose claim was answered late counts its lease from when it asked, so it
    renews before the registry lets the claim go, and no other node can start it meanwhile."""
    registry_path = tmp_path / "registry.db"
    late = LateReply(wes.SqliteRegistry(registry_path))
    node = make_node(wes.SqliteStore(tmp_path / "state.db"), late, lease=1.0)
    rival = make_node(wes.SqliteStore(tmp_path / "state.db"), wes.SqliteRegistry(registry_path))
    async with node, rival:
        late.delay = 0.7
        started = time.monotonic()
        await node.create_channel(CHANNEL)
        late.delay = 0.0
        await asyncio.sleep(started + 1.15 - time.monotonic())  # past the registry's lease
        with pytest.raises(wes.ChannelAlreadyStarted):
            await rival.create_channel(CHANNEL)


# --- 2. a process frozen past its lease -------------------------------------------------------


class Worker:
    """`tests.system.fault_worker` in a subprocess, with its output read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, config: dict[str, Any]) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            *python_module("tests.system.fault_worker", json.dumps(config)),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line(self, timeout: float = 20.0) -> str:  # noqa: ASYNC109 - a bounded read
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(
                f"the worker ended (status {await self.proc.wait()}): {self.lines}"
            )
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def expect(self, prefix: str) -> str:
        while not (line := await self.line()).startswith(prefix):
            pass
        return line

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def stopped(self) -> None:
        """Wait until the process is stopped (state T)."""
        stat = Path(f"/proc/{self.proc.pid}/stat")
        await wait_until(lambda: stat.read_text().rpartition(")")[2].split()[0] == "T")

    async def finish(self) -> list[str]:
        """Read everything up to DONE; the worker must then exit cleanly."""
        await self.expect("DONE")
        assert await asyncio.wait_for(self.proc.wait(), 10) == 0
        return self.lines

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@contextlib.asynccontextmanager
async def worker_on(shared: Shared, freeze_before_write: int = 0) -> AsyncIterator[Worker]:
    """A worker on the shared backends, killed at the end whatever state it is in."""
    worker = await Worker.start(
        {
            "registry": shared.registry_spec,
            "store": shared.store_spec,
            "lease": WORKER_LEASE,
            "freeze_before_write": freeze_before_write,
        }
    )
    try:
        await worker.expect("READY")
        yield worker
    finally:
        worker.kill()
        with contextlib.suppress(ProcessLookupError):
            worker.signal(signal.SIGCONT)
        await worker.proc.wait()


def acknowledged(lines: list[str]) -> list[int]:
    """The counter values the worker acknowledged, in order."""
    return [int(line.split()[1]) for line in lines if line.startswith("A ")]


class Shared:
    """The backends a worker and the test share: SQLite files, or Redis and PostgreSQL."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        name = uuid.uuid4().hex[:12]
        if kind == "sqlite":
            self.registry_spec = ["sqlite", str(tmp_path / "registry.db")]
            self.store_spec = ["sqlite", str(tmp_path / "state.db")]
        else:
            url = request.getfixturevalue("redis_url")
            dsn = request.getfixturevalue("postgres_dsn")
            self.registry_spec = ["redis", url, f"{name}:"]
            self.store_spec = ["postgres", dsn, f"t_{name}"]

    def registry(self) -> Registry:
        spec = self.registry_spec
        if spec[0] == "sqlite":
            return wes.SqliteRegistry(spec[1])
        return wes.RedisRegistry(spec[1], prefix=spec[2])

    def store(self) -> Store:
        spec = self.store_spec
        if spec[0] == "sqlite":
            return wes.SqliteStore(spec[1])
        return wes.PostgresStore(spec[1], table=spec[2])

    def unlocked(self) -> bool:
        """Whether a frozen process holds no lock others would wait for: a SQLite write
        transaction, or a PostgreSQL row lock. (Redis holds none for a client.)"""
        if self.kind != "sqlite":
            dsn, table = self.store_spec[1:]
            with psycopg.connect(dsn) as conn:
                try:
                    conn.execute(f'SELECT 1 FROM "{table}" FOR UPDATE NOWAIT')
                except psycopg.errors.LockNotAvailable:
                    return False
            return True
        for path in (self.registry_spec[1], self.store_spec[1]):
            with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as c:
                try:
                    c.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    return False
                c.execute("ROLLBACK")
        return True


WORKER_LEASE = 1.0


@pytest.mark.subprocess
@pytest.mark.parametrize("backends", ["sqlite", "redis-postgres"])
@pytest.mark.parametrize("pause", ["between-commands", "in-a-write"])
async def test_process_frozen_past_its_lease_is_fenced_off(
    backends: str, pause: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A worker frozen with SIGSTOP past its lease finds, on SIGCONT, its channel taken over by
    another node: its late write is refused (StaleToken) or never sent (LeaseLost), its channel
    stops with ("stop", "lease_lost"), and the new owner's stored state is intact."""
    shared = Shared(backends, tmp_path, request)
    freeze_at = 4 if pause == "in-a-write" else 0
    async with worker_on(shared, freeze_at) as worker:
        if freeze_at:
            assert await worker.expect("W ") == f"W {freeze_at}"
            await worker.stopped()  # it stopped itself in front of the store
            assert shared.unlocked()
        else:
            while True:  # freeze it between two commands, holding no lock
                if int((await worker.expect("A ")).split()[1]) < 3:
                    continue
                worker.signal(signal.SIGSTOP)
                await worker.stopped()
                if shared.unlocked():
                    break
                worker.signal(signal.SIGCONT)
        frozen_at = time.monotonic()
        async with shared.store() as store:
            old_value, old_token = await stored(store)

        registry = shared.registry()
        node = make_node(shared.store(), registry, durability="command", lease=10.0)
        async with node:
            await until(lambda: free(registry), timeout=WORKER_LEASE + 5)
            assert time.monotonic() - frozen_at > WORKER_LEASE * 0.5
            await node.ensure_channel(CHANNEL, wes.load(ACTOR))
            assert await node.read(ACTOR, "value") == old_value["value"]
            await node.command(CHANNEL, "set", 1000)
            new_value, new_token = await stored(node.store)
            assert (new_value, new_token > old_token) == ({"value": 1000}, True)

            worker.signal(signal.SIGCONT)
            lines = await worker.finish()
            # Nothing it acknowledged is lost: the new owner started from all of it.
            assert max(acknowledged(lines)) <= old_value["value"], lines
            after = lines[lines.index(f"W {freeze_at}") + 1 :] if freeze_at else lines
            [error] = [line for line in after if line.startswith("E ")]
            if freeze_at:
                assert error == "E StaleToken"  # the write reached the store, which refused it
            else:
                # The lease check caught it before any write (or the channel was gone).
                assert error in ("E LeaseLost", "E StaleToken", "E ChannelNotStarted"), error
            assert "STATUS None" in after
            [stats_line] = [line for line in after if line.startswith("STATS ")]
            counts = {tuple(k): v for k, v in json.loads(stats_line[6:])}
            assert [k for k in counts if k[0] == "stop"] == [("stop", "lease_lost")], after
            assert counts["stop", "lease_lost"] == 1

            # The new owner runs on, untouched: its claim, its state, its store row.
            assert await registry.holder("channel", CHANNEL) == node.address
            assert await node.read(ACTOR, "value") == 1000
            assert await stored(node.store) == ({"value": 1000}, new_token)
            await node.command(CHANNEL, "incr")
    async with shared.store() as store:
        assert await stored(store) == ({"value": 1001}, new_token)


@pytest.mark.subprocess
async def test_write_landing_after_the_lease_is_not_acknowledged(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A durable write that reaches the store only after its lease ran out (the process froze
    in front of it, and a new owner loaded the state meanwhile) is not acknowledged: the new
    owner's next save replaces it, so acknowledging it would lose the command."""
    shared = Shared("sqlite", tmp_path, request)
    async with worker_on(shared, freeze_before_write=4) as worker:
        assert await worker.expect("W ") == "W 4"
        await worker.stopped()
        assert shared.unlocked()
        registry = shared.registry()
        node = make_node(shared.store(), registry, durability="command", lease=10.0)
        async with node:
            await until(lambda: free(registry), timeout=WORKER_LEASE + 5)
            await node.ensure_channel(CHANNEL, wes.load(ACTOR))
            assert await node.read(ACTOR, "value") == 3  # the new owner starts from 3
            worker.signal(signal.SIGCONT)  # the old write of 4 lands now, before any new one
            lines = await worker.finish()
            await node.command(CHANNEL, "incr", 100)  # 103: the new owner never saw 4
    assert acknowledged(lines) == [1, 2, 3], lines
    after = lines[lines.index("W 4") + 1 :]
    assert [line for line in after if line.startswith("E ")] == ["E LeaseLost"], lines
    async with shared.store() as store:
        assert (await stored(store))[0] == {"value": 103}


# --- 3. the store down under durability="command" ---------------------------------------------


async def test_store_down_fails_the_durable_command_and_loses_nothing_acknowledged(
    store_srv: StoreServer,
) -> None:
    """With the store's server stopped, a durable command raises `StoreUnavailable` and its
    channel stops without saving; once the server is back, a restart shows the last
    acknowledged state."""
    stats = Recorder()
    node = make_node(store_srv.store(), stats=stats, durability="command")
    async with node:
        await node.create_channel(CHANNEL, [wes.create(ACTOR, 0)])
        for _ in range(3):
            await node.command(CHANNEL, "incr")
        store_srv.server.stop()
        with pytest.raises(wes.StoreUnavailable) as info:
            await node.command(CHANNEL, "incr")
        assert info.value.__cause__ is not None  # the driver's error, chained
        assert await node.status(CHANNEL) is None
        assert stats.stops() == ["StoreUnavailable"]
        assert stats.count("save", "error") == 1
        with pytest.raises(wes.ChannelNotStarted):
            await node.command(CHANNEL, "incr")
        store_srv.server.start()
        assert (await stored_fresh(store_srv.store))[0] == {"value": 3}

        async def restarted() -> bool:
            with contextlib.suppress(wes.StoreUnavailable):
                await node.ensure_channel(CHANNEL, wes.load(ACTOR))
                return True
            return False

        await until(restarted)  # the same store instance, once it reconnected
        assert await node.read(ACTOR, "value") == 3
        await node.command(CHANNEL, "incr")
        assert (await stored_fresh(store_srv.store))[0] == {"value": 4}


# --- 4. the store down during a periodic save -------------------------------------------------


async def test_store_down_during_periodic_saves_is_retried_with_backoff(
    store_srv: StoreServer,
) -> None:
    """With the store's server stopped, periodic saves fail, are counted as ("save", "error")
    and retried further and further apart while the channel keeps serving commands and reads;
    when the server is back, a save writes the latest state."""
    stats = Recorder()
    store = Recording(store_srv.store())
    node = make_node(store, stats=stats, save_interval=0.05)
    async with node:
        await node.create_channel(CHANNEL, [wes.create(ACTOR, 0)])
        await node.command(CHANNEL, "incr")
        await wait_until(lambda: stats.count("save", "ok") == 1)
        store_srv.server.stop()
        for _ in range(3):
            await node.command(CHANNEL, "incr")
        await wait_until(lambda: stats.count("save", "error") >= 6, timeout=15)
        assert await node.read(ACTOR, "value") == 4
        await node.command(CHANNEL, "incr")
        assert await node.read(ACTOR, "value") == 5
        assert await node.status(CHANNEL) is not None
        # The wait from each failure to the next attempt grows (0.05 s, 0.1 s, ... here).
        sent = [t for t, *_ in store.writes]
        waits = [
            min(t for t in sent if t > error) - error for error in stats.times("save", "error")[:5]
        ]
        assert waits[-1] >= 0.5 and waits[-1] > 2 * waits[0], f"no backoff: {waits}"
        store_srv.server.start()
        await wait_until(lambda: stats.count("save", "ok") == 2, timeout=15)
        assert (await stored_fresh(store_srv.store))[0] == {"value": 5}
        assert await node.read(ACTOR, "value") == 5
    assert stats.stops() == ["normal"]
    assert stats.count("save", "ok") == 2  # the stop had nothing left to save


# --- 5. a normal stop that cannot save --------------------------------------------------------


async def test_stop_that_cannot_save_raises_and_keeps_the_channel(
    store_srv: StoreServer,
) -> None:
    """`stop_channel` with the store's server down raises `StoreUnavailable` instead of
    dropping the unsaved state: the channel runs on and serves; a later stop, with the server
    back, saves it."""
    stats = Recorder()
    node = make_node(store_srv.store(), stats=stats)
    async with node:
        await node.create_channel(CHANNEL, [wes.create(ACTOR, 0)])
        await node.command(CHANNEL, "incr", 2)
        store_srv.server.stop()
        with pytest.raises(wes.StoreUnavailable):
            await node.stop_channel(CHANNEL)
        assert await node.status(CHANNEL) is not None
        assert stats.stops() == []
        await node.command(CHANNEL, "incr")
        assert await node.read(ACTOR, "value") == 3
        store_srv.server.start()

        async def stopped() -> bool:
            with contextlib.suppress(wes.StoreUnavailable):
                await node.stop_channel(CHANNEL)
                return True
            return False

        await until(stopped)  # once the store reconnected
        assert await node.status(CHANNEL) is None
    assert stats.stops() == ["normal"]
    assert (await stored_fresh(store_srv.store))[0] == {"value": 3}


async def test_channel_whose_stop_failed_saves_periodically_again(
    redis_srv: RedisServer,
) -> None:
    """A channel whose stop could not save keeps saving every `save_interval` once the store
    is back, as any running channel does."""
    store_srv = StoreServer("redis", redis_srv, uuid.uuid4().hex[:12])
    stats = Recorder()
    node = make_node(store_srv.store(), stats=stats, save_interval=0.1)
    async with node:
        await node.create_channel(CHANNEL, [wes.create(ACTOR, 0)])
        await node.command(CHANNEL, "incr")
        await wait_until(lambda: stats.count("save", "ok") == 1)
        await node.command(CHANNEL, "incr")
        store_srv.server.stop()
        with pytest.raises(wes.StoreUnavailable):
            await node.stop_channel(CHANNEL)
        store_srv.server.start()
        await node.command(CHANNEL, "incr")
        await wait_until(lambda: stats.count("save", "ok") == 2, timeout=3)
        assert (await stored_fresh(store_srv.store))[0] == {"value": 3}


# --- 6. the registry down when a channel starts -----------------------------------------------


LEASE = 1.0


@pytest.mark.parametrize("fault", ["redis-stopped", "redis-frozen", "sqlite-unopenable"])
async def test_registry_down_at_ensure_channel(
    fault: str, redis_srv: RedisServer, tmp_path: Path
) -> None:
    """`ensure_channel` with the registry down (stopped, hanging, or a file that cannot be
    opened) raises `RegistryUnavailable` with the driver's error chained; nothing started."""
    if fault == "sqlite-unopenable":
        registry: Registry = wes.SqliteRegistry(tmp_path / "no-such-dir" / "registry.db")
    else:
        registry = wes.RedisRegistry(redis_srv.url, prefix=f"{uuid.uuid4().hex}:", timeout=0.3)
    stats = Recorder()
    node = make_node(wes.SqliteStore(tmp_path / "state.db"), registry, stats, lease=LEASE)
    async with node:
        if fault != "sqlite-unopenable":
            await node.ensure_channel(("session", "warm"))  # connected before the fault
        if fault == "redis-stopped":
            redis_srv.stop()
        elif fault == "redis-frozen":
            redis_srv.freeze()
        try:
            with pytest.raises(wes.RegistryUnavailable) as info:
                await node.ensure_channel(CHANNEL, wes.load_or_create(ACTOR, 7))
        finally:
            redis_srv.up()
        assert not isinstance(info.value.__cause__, wes.WesError | None)
        assert await node.status(CHANNEL) is None
        with pytest.raises(wes.ActorNotActive):
            await node.read(ACTOR, "value")
        assert stats.about(CHANNEL, ACTOR) == []
        if fault == "redis-frozen":
            # The claim the client gave up on ran when the server woke up: it holds the name
            # until its lease runs out, since nobody knows its token to release it.
            await until(lambda: free(registry), timeout=LEASE + 5)
        if fault != "sqlite-unopenable":  # the registry is back: the same call now works
            await node.ensure_channel(CHANNEL, wes.load_or_create(ACTOR, 7))
            assert await node.read(ACTOR, "value") == 7


async def test_actor_registry_down_releases_the_channel_claim(
    redis_srv: RedisServer, tmp_path: Path
) -> None:
    """With the channel's registry up and the actors' registry down, `ensure_channel` raises
    `RegistryUnavailable` and releases the channel claim it took: nothing started."""
    channels = wes.SqliteRegistry(tmp_path / "registry.db")
    actors = wes.RedisRegistry(redis_srv.url, prefix=f"{uuid.uuid4().hex}:", timeout=0.3)
    node = wes.Node(store=wes.SqliteStore(tmp_path / "state.db"), registry=channels)
    node.actor_type("counter", Counter, registry=actors)
    node.channel_type("session", idle_timeout=None, save_interval=None)
    async with node:
        redis_srv.stop()
        with pytest.raises(wes.RegistryUnavailable):
            await node.ensure_channel(CHANNEL, wes.load_or_create(ACTOR, 7))
        assert await node.status(CHANNEL) is None
        assert await channels.holder("channel", CHANNEL) is None
        redis_srv.start()
        await node.ensure_channel(CHANNEL, wes.load_or_create(ACTOR, 7))
        assert await actors.holder("actor", actor_claim(ACTOR, scope="counter")) == CHANNEL
