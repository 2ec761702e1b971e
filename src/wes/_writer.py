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
    """The batches one caller (a chunk of a save sweep, or one save) queues with `writer`:
    the future of the write that takes them, the index of the first in its results, and per
    batch the caller's `owners` entry (which of its channels the batch is of)."""

    __slots__ = ("first", "group", "owners", "writer")

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.group = writer.open()
        self.first = len(writer.sizes)
        self.owners: list[int] = []

    def add(self, fields: list[Any], owner: int) -> None:
        """Queue one atomic batch: `fields` holds its rows' fields one after another."""
        writer = self.writer
        writer.params += fields
        writer.sizes.append(len(fields) // _FIELDS)
        self.owners.append(owner)


class Writer:
    """Queues batches for one store and writes everything queued in one `Store.write` call.

    While one write is in flight, new batches wait; when it ends they all go in the next
    call, so concurrent channels share commits (group commit) without any added delay. All
    batches of one call share one future, since a save sweep may queue thousands at once.

    A caller queues rows itself: `open()` gives the future of the next write, then it appends
    the fields of each row to `params` and the row count of each atomic batch to `sizes`,
    then calls `queued()`, all without an await in between (the next write takes the queue at
    an await of the loop).
    """

    def __init__(
        self, store: Store, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        self._store = store
        self._spawn = spawn
        self._flat = flat_write_of(store)
        self.params: list[Any] = []
        self.sizes: array[int] = array("q")
        self._group: Group | None = None
        self._task: asyncio.Task[None] | None = None

    def open(self) -> Group:
        """The future of the next write's results, one per batch of `sizes` (see the class).

        Await it with `asyncio.wait`, not directly: it is shared, and a task awaiting a future
        cancels it when the task is cancelled.
        """
        group = self._group
        if group is None:
            group = self._group = asyncio.get_running_loop().create_future()
            group.add_done_callback(_consume)
        return group

    def queued(self) -> None:
        """Rows were queued: make sure a write will take them."""
        if self._task is None:
            self._task = self._spawn(self._run())

    def submit(self, batch: Sequence[Write]) -> Ticket:
        """Queue an atomic batch for the next write."""
        group = self.open()
        index = len(self.sizes)
        self.sizes.append(len(batch))
        self.params.extend(_flatten(batch))
        self.queued()
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
        return self._store.write(_batches(params, sizes))

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


def _batches(params: list[Any], sizes: array[int]) -> list[list[Write]]:
    """The `Write` batches of flat rows, for a store that takes no flat rows."""
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
