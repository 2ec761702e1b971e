"""The save sweep: periodic saves of many channels due at once, snapshotted in chunks that
overlap with the store's writes, each channel's outcome its own; and the group futures of the
writers, which several savers share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import wes
from tests.support.delegating import DelegatingStore
from tests.support.waiting import wait_until
from wes import _sweep
from wes._writer import Writer
from wes.abc import Store, Write

MANY = 3 * _sweep.SLICE + 7  # several slices, the last one partial


class Probe(wes.Actor):
    """A counter whose `to_state` notes how far a ticker task had got when it was encoded."""

    ticks = 0  # advanced by a task that runs once per loop iteration while the test runs
    encoded_at: ClassVar[list[int]] = []

    def __init__(self) -> None:
        self.value = 0

    @wes.command
    def incr(self) -> None:
        self.value += 1

    def to_state(self) -> dict[str, Any]:
        Probe.encoded_at.append(Probe.ticks)
        return {"value": self.value}


class Watching(DelegatingStore):
    """A memory store that notes, at the start of each write call, how many states had been
    encoded by then, and can hold its writes until released."""

    def __init__(self) -> None:
        super().__init__(wes.MemoryStore())
        self.encoded_at_write: list[int] = []
        self.sizes: list[int] = []
        self.release = asyncio.Event()
        self.release.set()

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        self.encoded_at_write.append(len(Probe.encoded_at))
        self.sizes.append(sum(len(b) for b in batches))
        await self.release.wait()
        return await self.inner.write(batches)


def probe_node(store: Store, stats: wes.abc.Stats | None = None) -> wes.Node:
    node = wes.Node(store=store, registry=wes.MemoryRegistry(), stats=stats)
    node.actor_type("probe", Probe)
    node.channel_type("c", idle_timeout=None, save_interval=0.02)
    return node


async def start_probes(node: wes.Node, n: int) -> list[tuple[str, int]]:
    channels = [("c", i) for i in range(n)]
    for i, channel in enumerate(channels):
        await node.create_channel(channel, wes.create(("probe", i)))
    return channels


async def ticker() -> None:
    while True:
        Probe.ticks += 1
        await asyncio.sleep(0)


async def stored_values(store: Store, n: int) -> list[int]:
    records = await store.read([f"probe/{i}" for i in range(n)])
    return [int(records[f"probe/{i}"].data.split(b":")[1].rstrip(b"}")) for i in range(n)]


async def dirty_all_and_wait(node: wes.Node, store: Watching, channels: list[Any]) -> None:
    """One command to every channel, all in one go, then wait for their periodic saves."""
    Probe.encoded_at.clear()
    store.encoded_at_write.clear()
    store.sizes.clear()
    for channel in channels:
        await node.command(channel, "incr")
    await wait_until(lambda: sum(store.sizes) >= len(channels))


def small_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of 8 channels, writes of up to 16 rows, at most 32 rows unwritten."""
    monkeypatch.setattr(_sweep, "SLICE", 8)
    monkeypatch.setattr(_sweep, "FULL_ROWS", 16)
    monkeypatch.setattr(_sweep, "MAX_IN_FLIGHT", 32)


async def held_back(node: wes.Node, store: Watching) -> list[tuple[str, int]]:
    """Start `MANY` probes, wait for their first saves, then hold the store's writes."""
    channels = await start_probes(node, MANY)
    await wait_until(lambda: sum(store.sizes) >= MANY)
    store.release.clear()
    store.sizes.clear()
    return channels


async def test_a_sweep_saves_every_channel_due_across_chunks() -> None:
    """Channels due for a periodic save in the same tick, several chunks' worth, are all saved,
    each counted once."""
    store = Watching()
    stats = wes.MemoryStats()
    node = probe_node(store, stats)
    async with node:
        channels = await start_probes(node, MANY)
        # The first saves, written and counted: a save is counted once its write returns,
        # so one still on its way would be counted as one of the second round's.
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) >= MANY)
        before = stats.counts().get(("save", "ok"), 0)
        await dirty_all_and_wait(node, store, channels)
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) - before == MANY)
        assert await stored_values(store, MANY) == [1] * MANY
        assert sum(store.sizes) == MANY  # nothing written twice


