"""Pieces the save benchmarks share (SQLite in wes_rows.py, PostgreSQL and Redis in
backend_rows.py): counter nodes, one command to every channel, and a store wrapper that
tells when every new state has been written."""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from actors import Counter
from common import calibrate, time_loop

import wes
from wes._writer import FlatWrite, flat_write_of, writes_on_thread
from wes.abc import Record, Store, Write


class RecordingStore(Store):
    """Wraps a store; tracks the keys still waiting for a write, and the rows of each write
    call that were written.

    It passes on the inner store's flat writes (`wes._writer.FlatWrite`, which `SqliteStore`
    offers the node's writer), so that the node saves through the wrapper as it would
    through the store itself.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.pending: set[str] = set()
        self.sizes: list[int] = []
        self._written = asyncio.Event()

    def expect(self, keys: set[str]) -> None:
        """Wait (`written`) for a write of each of `keys` from now on."""
        self.pending = set(keys)
        self._written.clear()

    async def written(self, limit: float) -> None:
        """Until every expected key was written; `TimeoutError` after `limit` seconds.

        An event, not polling: a poll every half millisecond would take the GIL from the
        store's thread as often, and its cost would count as the node's."""
        if self.pending:
            await asyncio.wait_for(self._written.wait(), limit)

    def _discard(self, keys: list[str]) -> None:
        pending = self.pending
        if pending:
            pending.difference_update(keys)
            if not pending:
                self._written.set()

    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        return await self.inner.read(keys)

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        results = await self.inner.write(batches)
        written = 0
        for batch, result in zip(batches, results, strict=True):
            if result is None:
                written += len(batch)
                self._discard([w.key for w in batch])
        if written:
            self.sizes.append(written)
        return results

    @property
    def _wes_writes_on_thread(self) -> bool:
        return writes_on_thread(self.inner)

    def _wes_flat_write(self) -> FlatWrite | None:
        flat = flat_write_of(self.inner)
        if flat is None:
            return None

        async def write(params: list[Any], sizes: array[int]) -> list[BaseException | None]:
            results = await flat(params, sizes)
            self._written_flat(params, sizes, results)
            return results

        return write

    def _written_flat(
        self, params: list[Any], sizes: array[int], results: list[BaseException | None]
    ) -> None:
        if not any(results):  # the usual case: every batch written
            self._discard(params[::4])
            self.sizes.append(len(params) // 4)
            return
        start = written = 0
        for size, result in zip(sizes, results, strict=True):
            if result is None:
                self._discard(params[start : start + 4 * size : 4])
                written += size
            start += 4 * size
        if written:
            self.sizes.append(written)

    def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        return self.inner.scan(prefix)

    async def aclose(self) -> None:
        await self.inner.aclose()


def counter_node(store: Store, kind: str, **conf: Any) -> wes.Node:
    """A node on `store` with the counter actor and the channel type `kind`."""
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("counter", Counter)
    node.channel_type(kind, **conf)
    return node


async def start_counters(node: wes.Node, kind: str, n: int) -> list[tuple[str, int]]:
    """Start `n` channels of type `kind`, channel i holding the counter actor i."""
    channels: list[tuple[str, int]] = []
    for i in range(n):
        await node.create_channel((kind, i), wes.create(("counter", i)))
        channels.append((kind, i))
    return channels


async def dirty_all(node: wes.Node, channels: list[tuple[str, int]]) -> None:
    """One command to every channel, one after another."""
    command = node.command
    for channel in channels:
        await command(channel, "incr", 1)


class DurableClients:
    """One client per channel, each sending `incr` commands one after another; counts the
    commands acknowledged (the `*durable_commands` rows)."""

    def __init__(self, node: wes.Node, channels: Sequence[tuple[str, int]]) -> None:
        self.command = node.command
        self.channels = channels
        self.acked = 0

    async def _client(self, channel: tuple[str, int], m: int) -> None:
        command = self.command
        for _ in range(m):
            await command(channel, "incr", 1)
            self.acked += 1

    async def loop(self, n: int) -> None:
        """About `n` commands in total, spread over the clients."""
        per = max(1, n // len(self.channels))
        await asyncio.gather(*(self._client(channel, per) for channel in self.channels))

    def check(self, stored: int) -> str:
        """The note comparing the acknowledged commands with the `stored` counter total."""
        if stored == self.acked:
            return "all acknowledged commands are in the store"
        return f"STORE BEHIND: {self.acked:,} commands acknowledged, {stored:,} stored"


async def saved_rounds(
    node: wes.Node, store: RecordingStore, n: int, seconds: float
) -> Callable[[], Awaitable[None]]:
    """Start `n` counters on `node` (channel type "saved") and wait (up to `seconds`) for
    their first save; returns one round: make every actor dirty, then wait until each new
    state is written."""
    keys = {f"counter/{i}" for i in range(n)}
    store.expect(keys)
    channels = await start_counters(node, "saved", n)
    await store.written(seconds)

    async def one_round() -> None:
        store.expect(keys)
        await dirty_all(node, channels)
        await store.written(seconds)

    return one_round


async def interleaved_pairs(
    baseline: Callable[[int], Awaitable[None]],
    subject: Callable[[int], Awaitable[None]],
    seconds: float,
    pairs: int,
) -> tuple[float, float, str]:
    """Rounds of `baseline` and `subject` alternated (A B A B ...), each about `seconds`
    long; returns the baseline's and the subject's rates of the pair whose ratio is the
    median one, and a note with the median of the per-pair ratios and their range.

    A ratio per pair, not a ratio of medians: the disk's speed drifts between runs (and
    within one), and each pair sees nearly the same disk.
    """
    n_base = await calibrate(baseline, seconds)
    n_subj = await calibrate(subject, seconds)
    rates: list[tuple[float, float]] = []
    for _ in range(pairs):
        base = n_base / await time_loop(baseline, n_base)
        rates.append((base, n_subj / await time_loop(subject, n_subj)))
    ranked = sorted(rates, key=lambda rate: rate[1] / rate[0])
    ratios = [subj / base for base, subj in ranked]
    base, subj = ranked[len(ranked) // 2]
    note = (
        f"median of {pairs} per-pair ratios (rounds alternated) {ratios[len(ratios) // 2]:.2f}x,"
        f" range {ratios[0]:.2f}-{ratios[-1]:.2f}x; baseline {min(b for b, _ in rates):,.0f}"
        f"-{max(b for b, _ in rates):,.0f}/s"
    )
    return base, subj, note
