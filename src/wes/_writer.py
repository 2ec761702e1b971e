"""Group commit: the saves of many channels share one store write.

A store may take a write's rows flat (`FlatWrite`; `SqliteStore` does): then the writer keeps
no batch while it waits, only the rows' fields in one list and the batches' sizes in an
array. Saves build a `Write` tuple and a list per actor state; held until the write ends,
thousands of these would survive into the collector's oldest generation and make it walk the
whole heap (every actor of the node) about once per sweep of all channels.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable, Coroutine, Sequence
from itertools import chain
from typing import Any, Protocol

from ._abc import Store, Write
from ._errors import StoreUnavailable, WesError

Results = list[BaseException | None]
Group = asyncio.Future[Results]
_flatten = chain.from_iterable


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


class Writer:
    """Queues batches for one store and writes everything queued in one `Store.write` call.

    While one write is in flight, new batches wait; when it ends they all go in the next
    call, so concurrent channels share commits (group commit) without any added delay. All
    batches of one call share one future, since a save sweep may queue thousands at once.
    """

    def __init__(
        self, store: Store, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        self._store = store
        self._spawn = spawn
        self._flat = flat_write_of(store)
        self._batches: list[Sequence[Write]] = []  # when the store takes no flat rows
        self._params: list[Any] = []
        self._sizes: array[int] = array("q")
        self._group: Group | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, batch: Sequence[Write]) -> Ticket:
        """Queue an atomic batch for the next write."""
        group, index = self.submit_many((batch,))
        return Ticket(group, index)

    def submit_many(self, batches: Sequence[Sequence[Write]]) -> tuple[Group, int]:
        """Queue several atomic batches for the next write; returns the future of that write's
        results and the index of the first of these batches in them.

        Await the future with `asyncio.wait`, not directly: it is shared, and a task awaiting
        a future cancels it when the task is cancelled.
        """
        group = self._group
        if group is None:
            group = self._group = asyncio.get_running_loop().create_future()
            group.add_done_callback(_consume)
        if self._flat is None:
            first = len(self._batches)
            self._batches.extend(batches)
        else:
            first = len(self._sizes)
            self._sizes.extend(map(len, batches))
            self._params.extend(_flatten(_flatten(batches)))
        if self._task is None:
            self._task = self._spawn(self._run())
        return group, first

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
            self._batches, self._params, self._sizes = [], [], array("q")

    def _take(self) -> Coroutine[Any, Any, Sequence[BaseException | None]]:
        """The store call that writes everything queued, which is then no longer queued."""
        if self._flat is None:
            batches, self._batches = self._batches, []
            return self._store.write(batches)
        params, sizes = self._params, self._sizes
        self._params, self._sizes = [], array("q")
        return self._flat(params, sizes)

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


def _unavailable(exc: Exception) -> WesError:
    if isinstance(exc, WesError):
        return exc
    error = StoreUnavailable(f"store write failed: {exc!r}")
    error.__cause__ = exc
    return error
