"""A stats sink that keeps every event, for tests that check what the node reported."""

from __future__ import annotations

import wes
from wes.abc import Ident

Event = tuple[str, str, Ident, float | None, BaseException | None]


class Recorder(wes.abc.Stats):
    """Keeps every event as `(kind, name, ident, seconds, error)`; `timed` asks the node for
    durations."""

    def __init__(self, timed: bool = False) -> None:
        self.timed = timed
        self.events: list[Event] = []

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.events.append((kind, name, ident, seconds, error))

    def of(self, kind: str, name: str) -> list[tuple[Ident, float | None, BaseException | None]]:
        """`(ident, seconds, error)` of every event of `kind` and `name`."""
        return [(i, s, e) for k, n, i, s, e in self.events if (k, n) == (kind, name)]

    def count(self, kind: str, name: str) -> int:
        return len(self.of(kind, name))

    def errors(self, kind: str, name: str) -> list[BaseException | None]:
        return [e for _, _, e in self.of(kind, name)]

    def names(self) -> list[tuple[str, str, Ident]]:
        """`(kind, name, ident)` of every event, in order."""
        return [(k, n, i) for k, n, i, _, _ in self.events]
