"""Stats sinks: `MemoryStats` counts events, `LoggingStats` logs them, `MultiStats` fans them
out to several sinks, `NullStats` drops them. `PrometheusStats` lives in `_prometheus`."""

from __future__ import annotations

import logging
from collections import defaultdict

from ._abc import Ident, Stats
from ._actor import is_expected

log = logging.getLogger("wes.stats")


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


class MultiStats(Stats):
    """Sends every event to several sinks, in order.

    It is `timed` if any of its sinks is; then every sink gets `seconds`. A sink
    that raises is logged on the `wes.stats` logger and the others still get the event.

    Args:
        *sinks: the stats sinks, such as `LoggingStats()` and `PrometheusStats()`.
    """

    def __init__(self, *sinks: Stats) -> None:
        self.sinks = sinks
        self.timed = any(sink.timed for sink in sinks)

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        for sink in self.sinks:
            try:
                sink.event(kind, name, ident, seconds, error)
            except Exception:  # one broken sink must not blind the others
                log.exception("stats sink %r failed on %s %s", sink, kind, name)


class LoggingStats(Stats):
    """Logs every event on the `wes.stats` logger, one record per event.

    Routine events go out at `level` (DEBUG by default); a failed save at WARNING, a stop by
    lease loss at WARNING, a stop by an exception the actor class lists in `expected_errors`
    at INFO without a traceback, and a stop by any other exception at ERROR. Each record
    carries the event's fields in its `wes` attribute (`kind`, `name`, `ident`, and `seconds`,
    `error`, `error_message` when known), which `wes.configure_logging` renders as JSON or
    key=value.

    An exception's traceback is logged once: a channel that dies of the very exception its
    failed save just logged (a durable save, a save at node exit) logs its stop without it.

    Args:
        logger: where to log; default the `wes.stats` logger.
        level: the level of routine events.
        timed: whether to receive and log the handling time of commands, reads and saves.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        level: int = logging.DEBUG,
        timed: bool = False,
    ) -> None:
        self._log = logger or log
        self._level = level
        self.timed = timed
        # Per channel, the exception whose traceback its last failed save logged; kept (not
        # weakly: exceptions take no weak references) until that channel stops.
        self._shown: dict[Ident, BaseException] = {}

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        if error is None:
            if kind == "stop":
                self._shown.pop(ident, None)
            if self._log.isEnabledFor(self._level):
                fields = {"kind": kind, "name": name, "ident": ident, "seconds": seconds}
                self._log.log(self._level, "%s %s %r", kind, name, ident, extra={"wes": fields})
            return
        if kind == "stop":
            level = logging.WARNING if name == "lease_lost" else logging.ERROR
            show = self._shown.pop(ident, None) is not error
            if is_expected(error):  # a refusal the actor class declared: no crash
                level, show = logging.INFO, False
        else:
            level = logging.WARNING
            show = True
            if kind == "save":
                self._shown[ident] = error
        if not self._log.isEnabledFor(level):
            return
        fields = {
            "kind": kind,
            "name": name,
            "ident": ident,
            "seconds": seconds,
            "error": type(error).__name__,
            "error_message": str(error),
        }
        exc_info = None
        if show and error.__traceback__ is not None:
            exc_info = (type(error), error, error.__traceback__)
        self._log.log(
            level,
            "%s %s %r: %s",
            kind,
            name,
            ident,
            error,
            exc_info=exc_info,
            extra={"wes": fields},
        )
