"""The turn: how callers take a channel one at a time, and how reentrancy is caught.

A channel owns no task. A caller that finds it free (`busy` false) sets `busy` and runs the
handlers itself; one that finds it busy queues a future in `waiters` and is handed the turn
by `pass_turn`. Every path that runs handlers takes the turn this way, with one inline
variant: `Node.command` and `Node.read` check `busy` themselves and run synchronous handlers
without awaiting anything, so they hold the turn without marking it (nothing else runs on
the loop meanwhile); a fast command that leaves work behind sets `busy` before it spawns
`finish_then_pass`.

An async handler awaiting an operation on its own channel would wait for itself forever:
`holding` marks the channels whose turn the running task holds, and `take_turn` refuses
them with `ReentrantCall`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._abc import Ident
from ._errors import ChannelNotHere, ReentrantCall

T = TypeVar("T")

# The channels whose turn the current task (or the task that spawned it) holds while it
# awaits a handler; an operation on one of them would wait for itself forever.
_holding: contextvars.ContextVar[tuple[Turn, ...]] = contextvars.ContextVar(
    "wes_holding", default=()
)

# Across nodes: the channels whose turn the call path holds on other nodes, carried with
# each remote call (`_wire`) and set by the node serving it for the task that runs it.
remote_chain: contextvars.ContextVar[tuple[Ident, ...]] = contextvars.ContextVar(
    "wes_remote_chain", default=()
)


def call_chain() -> tuple[Ident, ...]:
    """The channels whose turn the current call path holds, on this node and others."""
    held = _holding.get()
    if not held:  # most calls: no handler up the call path awaits them
        return remote_chain.get()
    return remote_chain.get() + tuple([ch.id for ch in held])


class Turn:
    """The turn-taking part of a channel: `busy` while a caller holds the turn, and the
    futures of the callers queued for it."""

    __slots__ = ("busy", "waiters")

    id: Ident
    busy: bool
    waiters: deque[asyncio.Future[None]] | None

    if TYPE_CHECKING:

        @property
        def running(self) -> bool: ...

    def check_reentry(self) -> None:
        if self in _holding.get():
            raise ReentrantCall(
                f"a handler of channel {self.id!r} awaited an operation on its own channel, "
                f"which would wait for itself forever"
            )

    async def take_turn(self) -> None:
        """Wait for the turn; on return the caller holds it (`busy` is true). Raises
        `ChannelNotHere` (not holding it) if the channel stopped meanwhile."""
        if not self.busy:
            self.busy = True
        else:
            self.check_reentry()
            if self.waiters is None:
                self.waiters = deque()
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.pass_turn()  # the turn was handed to us as we were cancelled
                raise
        if not self.running:
            self.pass_turn()
            raise ChannelNotHere(self.id, f"channel {self.id!r} stopped")

    def pass_turn(self) -> None:
        """Hand the turn to the next waiter, or free the channel."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.waiters = None
        self.busy = False

    async def in_turn(self, work: Callable[[], Awaitable[T]]) -> T:
        """Take the turn, run `work()`, pass the turn."""
        await self.take_turn()
        try:
            return await work()
        finally:
            self.pass_turn()


async def holding(ch: Turn, result: Any) -> Any:
    """`result` as it is, or awaited if it is a coroutine (of an async handler, timer or
    hook), marking `ch`'s turn as held by this task meanwhile: an operation on `ch` from
    inside it fails with `ReentrantCall` instead of waiting for itself."""
    if not asyncio.iscoroutine(result):
        return result
    token = _holding.set((*_holding.get(), ch))
    try:
        return await result
    finally:
        _holding.reset(token)
