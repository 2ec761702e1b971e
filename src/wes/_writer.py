"""Group commit: the saves of many channels share one store write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._abc import Store, Write
from ._errors import StoreUnavailable, WesError


def _consume(fut: asyncio.Future[None]) -> None:
    # A caller that was cancelled no longer awaits its future; retrieve the outcome so asyncio
    # does not log "exception was never retrieved" for an error that was already handled.
    if not fut.cancelled():
        fut.exception()


class Writer:
    """Queues batches for one store and writes everything queued in one `Store.write` call.

    While one write is in flight, new batches wait; when it ends they all go in the next
    call, so concurrent channels share commits (group commit) without any added delay.
    """

    def __init__(
        self, store: Store, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        self._store = store
        self._spawn = spawn
        self._pending: list[tuple[Sequence[Write], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, batch: Sequence[Write]) -> asyncio.Future[None]:
        """Queue an atomic batch; the future resolves when it is committed (or refused)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_consume)
        self._pending.append((batch, fut))
        if self._task is None:
            self._task = self._spawn(self._run())
        return fut

    async def _run(self) -> None:
        try:
            while self._pending:
                queued, self._pending = self._pending, []
                await self._write(queued)
        finally:
            self._task = None
            for _, fut in self._pending:  # only left when cancelled on close
                if not fut.done():
                    fut.set_exception(StoreUnavailable("the node closed before the write"))
            self._pending = []

    async def _write(self, queued: list[tuple[Sequence[Write], asyncio.Future[None]]]) -> None:
        try:
            results = await self._store.write([batch for batch, _ in queued])
        except asyncio.CancelledError:
            for _, fut in queued:
                if not fut.done():
                    fut.set_exception(StoreUnavailable("the node closed during the write"))
            raise
        except Exception as exc:
            for _, fut in queued:
                if not fut.done():
                    fut.set_exception(_unavailable(exc))
            return
        for (_, fut), result in zip(queued, results, strict=True):
            if fut.done():
                continue
            if result is None:
                fut.set_result(None)
            else:
                fut.set_exception(result)


def _unavailable(exc: Exception) -> WesError:
    if isinstance(exc, WesError):
        return exc
    error = StoreUnavailable(f"store write failed: {exc!r}")
    error.__cause__ = exc
    return error
