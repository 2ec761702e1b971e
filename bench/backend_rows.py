"""Periodic saves and durable commands on PostgreSQL and Redis, each next to the raw driver.

Private servers on free loopback ports (`tests/support/servers.py`: PostgreSQL with
`fsync=on`, Redis without persistence; `WES_POSTGRES_DSN` / `WES_REDIS_URL` point at servers
started elsewhere), one table or key prefix per measurement.

`*_periodic_saves`: N channels of one counter actor each, `save_interval` 5 ms. Each round
makes every actor dirty with one command, then waits until the store has written every new
state (a wrapping store counts the written keys). Value = states written / (time of the
rounds - time of the same commands on a node that does not save), as the SQLite
`periodic_saves` row. Baseline = the raw driver writing as many rows in batches of exactly the
sizes the store's `write` calls had in that repetition, one call at a time (the node has one
write in flight per store too), every row getting a new value, rows prepared before timing:
- PostgreSQL: psycopg `AsyncConnection` in autocommit, per batch one statement (so one
  transaction, one round trip), the plain upsert
  `INSERT ... SELECT FROM unnest(...) ON CONFLICT (key) DO UPDATE` with every array in binary
  (the store's statement without its token fence) into a table of the store's shape;
- Redis: redis-py asyncio, one `EVALSHA` per batch of a Lua script doing one `HSET key t v d`
  per row (the store's script also checks each stored token and maintains the key index).

`*_durable_commands`: 100 channels with `durability="command"`, one client each sending
commands one after another. Baseline = the raw driver doing one single-row write per command
from 100 concurrent clients, each on its own key:
- PostgreSQL: 100 psycopg `AsyncConnection`s in autocommit, one upsert (one commit) each;
- Redis: one `HSET key t v d` round trip each, over redis-py's asyncio connection pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import saving
from common import Loop, Row, Settings, calibrate, paired_rates, profiled
from rows import Want, names, row

import wes
from wes.abc import Store, Write

if TYPE_CHECKING:  # the drivers are imported on use: without one, only its rows fail
    from psycopg import AsyncConnection
    from redis.asyncio import Redis

ROWS = names("backend_rows")
"""The rows of this group, in table order."""

CLIENTS = 100
SAVE_INTERVAL = 0.005
RUN = f"{os.getpid()}_{time.time_ns() // 1_000_000}"
"""Suffix of this run's table names and key prefixes: servers given by URL may hold others."""
ROOT = Path(__file__).resolve().parent.parent  # the repository, holding `tests`


def _servers() -> Any:
    """`tests.support.servers`, which starts private servers (imported from the repository)."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    return importlib.import_module("tests.support.servers")


def state(value: int) -> bytes:
    """An encoded state like the counter actor's."""
    return b'{"value":%d}' % value


# -- the raw drivers ------------------------------------------------------------------------

Batch = list[tuple[str, int, int, bytes]]  # key, token, version, data


class Raw(Protocol):
    """A backend's raw-driver baselines."""

    async def write_batches(self, batches: list[Batch]) -> float:
        """Write each batch in one atomic call, one call at a time; seconds taken."""
        ...

    async def single_writes(self, clients: int) -> Loop:
        """A loop of `n` single-row writes in total from `clients` concurrent clients."""
        ...

    async def aclose(self) -> None: ...


# The store's own table definition, so that the raw driver writes a table of the same shape.
PG_SCHEMA: str = importlib.import_module("wes._backends.postgres")._SCHEMA
PG_UPSERT_MANY = """
INSERT INTO {table} AS t (key, token, version, data)
SELECT * FROM unnest(%b::text[], %b::bigint[], %b::integer[], %b::bytea[])
ON CONFLICT (key) DO UPDATE SET
    token = excluded.token, version = excluded.version, data = excluded.data
"""
PG_UPSERT_ONE = """
INSERT INTO {table} AS t (key, token, version, data) VALUES (%s, %s, %s, %b)
ON CONFLICT (key) DO UPDATE SET
    token = excluded.token, version = excluded.version, data = excluded.data
"""


