"""Group commit: the saves of many channels share one store write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._abc import Store, Write
from ._errors import StoreUnavailable, WesError

Results = list[BaseException | None]


def _consume(fut: asyncio.Future[Results]) -> None:
    # A caller that was cancelled no longer awaits the future; retrieve the outcome so asyncio
    # does not log "exception was never retrieved" for an error that was already handled.
    if not fut.cancelled():
        fut.exception()


class Ticket:
    """A queued batch: await `result()` for `None` (committed) or the batch's error."""

    __slots__ = ("_group", "_index")

    def __init__(self, group: asyncio.Future[Results], index: int) -> None:
        self._group = group
        self._index = index

    async def result(self) -> None:
        """Wait for the write; raise the batch's error, if any."""
        error = (await self._group)[self._index]
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
        self._group: asyncio.Future[Results] | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, batch: Sequence[Write]) -> Ticket:
        """Queue an atomic batch for the next write."""
        if self._group is None:
            self._group = asyncio.get_running_loop().create_future()
            self._group.add_done_callback(_consume)
        self._batches.append(batch)
        if self._task is None:
            self._task = self._spawn(self._run())
        return Ticket(self._group, len(self._batches) - 1)

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

    async def _write(self, batches: list[Sequence[Write]], group: asyncio.Future[Results]) -> None:
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
