"""Stats sinks: `MemoryStats` counts events, `LoggingStats` logs them, `NullStats` drops them."""

from __future__ import annotations

import logging
from collections import defaultdict

from ._abc import Ident, Stats


class NullStats(Stats):
    """Drops every event; the node's default."""

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        pass


class MemoryStats(Stats):
    """Counts events by `(kind, name)`, such as `("command", "incr")`."""

    def __init__(self) -> None:
        self._counts: defaultdict[tuple[str, str], int] = defaultdict(int)

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._counts[kind, name] += 1

    def counts(self) -> dict[tuple[str, str], int]:
        """A snapshot of the counts so far."""
        return dict(self._counts)


class LoggingStats(Stats):
    """Logs every event on the `wes.stats` logger: routine events at DEBUG, stops by
    exception and failed saves at WARNING with the traceback."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("wes.stats")

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        if error is not None:
            self._log.warning(
                "%s %s %r", kind, name, ident, exc_info=(type(error), error, error.__traceback__)
            )
        elif self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("%s %s %r", kind, name, ident)
