"""Group commit: the saves of many channels share one store write.

Saves queue their rows flat: the fields of every row (in the order of `Write`) one after
another in one list, and the number of rows of each atomic batch in an array. A store may
take them so (`FlatWrite`; `SqliteStore` does); for any other, the writer builds the `Write`
batches only when it sends them. A `Write` tuple and a list per actor state, built by each
save and held until the write ends, would cost more than the rest of the save, and thousands
of them would survive into the collector's oldest generation and make it walk the whole heap
(every actor of the node) about once per sweep of all channels.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from itertools import chain
from typing import Any, Protocol

from ._abc import Store, Write
from ._errors import StoreUnavailable, WesError

Results = list[BaseException | None]
Group = asyncio.Future[Results]
_flatten = chain.from_iterable
_FIELDS = len(Write._fields)
# `Write(...)` runs the named tuple's Python-level __new__; this is the tuple's own.
_write: Callable[[Sequence[Any]], Write] = partial(tuple.__new__, Write)


class FlatWrite(Protocol):
    """A store's write of flat rows: `params` holds the fields of every row (in the order of
    `Write`) one after another, `sizes` the number of rows of each atomic batch; returns one
    result per batch, as `Store.write`."""

    async def __call__(self, params: list[Any], sizes: array[int]) -> Results: ...


def flat_write_of(store: Store) -> FlatWrite | None:
    """The flat write `store` offers (`_wes_flat_write()`), if any."""
    offer: Callable[[], FlatWrite | None] | None = getattr(store, "_wes_flat_write", None)
    return None if offer is None else offer()


def writes_on_thread(store: Store) -> bool:
    """Whether `store` says (`_wes_writes_on_thread`) that it writes on a thread of its own
    rather than on the event loop."""
    return bool(getattr(store, "_wes_writes_on_thread", False))


def _consume(fut: Group) -> None:
    # A caller that was cancelled no longer awaits the future; retrieve the outcome so asyncio
    # does not log "exception was never retrieved" for an error that was already handled.
    if not fut.cancelled():
        fut.exception()


class Ticket:
    """A queued batch: await `result()` for `None` (committed) or the batch's error."""

    __slots__ = ("_group", "_index")

    def __init__(self, group: Group, index: int) -> None:
        self._group = group
        self._index = index

    async def result(self) -> None:
        """Wait for the write; raise the batch's error, if any."""
        if not self._group.done():
            await asyncio.wait((self._group,))  # not `await group`: see `Writer.submit_many`
        error = self._group.result()[self._index]
        if error is not None:
            raise error


class Queue:
    """The batches one caller (a chunk of a save sweep, or one save) gathers for `writer`:
    its rows' fields one after another in `params`, each batch's row count in `sizes`, and
    per batch the caller's `owners` entry (which of its channels the batch is of)."""

    __slots__ = ("owners", "params", "sizes", "writer")

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.params: list[Any] = []
        self.sizes: array[int] = array("q")
        self.owners: list[int] = []

    def add(self, fields: list[Any], owner: int) -> None:
        """Gather one atomic batch: `fields` holds its rows' fields one after another."""
        self.params += fields
        self.sizes.append(len(fields) // _FIELDS)
        self.owners.append(owner)

    def send(self) -> tuple[Group, int]:
        """Queue the batches for the writer's next write; returns the future of its results
        and the index of the first of these batches in them (see `Writer.submit_flat`)."""
        return self.writer.submit_flat(self.params, self.sizes)


class Writer:
    """Queues batches for one store and writes everything queued in one `Store.write` call.

    While one write is in flight, new batches wait; when it ends they all go in the next
    call, so concurrent channels share commits (group commit) without any added delay. All
    batches of one call share one future, since a save sweep may queue thousands at once.

    Batches come flat (`submit_flat`, see `Queue`): no object per row or batch is held
    while they wait.
    """

    def __init__(
        self, store: Store, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        self._store = store
        self._spawn = spawn
        self._flat = flat_write_of(store)
        # A store that writes on a thread of its own (`SqliteStore`) needs the GIL from the
        # loop to start and end a write: a save sweep then idles between its slices while
        # such a write is in flight (`_sweep.SaveSweep._pause`).
        self.on_thread = writes_on_thread(store)
        self.params: list[Any] = []
        self.sizes: array[int] = array("q")
        self._group: Group | None = None
        self._task: asyncio.Task[None] | None = None

    def submit_flat(self, params: list[Any], sizes: array[int]) -> tuple[Group, int]:
        """Queue atomic batches for the next write: `params` holds the fields of their rows
        (in the order of `Write`) one after another, `sizes` the row count of each batch.
        Returns the future of that write's results and the index of the first of these
        batches in them.

        Await the future with `asyncio.wait`, not directly: it is shared, and a task awaiting
        a future cancels it when the task is cancelled.
        """
        group = self._group
        if group is None:
            group = self._group = asyncio.get_running_loop().create_future()
            group.add_done_callback(_consume)
        first = len(self.sizes)
        if first:
            self.params += params
            self.sizes += sizes
        else:  # the usual case: take the caller's lists, which it no longer uses
            self.params, self.sizes = params, sizes
        if self._task is None:
            self._task = self._spawn(self._run())
        return group, first

    def submit(self, batch: Sequence[Write]) -> Ticket:
        """Queue an atomic batch for the next write."""
        group, index = self.submit_flat(list(_flatten(batch)), array("q", (len(batch),)))
        return Ticket(group, index)

    async def _run(self) -> None:
        try:
            while self._group is not None:
                group, self._group = self._group, None
                await self._write(group)
        finally:
            self._task = None
            if self._group is not None and not self._group.done():  # cancelled on close
                self._group.set_exception(StoreUnavailable("the node closed before the write"))
            self._group = None
            self.params, self.sizes = [], array("q")

    def _take(self) -> Coroutine[Any, Any, Sequence[BaseException | None]]:
        """The store call that writes everything queued, which is then no longer queued."""
        params, sizes = self.params, self.sizes
        self.params, self.sizes = [], array("q")
        if self._flat is not None:
            return self._flat(params, sizes)
        return self._store.write(batches_of(params, sizes))

    async def _write(self, group: Group) -> None:
        try:
            results = await self._take()
        except asyncio.CancelledError:
            if not group.done():
                group.set_exception(StoreUnavailable("the node closed during the write"))
            raise
        except Exception as exc:
            if not group.done():
                group.set_exception(_unavailable(exc))
            return
        if not group.done():
            group.set_result(list(results))


def batches_of(params: list[Any], sizes: array[int]) -> list[list[Write]]:
    """The `Write` batches of flat rows (for a store that takes no flat rows, or a flat
    write that falls back to its store's own `write`)."""
    rows = [_write(params[i : i + _FIELDS]) for i in range(0, len(params), _FIELDS)]
    batches: list[list[Write]] = []
    start = 0
    for size in sizes:
        batches.append(rows[start : start + size])
        start += size
    return batches


def _unavailable(exc: Exception) -> WesError:
    if isinstance(exc, WesError):
        return exc
    error = StoreUnavailable(f"store write failed: {exc!r}")
    error.__cause__ = exc
    return error
