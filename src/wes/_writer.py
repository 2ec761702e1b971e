"""Group commit: the saves of many channels share one store write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._abc import Store, Write
from ._errors import StoreUnavailable, WesError

Results = list[BaseException | None]
Group = asyncio.Future[Results]


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
        self._batches: list[Sequence[Write]] = []
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
        first = len(self._batches)
        self._batches.extend(batches)
        if self._task is None:
            self._task = self._spawn(self._run())
        return group, first

    async def _run(self) -> None:
        try:
            while self._group is not None:
                batches, group = self._batches, self._group
                self._batches, self._group = [], None
                await self._write(batches, group)
        finally:
            self._task = None
            if self._group is not None and not self._group.done():  # cancelled on close
                self._group.set_exception(StoreUnavailable("the node closed before the write"))
            self._batches, self._group = [], None

    async def _write(self, batches: list[Sequence[Write]], group: Group) -> None:
        try:
            results = await self._store.write(batches)
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
