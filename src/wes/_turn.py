"""Reentrancy: which channels' turns the running task holds."""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._channel import Channel

# The channels whose turn the current task (or the task that spawned it) holds while it
# awaits a handler; an operation on one of them would wait for itself forever.
_holding: contextvars.ContextVar[tuple[Channel, ...]] = contextvars.ContextVar(
    "wes_holding", default=()
)


async def holding(ch: Channel, result: Any) -> Any:
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