async def test_other_tasks_run_between_the_chunks_of_a_sweep() -> None:
    """A sweep of many channels does not hold the loop from its first encoding to its last:
    another task runs in between."""
    store = Watching()
    node = probe_node(store)
    task = asyncio.create_task(ticker())
    try:
        async with node:
            channels = await start_probes(node, MANY)
            await wait_until(lambda: sum(store.sizes) >= MANY)
            await dirty_all_and_wait(node, store, channels)
            assert len(Probe.encoded_at) == MANY
            assert Probe.encoded_at[-1] > Probe.encoded_at[0]
    finally:
        task.cancel()


async def test_the_first_write_starts_before_the_sweep_has_encoded_everything() -> None:
    """The store writes the first chunk while the sweep still encodes the others, so encoding
    and writing overlap."""
    store = Watching()
    node = probe_node(store)
    async with node:
        channels = await start_probes(node, MANY)
        await wait_until(lambda: sum(store.sizes) >= MANY)
        await dirty_all_and_wait(node, store, channels)
        assert len(store.sizes) >= 2
        assert store.encoded_at_write[0] < MANY


async def test_a_stale_channel_in_a_sweep_stops_alone() -> None:
    """When the store refuses one channel's batch in a sweep (a newer owner wrote its actor),
    that channel stops with lease_lost and every other channel of the sweep is saved."""
    store = Watching()
    stats = wes.MemoryStats()
    node = probe_node(store, stats)
    stale = MANY // 2
    async with node:
        channels = await start_probes(node, MANY)
        await wait_until(lambda: sum(store.sizes) >= MANY)
        # A newer owner's write: a token above any this node's registry handed out.
        await store.inner.write([[Write(f"probe/{stale}", b'{"value":99}', 1, 2**62)]])
        Probe.encoded_at.clear()
        store.sizes.clear()
        for channel in channels:
            await node.command(channel, "incr")
        await wait_until(lambda: stats.counts().get(("stop", "lease_lost"), 0) == 1)
        await wait_until(lambda: node.live_channels == MANY - 1)
        values = await stored_values(store, MANY)
        assert values[stale] == 99
        assert values[:stale] + values[stale + 1 :] == [1] * (MANY - 1)
        assert ("c", stale) not in {ch.id for ch in node._rt.channels.values()}


async def test_a_store_failure_leaves_every_channel_of_the_sweep_dirty_and_running() -> None:
    """A write call that fails fails every channel it carried: each counts a save error, stays
    running, and is saved by the retry once the store is back."""
    store = Watching()
    stats = wes.MemoryStats()
    node = probe_node(store, stats)

    async def fail(batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        raise wes.StoreUnavailable("down for the test")

    async with node:
        channels = await start_probes(node, MANY)
        await wait_until(lambda: sum(store.sizes) >= MANY)
        healthy = store.inner.write
        store.inner.write = fail  # type: ignore[method-assign]
        for channel in channels:
            await node.command(channel, "incr")
        await wait_until(lambda: stats.counts().get(("save", "error"), 0) >= MANY)
        assert node.live_channels == MANY
        store.inner.write = healthy  # type: ignore[method-assign]
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) >= 2 * MANY)
        assert await stored_values(store, MANY) == [1] * MANY


async def test_cancelling_one_waiter_does_not_cancel_a_shared_write() -> None:
    """Batches queued together share one write; a waiter cancelled while it waits leaves the
    write, and the other waiters' results, intact."""
    store = Watching()
    store.release.clear()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        return task

    writer = Writer(store, spawn)
    first = writer.submit([Write("k/1", b"1", 1, 1)])
    second = writer.submit([Write("k/2", b"2", 1, 1)])
    cancelled = asyncio.create_task(first.result())
    waiting = asyncio.create_task(second.result())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.sleep(0.01)
    store.release.set()
    assert await waiting is None
    assert set(await store.read(["k/1", "k/2"])) == {"k/1", "k/2"}
    await asyncio.gather(*tasks)


