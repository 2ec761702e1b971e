"""The counter actor most tests use; a test module subclasses it for handlers of its own."""

from __future__ import annotations

import wes


class Counter(wes.Actor):
    """One int of state: `incr` adds to it, the read `value` returns it."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    @wes.command
    def incr(self, n: int = 1) -> None:
        self.value += n

    @wes.read("value")
    def current(self) -> int:
        return self.value
