"""The periodic saves of many channels, done together.

A channel that becomes dirty joins the save bucket of its deadline (one per millisecond,
woken by the node's wheel; one per `FAR_BUCKET` seconds for deadlines more than `FAR` seconds
away, so that channels made dirty over a minute share a few thousand buckets instead of
one in five having a bucket of its own, ~250 bytes): a list append, with no wheel entry of
its own, so its wheel entry for idle timeouts and timers stays as it was. When a bucket is
due, its channels that are free go to the sweep; busy ones join a bucket a little later.

A task, a gather and a future per channel would cost more than the save itself. The sweep
instead snapshots the due channels in slices (`SLICE`), gathers their rows into chunks of up
to `FULL_ROWS` rows, hands each chunk to the writers (which group what is queued into one
commit per store), and concludes a chunk in one pass when its writes end.

Between two slices the sweep lets the loop run, for two reasons: the store writes one chunk
while the next is encoded (the store works on its own thread or server, the encoding on the
loop, so the two overlap), and commands and timers of other channels are not held up for the
whole sweep: 20,000 channels due at once are ~100 ms of encoding. While its writes are in
flight it idles a little at each slice (`GRACE`), so that a store's thread gets the GIL
(`SaveSweep._pause`), and it stops snapshotting while more than `MAX_IN_FLIGHT` rows wait to
be written.

A save that keeps failing is logged on the `wes` logger at WARNING: once when the streak of
failures begins, then at most every `FAILING_LOG_INTERVAL` seconds while it lasts, and once
when a save works again. Only channels in a streak have an entry (`SaveSweep.failing`), so a
healthy channel pays nothing for it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import TYPE_CHECKING

from ._errors import StateNotEncodable
from ._saving import take_dirty_of
from ._wheel import BUSY_DELAY, RESOLUTION  # a save bucket is one wheel slot

if TYPE_CHECKING:
    from ._abc import Ident
    from ._channel import Channel
    from ._types import Services
    from ._writer import Group, Queue, Writer

SLICE = 256
"""Channels snapshotted between two yields to the loop (about a millisecond of work), so that
the commands and timers of other channels are not held up for a whole sweep."""
FIRST_ROWS = 16
FULL_ROWS = 4096
"""Rows of the writes a sweep hands its writers: the first small, so that the first write
starts at once, and later ones doubling up to `FULL_ROWS` (one SQLite statement). Each write
costs a commit (an fsync) and, in `SqliteStore`, its thread's hand-overs of the GIL: fewer,
larger writes cost less per row."""
MAX_IN_FLIGHT = 3 * FULL_ROWS
"""Rows of the sweeps handed to the writers and not yet written, at most: beyond, a sweep
waits, so a slow store does not make it hold every row (and every channel's turn) at once."""
GRACE = 0.0002
"""Seconds the sweep idles between two slices while its writes are in flight (less if one
ends): see `SaveSweep._pause`. The selector waits whole milliseconds (epoll), so a pause
lasts ~0.7 ms on average here; a precise `time.sleep` of 0.2 ms instead was measured no
faster (the store's thread holds the GIL for most of each pause either way)."""
FAR = 1.0
FAR_BUCKET = 0.016
"""A save due more than `FAR` seconds ahead waits in a bucket `FAR_BUCKET` seconds wide; it
comes that much later at most, which a periodic save of that interval does not notice."""
FAILING_LOG_INTERVAL = 10.0
"""Seconds between two log lines of one channel's failing saves, after the streak's first."""

log = logging.getLogger("wes")
_FAR_SLOTS = round(FAR_BUCKET / RESOLUTION)


class _Bucket:
    """The channels whose periodic save is due at `when`; sleeps in the node's wheel."""

    __slots__ = ("after", "channels", "slot", "sweep", "wake_slot", "when")

    def __init__(self, sweep: SaveSweep, slot: int) -> None:
        self.sweep = sweep
        self.slot = slot
        self.when = slot * RESOLUTION
        self.after = self.when - RESOLUTION  # the deadlines of its slot: after it, to `when`
        self.channels: list[Channel] = []
        self.wake_slot: list[object] | None = None

    def wake(self, now: float) -> None:
        if now < self.when - RESOLUTION / 2:  # a coarse wheel slot fired early: ask again
            self.sweep._runtime.wheel.schedule(self, self.when, now)
        else:
            self.sweep._due_now(self, now)


class _Chunk:
    """Channels of one sweep whose turns it holds, snapshotted in slices, and the writes of
    those that had states to save: while the chunk is encoded, its rows queued per writer;
    once sent, for each writer the group future, the index of the first batch in its
    results and, per batch, the index of its channel in `begun`."""

    __slots__ = ("begun", "channels", "on_thread", "queues", "rows", "sent", "started", "writes")

    def __init__(self, started: float) -> None:
        self.started = started
        self.channels: list[Channel] = []
        self.begun: list[Channel] = []
        self.queues: dict[Writer, Queue] = {}
        self.rows = 0
        self.sent = False
        self.on_thread = False  # whether a store of its writes writes on a thread of its own
        self.writes: list[tuple[Group, int, list[int]]] = []

    def send(self) -> None:
        """Hand the queued rows to the writers."""
        for queue in self.queues.values():
            self.writes.append((*queue.send(), queue.owners))
            self.on_thread = self.on_thread or queue.writer.on_thread
        self.queues = {}
        self.sent = True

    def writing(self) -> bool:
        """Whether the chunk was sent and its writes have not all ended."""
        return self.sent and not self.done()

    def unwritten(self) -> int:
        """Rows snapshotted and not yet written."""
        return self.rows if not self.sent or not self.done() else 0

    def done(self) -> bool:
        return all(group.done() for group, _, _ in self.writes)

    async def wait(self) -> None:
        pending = [group for group, _, _ in self.writes if not group.done()]
        if pending:
            # Not `await group`: the futures are shared with other savers, and awaiting a
            # future cancels it when the awaiting task is cancelled.
            await asyncio.wait(pending)

    def errors(self) -> list[BaseException | None]:
        """Per channel in `begun`: the first error of its batches, or `None`."""
        errors: list[BaseException | None] = [None] * len(self.begun)
        for group, first, owners in self.writes:
            failed = group.exception()
            if failed is not None:
                for owner in owners:
                    if errors[owner] is None:
                        errors[owner] = failed
                continue
            results = group.result()
            if not any(results[first : first + len(owners)]):
                continue  # the usual case: every batch written
            for i, owner in enumerate(owners, first):
                error = results[i]
                if error is not None and errors[owner] is None:
                    errors[owner] = error
        return errors


class _Streak:
    """The failing saves of one channel, from the first failure to the next save that works."""

    __slots__ = ("began", "failures", "logged_at", "unlogged")

    def __init__(self, now: float) -> None:
        self.began = now
        self.failures = 1
        self.logged_at = now  # the streak's first failure is logged at once
        self.unlogged = 0  # failures since the last line


class SaveSweep:
    """Collects channels due for a periodic save (each with its turn taken) and saves them in
    one task: channels due while it snapshots join it; once it only waits for its last
    writes, the next channels due start another."""

    def __init__(self, runtime: Services) -> None:
        self._runtime = runtime
        self._buckets: dict[int, _Bucket] = {}
        # The bucket `schedule` filled last, while it waits: channels made dirty in the same
        # millisecond (a burst of commands) join it without a lookup.
        self._last = _Bucket(self, -1)
        self._due: list[Channel] = []
        self._open: deque[_Chunk] = deque()  # the sweeps' chunks, in order (`_held_by`)
        # The channels of the sweep snapshotting now, if one is: channels due meanwhile join
        # its list, so that one sweep at a time encodes, and it idles while its store's
        # thread takes the GIL (`_pause`) instead of yielding to another sweep's slice.
        self._sweeping: list[Channel] | None = None
        # The channels whose saves are failing; an entry leaves when a save works again or
        # the channel stops. Empty in the usual case, which is all the fast paths look at.
        self.failing: dict[Channel, _Streak] = {}

    def save_failed(self, ch: Channel, exc: BaseException) -> None:
        """A save of running channel `ch` failed and will be tried again: log it, at the start
        of a streak and then at most every `FAILING_LOG_INTERVAL` seconds."""
        runtime = self._runtime
        if not isinstance(exc, Exception) or not ch.running or not runtime.is_running:
            return  # cancelled, stopped, or the node's exit, which logs its own failures
        now = runtime.now()
        streak = self.failing.get(ch)
        if streak is None:
            self.failing[ch] = _Streak(now)
            log.warning(
                "saves of channel %r are failing, retried with backoff: %s: %s",
                ch.id,
                type(exc).__name__,
                exc,
                extra={"wes": _fields(ch.id, exc, 1, 1, 0.0)},
            )
            return
        streak.failures += 1
        streak.unlogged += 1
        if now - streak.logged_at < FAILING_LOG_INTERVAL:
            return
        log.warning(
            "saves of channel %r still failing: %d failures in the last %.0f s, %d since the "
            "first %.0f s ago: %s: %s",
            ch.id,
            streak.unlogged,
            now - streak.logged_at,
            streak.failures,
            now - streak.began,
            type(exc).__name__,
            exc,
            extra={
                "wes": _fields(ch.id, exc, streak.unlogged, streak.failures, now - streak.began)
            },
        )
        streak.logged_at = now
        streak.unlogged = 0

    def save_worked(self, ch: Channel, now: float) -> None:
        """A save of `ch` worked: end its streak of failures, if it had one, with a line."""
        streak = self.failing.pop(ch, None)
        if streak is None:
            return
        seconds = now - streak.began
        # At WARNING like the streak's other lines: a reader who filters at WARNING sees
        # the failures end, not only begin.
        log.warning(
            "saves of channel %r work again after %d failures over %.1f s",
            ch.id,
            streak.failures,
            seconds,
            extra={
                "wes": {
                    "channel": ch.id,
                    "failures_total": streak.failures,
                    "failing_seconds": seconds,
                }
            },
        )

    def schedule(self, ch: Channel, when: float, now: float | None = None) -> None:
        """Save `ch` at loop time `when` (to the next millisecond, or `FAR_BUCKET` if far
        ahead), if it is dirty then; `now` is the loop time, if the caller has it."""
        last = self._last
        if last.after < when <= last.when:  # its slot, as `ceil` below finds it but for
            # a float's rounding on the slot's very edge (a millisecond later, then), with
            # no call or division; a far deadline may join it too: it is due sooner
            last.channels.append(ch)
            return
        slot = math.ceil(when / RESOLUTION)
        if when - (self._runtime.now() if now is None else now) > FAR:
            slot = -(-slot // _FAR_SLOTS) * _FAR_SLOTS
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = _Bucket(self, slot)
            self._runtime.wheel.schedule(bucket, bucket.when)
        bucket.channels.append(ch)
        self._last = bucket

    def _due_now(self, bucket: _Bucket, now: float) -> None:
        del self._buckets[bucket.slot]
        if self._last is bucket:  # it is emptied now: a channel joining it would be lost
            self._last = _Bucket(self, -1)
        due = self._due
        if not due:
            asyncio.get_running_loop().call_soon(self._flush)
        for ch in bucket.channels:
            if ch.claim is None or not ch.dirty:
                continue  # stopped, or saved meanwhile (by a stop, say)
            if ch.busy:
                self.schedule(ch, now + BUSY_DELAY)
            else:
                ch.busy = True  # the sweep hands the turn back when the write ends
                due.append(ch)

    def _flush(self) -> None:
        channels, self._due = self._due, []
        if not channels:
            return  # every channel of a due bucket had stopped or was saved meanwhile
        if self._sweeping is not None:  # the running sweep takes them in its next slices
            self._sweeping += channels
        elif self._runtime.is_running:
            self._sweeping = channels
            self._runtime.spawn(self._save(channels))
        else:
            for ch in channels:
                ch.pass_turn()

    async def _save(self, channels: list[Channel]) -> None:
        """Sweep `channels`, and those `_flush` adds to the list while this snapshots."""
        chunks: list[_Chunk] = []  # sent, not yet concluded
        chunk: _Chunk | None = None  # being snapshotted
        start = 0
        try:
            goal = FIRST_ROWS
            while start < len(channels):
                held = self._held_by()
                while held is not None:
                    await held.wait()
                    while chunks and chunks[0].done():
                        self._conclude(chunks.pop(0))
                    held = self._held_by()
                if chunk is None:
                    chunk = _Chunk(self._runtime.now())
                    self._open.append(chunk)
                self._snapshot(chunk, channels[start : start + SLICE])
                start += SLICE
                if chunk.rows >= goal or start >= len(channels):
                    chunk.send()
                    chunks.append(chunk)
                    chunk, goal = None, min(2 * goal, FULL_ROWS)
                if start < len(channels):
                    await self._pause(chunks)
                    while chunks and chunks[0].done():
                        self._conclude(chunks.pop(0))
            self._sweeping = None  # no await since the last slice: channels due later
            # start a sweep of their own
            while chunks:
                await chunks[0].wait()
                self._conclude(chunks.pop(0))
            self._held_by()  # forgets the chunks written, which hold their channels
        finally:
            if self._sweeping is channels:  # cancelled: the node is closing
                self._sweeping = None
            if chunk is not None:  # cancelled while snapshotting: it will not be sent
                self._open.remove(chunk)
                chunks.append(chunk)
            for left in chunks:
                for ch in left.channels:
                    ch.pass_turn()
            for ch in channels[start:]:  # cancelled before their slice: their turns back
                ch.pass_turn()

    def _held_by(self) -> _Chunk | None:
        """The oldest chunk being written, if the sweeps (one snapshotting, others ending) hold more
        than `MAX_IN_FLIGHT` rows snapshotted and not yet written; else `None`. Forgets the
        chunks whose writes ended."""
        chunks = self._open
        while chunks and chunks[0].sent and chunks[0].done():
            chunks.popleft()
        if sum(chunk.unwritten() for chunk in chunks) <= MAX_IN_FLIGHT:
            return None
        return next((chunk for chunk in chunks if chunk.writing()), None)

    async def _pause(self, chunks: list[_Chunk]) -> None:
        """Let the loop run, between two slices of a sweep (`chunks`: its own, sent).

        With writes in flight on a store's thread (of any sweep), idle up to `GRACE` seconds
        (less if one ends) rather than only yield: `SqliteStore`'s thread needs the GIL to
        start a write and to end it, and a loop that lets go of it for a few microseconds at
        each yield (its `select`) wakes that thread without handing it over, which makes the
        thread wait again, a switch interval (5 ms) each time: the thread would write only
        once the sweep is done. Every sweep running idles so: one that only yielded would
        keep the loop from sleeping for the others.
        """
        pending = [
            group
            for sent in self._open
            if sent.on_thread and sent.sent
            for group, _, _ in sent.writes
            if not group.done()
        ]
        if pending:
            await asyncio.wait(pending, timeout=GRACE)
            return
        # A store on the loop (a server's client): each I/O step of a write (send, read the
        # reply, return the connection) takes a loop iteration, in each of which the sweep's
        # next slice would run first; a few iterations keep the writes from waiting on it.
        for _ in range(3 if any(not sent.done() for sent in chunks) else 1):
            await asyncio.sleep(0)

    def _snapshot(self, chunk: _Chunk, channels: list[Channel]) -> None:
        """Snapshot `channels` into `chunk`: queue their rows, to be sent with the chunk."""
        chunk.channels += channels
        queues = chunk.queues
        take_dirty_of(channels, self._runtime.now(), queues, chunk.begun, _not_begun)
        chunk.rows = sum(len(queue.params) for queue in queues.values()) // 4

    def _conclude(self, chunk: _Chunk) -> None:
        """Count the chunk's saves (or retry them later), and hand back every turn."""
        runtime = self._runtime
        now = runtime.now()
        counted = runtime.counts_events
        failing = self.failing
        for ch, error in zip(chunk.begun, chunk.errors(), strict=True):
            if ch.claim is None:
                continue  # it crashed meanwhile; nothing to count or retry
            if error is None and now < ch.lease_until and not counted:
                ch.save_retry = None  # the usual case, without a call per channel
                if failing and ch in failing:
                    self.save_worked(ch, now)
                continue
            try:
                ch.end_save(chunk.started, error, now)
            except Exception as exc:
                ch.periodic_save_failed(exc)
            else:
                ch.save_retry = None
        for ch in chunk.channels:
            # Hand back the turn; the wheel entry (idle timeout, timers) is where it was.
            if ch.waiters is None:
                ch.busy = False
            else:
                ch.pass_turn()


def _not_begun(ch: Channel, exc: Exception) -> None:
    """A sweep could not begin the save of `ch` (lease lost, or a state that cannot be
    encoded): count it, and try again later if it runs on."""
    ch.periodic_save_failed(exc)
    if ch.running:
        ch.retry_save_later()


def _fields(
    channel: Ident, exc: BaseException, failures: int, total: int, seconds: float
) -> dict[str, object]:
    """The structured fields of a line about failing saves (`wes.configure_logging`)."""
    return {
        "channel": channel,
        "actor": exc.actor if isinstance(exc, StateNotEncodable) else None,
        "error": type(exc).__name__,
        "error_message": str(exc),
        "failures": failures,
        "failures_total": total,
        "failing_seconds": seconds,
    }