class Holder(wes.Actor):
    """A counter with a command that holds its channel's turn while it waits."""

    def __init__(self) -> None:
        self.value = 0

    @wes.command
    def incr(self) -> None:
        self.value += 1

    @wes.command
    async def hold(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.value += 10

    @wes.command
    def spoil(self) -> None:
        self.bad = {1}  # a set: JSON cannot encode it


async def test_a_channel_busy_when_its_save_is_due_is_saved_after_its_turn() -> None:
    """A channel whose save falls due while a command holds its turn is not saved in the middle
    of that command, and is saved soon after it, with the command's effect."""
    store = wes.MemoryStore()
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("holder", Holder)
    node.channel_type("c", idle_timeout=None, save_interval=0.01)
    async with node:
        await node.create_channel(("c", 1), wes.create(("holder", 1)))
        await stored_soon(store, b'{"value":0}')
        await node.command(("c", 1), "incr")
        holding = asyncio.create_task(node.command(("c", 1), "hold", 0.1))
        await asyncio.sleep(0.06)  # the save fell due 50 ms ago; the turn is still held
        assert not holding.done()
        assert (await store.read(["holder/1"]))["holder/1"].data == b'{"value":0}'
        await holding
        await stored_soon(store, b'{"value":11}')


async def stored_soon(store: Store, data: bytes, within: float = 1.0) -> None:
    """Wait until the holder's stored state is `data`, polling every millisecond."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        records = await store.read(["holder/1"])
        if "holder/1" in records and records["holder/1"].data == data:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"holder/1 is not {data!r} after {within} s")


async def test_a_channel_due_in_the_millisecond_of_a_bucket_that_fired_is_saved() -> None:
    """`schedule` hands a channel to the bucket it filled last without a lookup; once that
    bucket fired, a channel due in its millisecond gets a bucket of its own, not lost."""
    store = wes.MemoryStore()
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("holder", Holder)
    node.channel_type("c", idle_timeout=None, save_interval=None)  # no schedule of its own
    loop = asyncio.get_running_loop()
    async with node:
        for i in (1, 2):
            await node.create_channel(("c", i), wes.create(("holder", i)))
            await node.command(("c", i), "incr")
        sweep = node._rt.sweep
        due = loop.time()
        sweep.schedule(node._channels[("c", 1)], due)
        await stored_soon(store, b'{"value":1}')
        sweep.schedule(node._channels[("c", 2)], due)
        second = store._records
        await wait_until(lambda: getattr(second.get("holder/2"), "data", b"") == b'{"value":1}')


async def test_a_state_that_cannot_be_encoded_is_retried_with_backoff() -> None:
    """A periodic save that cannot encode a state is retried with growing delays, not at every
    tick and not never."""
    stats = wes.MemoryStats()
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry(), stats=stats)
    node.actor_type("holder", Holder)
    node.channel_type("c", idle_timeout=None, save_interval=0.01)
    async with node:
        await node.create_channel(("c", 1), wes.create(("holder", 1)))
        await node.command(("c", 1), "spoil")
        await asyncio.sleep(0.5)  # due at 10 ms, then retries after 50, 100, 200 ms
        errors = stats.counts().get(("save", "error"), 0)
        assert 2 <= errors <= 6
        assert node.live_channels == 1


async def test_a_save_interval_beyond_the_wheel_horizon_is_kept_to_the_millisecond() -> None:
    """A save due further ahead than the wheel's fine horizon waits in a coarse slot that wakes
    early; its bucket then waits again, so the save comes neither early nor much late."""
    store = wes.MemoryStore()
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("holder", Holder)
    node.channel_type("c", idle_timeout=None, save_interval=1.3)
    loop = asyncio.get_running_loop()
    async with node:
        await node.create_channel(("c", 1), wes.create(("holder", 1)))
        dirty_at = loop.time()
        await stored_soon(store, b'{"value":0}', within=2.0)
        saved_at = loop.time()
        assert 1.3 <= saved_at - dirty_at < 1.5


class Breakable(Holder):
    """A holder whose command `boom` kills its channel."""

    @wes.command
    def boom(self) -> None:
        raise ValueError("boom")


async def test_a_channel_that_stops_while_its_saves_fail_leaves_no_streak_behind() -> None:
    """The sweep keeps an entry only for a running channel whose saves are failing: a channel
    that dies, or is stopped by the node's exit, while its saves fail leaves none behind."""
    node = wes.Node(store=wes.MemoryStore(), registry=wes.MemoryRegistry())
    node.actor_type("holder", Breakable)
    node.channel_type("c", idle_timeout=None, save_interval=0.01)
    async with node:
        for i in (1, 2):
            await node.create_channel(("c", i), wes.create(("holder", i)))
            await node.command(("c", i), "spoil")
        await wait_until(lambda: {ch.id for ch in node._rt.sweep.failing} == {("c", 1), ("c", 2)})
        with pytest.raises(ValueError, match="boom"):
            await node.command(("c", 1), "boom")
        assert [ch.id for ch in node._rt.sweep.failing] == [("c", 2)]
    assert node._rt.sweep.failing == {}


class Counting(wes.SqliteStore):
    """A SQLite store whose `write` counts the rows it is given."""

    rows = 0

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        self.rows += sum(len(b) for b in batches)
        return await super().write(batches)


async def test_a_sqlite_store_subclass_that_changes_write_sees_every_save(
    tmp_path: Path,
) -> None:
    """The node's writer hands a `SqliteStore` its rows flat, past `write`; a subclass that
    overrides `write` gets every save through it instead."""
    store = Counting(tmp_path / "s.db")
    node = probe_node(store)
    async with node:
        channels = await start_probes(node, MANY)
        await wait_until(lambda: store.rows >= MANY)
        for channel in channels:
            await node.command(channel, "incr")
        await wait_until(lambda: store.rows >= 2 * MANY)
        assert await stored_values(store, MANY) == [1] * MANY


async def test_a_sqlite_write_that_fails_fails_each_channel_of_the_sweep(tmp_path: Path) -> None:
    """A flat write to SQLite that fails (its file closed under the node) fails every channel
    it carried: each counts a save error and keeps running."""
    store = wes.SqliteStore(tmp_path / "s.db")
    stats = wes.MemoryStats()
    node = probe_node(store, stats)
    async with node:
        channels = await start_probes(node, MANY)
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) >= MANY)
        await store.aclose()
        for channel in channels:
            await node.command(channel, "incr")
        await wait_until(lambda: stats.counts().get(("save", "error"), 0) >= MANY)
        assert node.live_channels == MANY


