"""Reentrancy: which channels' turns the running task holds."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._channel import Channel

# The channels whose turn the current task (or the task that spawned it) holds while it
# awaits a handler; an operation on one of them would wait for itself forever.
_holding: contextvars.ContextVar[tuple[Channel, ...]] = contextvars.ContextVar(
    "wes_holding", default=()
)