class PostgresRaw:
    """psycopg alone, on a table of `PostgresStore`'s shape."""

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn = dsn
        self.table = table
        self.conns: list[AsyncConnection[Any]] = []

    async def _connect(self) -> AsyncConnection[Any]:
        from psycopg import AsyncConnection

        conn = await AsyncConnection.connect(self.dsn, autocommit=True)
        self.conns.append(conn)
        return conn

    async def write_batches(self, batches: list[Batch]) -> float:
        conn = self.conns[0] if self.conns else await self._connect()
        await conn.execute(PG_SCHEMA.format(table=self.table))
        upsert = PG_UPSERT_MANY.format(table=self.table)
        columns = [
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
            for rows in (sorted(batch) for batch in batches)
        ]
        for params in columns:  # the rows exist before timing, as the actors' do
            await conn.execute(upsert, params)
        gc.collect()
        start = time.perf_counter()
        for params in columns:
            await conn.execute(upsert, params)  # autocommit: one statement, one transaction
        return time.perf_counter() - start

    async def single_writes(self, clients: int) -> Loop:
        conns = [await self._connect() for _ in range(clients)]
        await conns[0].execute(PG_SCHEMA.format(table=self.table))
        upsert = PG_UPSERT_ONE.format(table=self.table)
        counter = 0

        async def client(conn: AsyncConnection[Any], key: str, m: int) -> None:
            nonlocal counter
            for _ in range(m):
                counter += 1
                await conn.execute(upsert, (key, counter, 1, state(counter)))  # one commit

        async def body(n: int) -> None:
            per = max(1, n // clients)
            await asyncio.gather(
                *(client(conn, f"counter/{i}", per) for i, conn in enumerate(conns))
            )

        return body

    async def aclose(self) -> None:
        for conn in self.conns:
            await conn.close()


REDIS_HSETS = """
for i = 1, #KEYS do
    redis.call('HSET', KEYS[i], 't', ARGV[3 * i - 2], 'v', ARGV[3 * i - 1], 'd', ARGV[3 * i])
end
return 0
"""


class RedisRaw:
    """redis-py alone, on hashes of `RedisStore`'s shape."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis.asyncio import Redis

        self.redis: Redis = Redis.from_url(url, decode_responses=False)
        self.prefix = prefix

    async def write_batches(self, batches: list[Batch]) -> float:
        script = self.redis.register_script(REDIS_HSETS)
        calls: list[tuple[list[str], list[bytes | int]]] = []
        for batch in batches:
            args: list[bytes | int] = []
            for _, token, version, data in batch:
                args += (token, version, data)
            calls.append(([self.prefix + key for key, *_ in batch], args))
        for keys, args in calls:  # the keys exist before timing, as the actors' do
            await script(keys=keys, args=args)
        gc.collect()
        start = time.perf_counter()
        for keys, args in calls:
            await script(keys=keys, args=args)
        return time.perf_counter() - start

    async def single_writes(self, clients: int) -> Loop:
        hset = self.redis.hset
        counter = 0

        async def client(key: str, m: int) -> None:
            nonlocal counter
            for _ in range(m):
                counter += 1
                await hset(key, mapping={"t": counter, "v": 1, "d": state(counter)})

        async def body(n: int) -> None:
            per = max(1, n // clients)
            keys = [f"{self.prefix}counter/{i}" for i in range(clients)]
            await asyncio.gather(*(client(key, per) for key in keys))

        return body

    async def aclose(self) -> None:
        await self.redis.aclose()


class Backend(Protocol):
    name: str
    saves_baseline: str  # what the raw driver does, for the row notes
    durable_baseline: str

    def server(self) -> contextlib.AbstractContextManager[str]: ...

    def store(self, url: str, name: str) -> Store: ...

    def raw(self, url: str, name: str) -> Raw: ...


class Postgres:
    name = "postgres"
    saves_baseline = (
        "one psycopg AsyncConnection in autocommit, per batch one plain INSERT ... SELECT FROM"
        " unnest(...) ON CONFLICT (key) DO UPDATE with binary arrays (no token fence)"
    )
    durable_baseline = (
        f"{CLIENTS} concurrent clients, each on its own psycopg AsyncConnection (autocommit)"
        " upserting its own row, one statement and one commit per command"
    )

    def server(self) -> contextlib.AbstractContextManager[str]:
        cm: contextlib.AbstractContextManager[str] = _servers().postgres_server()
        return cm

    def store(self, url: str, name: str) -> Store:
        return wes.PostgresStore(url, table=name)

    def raw(self, url: str, name: str) -> Raw:
        return PostgresRaw(url, name)


class RedisBackend:
    name = "redis"
    saves_baseline = (
        "redis-py asyncio, per batch one EVALSHA of a Lua script doing one HSET key t v d per"
        " row (no token check, no key index)"
    )
    durable_baseline = (
        f"{CLIENTS} concurrent clients on one redis-py asyncio client (its connection pool),"
        " each doing one HSET key t v d round trip on its own key per command"
    )

    def server(self) -> contextlib.AbstractContextManager[str]:
        cm: contextlib.AbstractContextManager[str] = _servers().redis_server()
        return cm

    def store(self, url: str, name: str) -> Store:
        return wes.RedisStore(url, prefix=f"{name}:")

    def raw(self, url: str, name: str) -> Raw:
        return RedisRaw(url, f"{name}:")


BACKENDS: list[Backend] = [Postgres(), RedisBackend()]


# -- wes ------------------------------------------------------------------------------------


async def periodic_saves(backend: Backend, url: str, settings: Settings) -> Row:
    """`<backend>_periodic_saves`; see the module docstring."""
    n = 500 if settings.quick else 5000
    rounds = 2 if settings.quick else 3
    reps = 1 if settings.quick else 5
    values: list[float] = []
    bases: list[float] = []
    alone: list[float] = []
    notes: list[str] = []
    unsaved = saving.counter_node(wes.MemoryStore(), "unsaved", save_interval=None)
    store = saving.RecordingStore(backend.store(url, f"wes_saves_{RUN}"))
    node = saving.counter_node(store, "saved", save_interval=SAVE_INTERVAL)
    raw = backend.raw(url, f"raw_saves_{RUN}")
    bare = backend.store(url, f"bare_saves_{RUN}")
    try:
        async with unsaved, node, bare:
            plain = await saving.start_counters(unsaved, "unsaved", n)
            await saving.dirty_all(unsaved, plain)  # warm-up
            one_round = await saving.saved_rounds(node, store, n, 60)
            await one_round()  # warm-up
            for rep in range(reps):
                gc.collect()
                start = time.perf_counter()
                for _ in range(rounds):
                    await saving.dirty_all(unsaved, plain)
                commands_only = time.perf_counter() - start
                store.sizes = []
                gc.collect()
                start = time.perf_counter()
                for _ in range(rounds):
                    await one_round()
                total = time.perf_counter() - start
                sizes = store.sizes
                written = sum(sizes)
                values.append(written / max(total - commands_only, 1e-9))
                batches = batches_of(sizes, n, rep)
                bases.append(written / await raw.write_batches(batches))
                alone.append(written / await store_alone(bare, batches, token_floor(rep)))
                notes.append(
                    f"{total:.2f}s for {rounds} rounds of {n:,} commands + saves, minus"
                    f" {commands_only:.2f}s for the commands alone; {written:,} states in"
                    f" {len(sizes)} write calls of {min(sizes):,}..{max(sizes):,}"
                    f" (mean {written / len(sizes):,.0f}) rows"
                )
            await profiled(settings, f"{backend.name}_periodic_saves", one_round)
    finally:
        await raw.aclose()
    median = statistics.median(values)
    note = notes[min(range(len(values)), key=lambda i: abs(values[i] - median))]
    bare_rate = statistics.median(alone)
    return row(
        f"{backend.name}_periodic_saves",
        median,
        statistics.median(bases),
        note=(
            f"N={n:,}; {note}; baseline: the same batch sizes, {backend.saves_baseline};"
            f" the store's write() alone, given the same batches as prepared Writes (one batch"
            f" per row, as channels save): {bare_rate:,.0f} rows/s"
        ),
    )


async def store_alone(store: Store, batches: list[Batch], floor: int) -> float:
    """Seconds `store.write` takes for `batches`, one call each, from prepared `Write`s; the
    rows are first written with token `floor`, below the tokens of `batches`."""
    calls = [[[Write(key, data, ver, token)] for key, token, ver, data in b] for b in batches]
    keys = sorted({row[0] for batch in batches for row in batch})
    for i in range(0, len(keys), 1000):  # the rows exist before timing, as the actors' do
        await store.write([[Write(key, state(0), 1, floor)] for key in keys[i : i + 1000]])
    gc.collect()
    start = time.perf_counter()
    for call in calls:
        results = await store.write(call)
        refused = [r for r in results if r is not None]
        if refused:
            raise RuntimeError(f"{store!r} refused {len(refused)} rows: {refused[0]}")
    return time.perf_counter() - start


def batches_of(sizes: list[int], n: int, rep: int) -> list[Batch]:
    """Rows over `n` keys cut in batches of `sizes`, each write a new value and a token
    above `token_floor(rep)`."""
    out: list[Batch] = []
    k = 0
    for size in sizes:
        batch: Batch = []
        for _ in range(size):
            value = token_floor(rep) + 1 + k
            batch.append((f"counter/{k % n}", value, 1, state(value)))
            k += 1
        out.append(batch)
    return out


def token_floor(rep: int) -> int:
    """Tokens of repetition `rep` lie above this, and those of earlier ones below it."""
    return (rep + 1) * 10**9


async def durable_commands(backend: Backend, url: str, settings: Settings) -> Row:
    """`<backend>_durable_commands`; see the module docstring."""
    raw = backend.raw(url, f"raw_durable_{RUN}")
    node = saving.counter_node(
        backend.store(url, f"wes_durable_{RUN}"), "durable", durability="command"
    )
    try:
        base_loop = await raw.single_writes(CLIENTS)
        async with node:
            clients = saving.DurableClients(
                node, await saving.start_counters(node, "durable", CLIENTS)
            )
            wes_loop = clients.loop
            base, value = await paired_rates(
                base_loop, wes_loop, settings.seconds * 2, settings.reps
            )
            if settings.profile:
                count = await calibrate(wes_loop, settings.seconds)
                await profiled(
                    settings, f"{backend.name}_durable_commands", lambda: wes_loop(count)
                )
            stored = await stored_total(backend.store(url, f"wes_durable_{RUN}"))
    finally:
        await raw.aclose()
    check = clients.check(stored)
    return row(
        f"{backend.name}_durable_commands",
        value,
        base,
        note=(
            f"{CLIENTS} clients on {CLIENTS} channels, one command at a time each; {check};"
            f" baseline: {backend.durable_baseline}"
        ),
    )


async def stored_total(store: Store) -> int:
    """The sum of the counters in `store`, read while the node still runs (before its final
    saves), through a second store."""
    total = 0
    async with store:
        async for _, record in store.scan("counter/"):
            total += json.loads(record.data)["value"]
    return total


async def backend_rows(settings: Settings, want: Want) -> list[Row]:
    """postgres_periodic_saves, postgres_durable_commands, redis_periodic_saves,
    redis_durable_commands."""
    rows: list[Row] = []
    for backend in BACKENDS:
        saves, durable = f"{backend.name}_periodic_saves", f"{backend.name}_durable_commands"
        if not (want(saves) or want(durable)):
            continue
        with backend.server() as url:
            if want(saves):
                rows.append(await periodic_saves(backend, url, settings))
            if want(durable):
                rows.append(await durable_commands(backend, url, settings))
    return rows