async def test_a_sqlite_write_that_fails_fails_a_durable_command(tmp_path: Path) -> None:
    """Under durability="command" a flat write to SQLite that fails fails the command with
    `StoreUnavailable` and stops the channel."""
    store = wes.SqliteStore(tmp_path / "s.db")
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("probe", Probe)
    node.channel_type("c", durability="command")
    async with node:
        await node.create_channel(("c", 1), wes.create(("probe", 1)))
        await node.command(("c", 1), "incr")
        await store.aclose()
        with pytest.raises(wes.StoreUnavailable, match="closed"):
            await node.command(("c", 1), "incr")
        assert await node.status(("c", 1)) is None


async def test_a_sweep_waits_while_its_writes_fall_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep hands its writers a bounded number of rows that are not yet written: while the
    store holds its writes, the sweep snapshots no further, and it saves everything once the
    store writes again."""
    small_sweeps(monkeypatch)
    store = Watching()
    node = probe_node(store)
    async with node:
        channels = await held_back(node, store)
        Probe.encoded_at.clear()
        for channel in channels:
            await node.command(channel, "incr")
        await wait_until(lambda: bool(store.sizes))
        await asyncio.sleep(0.2)  # ample for the whole sweep, were it not held back
        # Snapshotted and not written at most: MAX_IN_FLIGHT rows and the slice past it.
        assert len(Probe.encoded_at) <= 32 + 8 < MANY
        store.release.set()
        await wait_until(lambda: sum(store.sizes) >= MANY)
        assert await stored_values(store, MANY) == [1] * MANY


async def test_channels_due_while_a_sweep_snapshots_join_that_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One sweep snapshots at a time: channels that come due while it runs join its list,
    so that its pauses really let the store's thread run (no second sweep's slice between
    them), and every one of them is saved."""
    small_sweeps(monkeypatch)
    sweepers: set[asyncio.Task[Any] | None] = set()
    snapshot = _sweep.SaveSweep._snapshot

    def noting(sweep: _sweep.SaveSweep, chunk: Any, channels: list[Any]) -> None:
        sweepers.add(asyncio.current_task())
        snapshot(sweep, chunk, channels)

    monkeypatch.setattr(_sweep.SaveSweep, "_snapshot", noting)
    store = Watching()
    node = probe_node(store)
    async with node:
        channels = await held_back(node, store)  # the sweep is still snapshotting later
        sweepers.clear()
        early, late = channels[: MANY // 2], channels[MANY // 2 :]
        for channel in early:
            await node.command(channel, "incr")
        await wait_until(lambda: bool(store.sizes))
        for channel in late:
            await node.command(channel, "incr")
        await asyncio.sleep(0.1)  # the late channels come due while the first sweep waits
        store.release.set()
        await wait_until(lambda: sum(store.sizes) >= MANY)
        assert await stored_values(store, MANY) == [1] * MANY
        assert len(sweepers) == 1


async def test_closing_during_a_sweep_saves_the_channels_it_had_not_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node that closes while a held-back sweep holds channels it has not snapshotted yet
    (their turns taken) still stops every channel with its state saved."""
    small_sweeps(monkeypatch)
    store = Watching()
    node = probe_node(store)
    async with node:
        channels = await held_back(node, store)
        for channel in channels:
            await node.command(channel, "incr")
        await wait_until(lambda: bool(store.sizes))
        # Released once the close has begun (and also if the check below fails, so that
        # the close cannot wait on a held write for ever).
        asyncio.get_running_loop().call_later(0.1, store.release.set)
        # Held back at 32 rows unwritten, the sweep is still snapshotting: some of the MANY
        # channels are not reached yet.
        assert node._rt.sweep._sweeping is not None
    assert await stored_values(store, MANY) == [1] * MANY


async def test_a_sweep_writes_a_channel_of_two_stores_one_batch_each() -> None:
    """A channel whose actors live in two stores, in no order, is saved by a periodic sweep
    with each actor's state in its own store."""
    first, second = wes.MemoryStore(), wes.MemoryStore()
    stats = wes.MemoryStats()
    node = wes.Node(store=first, registry=wes.MemoryRegistry(), stats=stats)
    node.actor_type("probe", Probe)
    node.actor_type("other", Probe, store=second)
    node.channel_type("c", idle_timeout=None, save_interval=0.005)
    async with node:
        actors = [("probe", 1), ("other", 2), ("probe", 3)]
        await node.create_channel(("c", 0), [wes.create(actor) for actor in actors])
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) >= 1)
        await node.command(("c", 0), "incr")
        await wait_until(lambda: stats.counts().get(("save", "ok"), 0) >= 2)
        ours = await first.read(["probe/1", "probe/3", "other/2"])
        theirs = await second.read(["probe/1", "probe/3", "other/2"])
        assert {key: record.data for key, record in ours.items()} == {
            "probe/1": b'{"value":1}',
            "probe/3": b'{"value":1}',
        }
        assert {key: record.data for key, record in theirs.items()} == {"other/2": b'{"value":1}'}


class Versioned(Holder):
    """A holder of another actor type, at a version of its own."""

    version = 3


class Caching(Holder):
    """A holder that keeps a private attribute beside its state."""

    @wes.command
    def remember(self) -> None:
        self._seen = "not to be stored"
        self.value += 1


class Unsaved(Holder):
    """A holder that asks not to be saved."""

    def should_save(self) -> bool:
        return False


async def test_a_sweep_saves_runs_of_actor_types_each_in_its_store_with_its_version() -> None:
    """Channels of two actor types, in two stores, alternating in runs within the slices of
    one sweep: each state is written to its own type's store, with its type's version."""
    first, second = wes.MemoryStore(), wes.MemoryStore()
    node = wes.Node(store=first, registry=wes.MemoryRegistry())
    node.actor_type("holder", Holder)
    node.actor_type("versioned", Versioned, store=second)
    node.channel_type("c", idle_timeout=None, save_interval=0.005)
    kinds = ["versioned" if i % 7 in (2, 3, 5) else "holder" for i in range(MANY)]
    async with node:
        for i, kind in enumerate(kinds):
            await node.create_channel(("c", i), wes.create((kind, i)))
        for i in range(MANY):
            await node.command(("c", i), "incr")

        def written() -> int:
            records = [*first._records.values(), *second._records.values()]
            return sum(r.data == b'{"value":1}' for r in records)

        await wait_until(lambda: written() == MANY)
        assert first._records.keys() == {
            f"holder/{i}" for i, k in enumerate(kinds) if k == "holder"
        }
        assert second._records.keys() == {
            f"versioned/{i}" for i, k in enumerate(kinds) if k == "versioned"
        }
        assert {r.version for r in first._records.values()} == {1}
        assert {r.version for r in second._records.values()} == {3}


@contextlib.asynccontextmanager
async def holders_and_one(
    store: Store, kind: str, cls: type[Holder], at: int
) -> AsyncIterator[wes.Node]:
    """A running node with channels 0..19 of one holder each, but channel `at`, whose actor
    is of type `kind` (class `cls`); saves every 5 ms."""
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("holder", Holder)
    node.actor_type(kind, cls)
    node.channel_type("c", idle_timeout=None, save_interval=0.005)
    async with node:
        for i in range(20):
            await node.create_channel(("c", i), wes.create((kind if i == at else "holder", i)))
        yield node


async def test_a_sweep_writes_only_the_public_attributes_of_an_actor() -> None:
    """An actor with a private attribute beside its state, saved by a sweep with plain ones,
    is written without it."""
    store = wes.MemoryStore()
    async with holders_and_one(store, "caching", Caching, 9) as node:
        await node.command(("c", 9), "remember")
        await wait_until(
            lambda: getattr(store._records.get("caching/9"), "data", b"") == b'{"value":1}'
        )


async def test_a_sweep_does_not_write_an_actor_that_should_not_be_saved() -> None:
    """An actor whose `should_save` says no, amid plain ones in a sweep, is not written, and
    its channel is clean after the sweep (not saved again at every tick)."""
    store = wes.MemoryStore()
    async with holders_and_one(store, "unsaved", Unsaved, 4) as node:
        for i in range(20):
            await node.command(("c", i), "incr")
        records = store._records
        await wait_until(lambda: sum(r.data == b'{"value":1}' for r in records.values()) == 19)
        assert "unsaved/4" not in records
        assert not node._channels[("c", 4)].dirty


async def test_a_state_that_cannot_be_encoded_fails_only_its_channel_of_a_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One state that cannot be encoded, amid many in one sweep: the others are written, its
    channel runs on with its state unsaved, and the logged error names the actor."""
    store = wes.MemoryStore()
    node = wes.Node(store=store, registry=wes.MemoryRegistry())
    node.actor_type("holder", Holder)
    node.channel_type("c", idle_timeout=None, save_interval=0.005)
    async with node:
        for i in range(MANY):
            await node.create_channel(("c", i), wes.create(("holder", i)))
        await wait_until(lambda: len(store._records) == MANY)
        bad = MANY // 2
        await node.command(("c", bad), "spoil")
        for i in range(MANY):
            if i != bad:
                await node.command(("c", i), "incr")
        others = [f"holder/{i}" for i in range(MANY) if i != bad]
        await wait_until(lambda: all(store._records[k].data == b'{"value":1}' for k in others))
        await wait_until(lambda: "StateNotEncodable" in caplog.text)
        assert f"('holder', {bad})" in caplog.text
        assert store._records[f"holder/{bad}"].data == b'{"value":0}'
        ch = node._channels[("c", bad)]
        assert ch.running and ch.dirty


class Consuming(wes.JsonCodec):
    """A codec of the user's that empties the state it is given once it has encoded it."""

    def encode(self, state: dict[str, Any]) -> bytes:
        data = super().encode(state)
        state.clear()
        return data


async def test_a_codec_that_changes_the_state_it_encodes_leaves_the_actor_unchanged() -> None:
    """A sweep hands a user's codec a copy of each plain actor's state: a codec that empties
    what it is given changes no actor."""
    store = wes.MemoryStore()
    node = wes.Node(store=store, registry=wes.MemoryRegistry(), codec=Consuming())
    node.actor_type("holder", Holder)
    node.channel_type("c", idle_timeout=None, save_interval=0.005)
    async with node:
        for i in range(20):
            await node.create_channel(("c", i), wes.create(("holder", i)))
        await node.command(("c", 3), "incr")
        await wait_until(
            lambda: getattr(store._records.get("holder/3"), "data", b"") == b'{"value":1}'
        )
        await node.command(("c", 3), "incr")
        await wait_until(
            lambda: getattr(store._records.get("holder/3"), "data", b"") == b'{"value":2}'
        )


async def test_a_channel_whose_lease_ran_out_is_not_written_by_a_sweep_and_stops() -> None:
    """A one-actor channel whose lease ran out before its sweep snapshots it is not written
    (a new owner may have read the store), and stops as lease lost; the others are written."""
    store = wes.MemoryStore()
    stats = wes.MemoryStats()
    node = wes.Node(store=store, registry=wes.MemoryRegistry(), stats=stats)
    node.actor_type("holder", Holder)
    node.channel_type("c", idle_timeout=None, save_interval=0.005)
    async with node:
        for i in range(20):
            await node.create_channel(("c", i), wes.create(("holder", i)))
        await wait_until(lambda: len(store._records) == 20)
        for i in range(20):
            await node.command(("c", i), "incr")
        node._channels[("c", 7)].lease_until = node._rt.now()  # as if renewals had failed
        records = store._records
        await wait_until(lambda: stats.counts().get(("stop", "lease_lost"), 0) == 1)
        await wait_until(lambda: sum(r.data == b'{"value":1}' for r in records.values()) == 19)
        assert records["holder/7"].data == b'{"value":0}'
        assert ("c", 7) not in node._channels
