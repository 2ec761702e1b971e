"""The live page of a service: `LiveStats`, a stats sink that keeps a command rate, the
recent errors and the channels whose saves are failing, and `live_routes`, a self-updating
HTML page at `/` over a JSON endpoint.

The page is one self-contained document (no CDN, no external asset), put together from the
package's `static/live.html`, `live.css` and `live.js`: its script polls `api/live` about
once a second and rewrites the numbers and tables in place.
"""

from __future__ import annotations

import html
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from wes.abc import Ident, Stats

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from wes import Node

OTHER = "(other)"
"""The name that counts fall under once `LiveStats` tracks `max_names` distinct names."""

MESSAGE_LIMIT = 300  # characters of an error message kept; a huge repr must not pin memory


@dataclass(frozen=True, slots=True)
class LiveError:
    """One recent error: a channel stopped by an exception or a lost lease, or a failed save."""

    time: float
    """Wall-clock time of the event, seconds since the epoch."""
    kind: str
    """The stats event kind: `"stop"` or `"save"`."""
    channel: str
    """The channel, as `type/name`."""
    type: str
    """The exception's type name, or the stop reason when there was no exception."""
    message: str
    """The exception's message, cut to `MESSAGE_LIMIT` characters."""


@dataclass(frozen=True, slots=True)
class FailingSave:
    """A channel whose saves are failing: from its first failed save to its next save that
    works, or its stop."""

    channel: str
    """The channel, as `type/name`."""
    failures: int
    """Failed saves since the first."""
    since: float
    """Wall-clock time of the first failure, seconds since the epoch."""
    last: float
    """Wall-clock time of the latest failure."""
    type: str
    """The latest failure's exception type name."""
    message: str
    """The latest failure's message, cut to `MESSAGE_LIMIT` characters."""


class LiveStats(Stats):
    """A stats sink for a live view: counts by `(kind, name)`, a sliding-window command rate
    over per-second buckets, the last `max_errors` errors, and the channels whose saves are
    failing (a `("save", "error")` event adds one, its next `("save", "ok")` or stop clears it).

    Memory is bounded: a fixed ring of buckets, at most `max_names` distinct names (the rest
    count under `(kind, OTHER)`), a ring of errors that keeps only strings, never the
    exceptions themselves (their tracebacks would hold whole frames alive), and at most
    `max_failing` failing channels (`failing_full` says when more may be failing).

    Args:
        window: seconds over which `rate()` averages.
        history: seconds of per-second command counts that `history()` returns.
        max_errors: how many recent errors to keep.
        max_names: how many distinct `(kind, name)` pairs to count separately.
        max_failing: how many channels with failing saves to list.
        clock: a monotonic clock in seconds (tests pass a fake one).
        wall_clock: the clock that stamps errors, seconds since the epoch.
    """

    def __init__(
        self,
        window: int = 10,
        history: int = 60,
        max_errors: int = 50,
        max_names: int = 256,
        max_failing: int = 100,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if min(window, history, max_errors, max_names, max_failing) < 1:
            raise ValueError(
                "window, history, max_errors, max_names and max_failing must be positive"
            )
        self.window = window
        self.history_seconds = history
        self.max_names = max_names
        self._clock = clock
        self._wall = wall_clock
        self._started = clock()
        # Bucket i holds the commands of second _secs[i]; a slot whose second is not the one
        # asked for is stale and counts as zero, so nothing ever needs sweeping.
        self._size = max(window, history) + 1
        self._secs = [-1] * self._size
        self._ring = [0] * self._size
        self._counts: dict[tuple[str, str], int] = {}
        self._errors: deque[LiveError] = deque(maxlen=max_errors)
        self._error_total = 0
        self.max_failing = max_failing
        self._failing: dict[Ident, FailingSave] = {}
        self._failing_full = False  # a failing channel was left out of a full list

    def event(
        self,
        kind: str,
        name: str,
        ident: Ident,
        seconds: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        counts = self._counts
        key = (kind, name)
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < self.max_names:
            counts[key] = 1
        else:
            other = (kind, OTHER)
            counts[other] = counts.get(other, 0) + 1
        if kind == "command":
            sec = int(self._clock())
            i = sec % self._size
            if self._secs[i] == sec:
                self._ring[i] += 1
            else:
                self._secs[i] = sec
                self._ring[i] = 1
        elif self._failing and (kind == "stop" or (kind == "save" and error is None)):
            self._failing_ended(ident)
        if error is not None or (kind == "stop" and name == "lease_lost"):
            self._record_error(kind, name, ident, error)

    def _record_error(
        self, kind: str, name: str, ident: Ident, error: BaseException | None
    ) -> None:
        self._error_total += 1
        if error is None:
            type_name, message = name, "lease lost: stopped without saving"
        else:
            type_name, message = type(error).__name__, str(error)
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 1] + "…"
        now = self._wall()
        self._errors.append(LiveError(now, kind, _ident_text(ident), type_name, message))
        if kind == "save" and error is not None:
            self._save_failed(ident, now, type_name, message)

    def _failing_ended(self, ident: Ident) -> None:
        """A save of `ident` worked, or it stopped: it is no longer failing."""
        if self._failing.pop(ident, None) is not None and not self._failing:
            self._failing_full = False

    def _save_failed(self, ident: Ident, now: float, type_name: str, message: str) -> None:
        old = self._failing.get(ident)
        if old is not None:
            self._failing[ident] = FailingSave(
                old.channel, old.failures + 1, old.since, now, type_name, message
            )
        elif len(self._failing) < self.max_failing:
            self._failing[ident] = FailingSave(_ident_text(ident), 1, now, now, type_name, message)
        else:
            self._failing_full = True

    # -- reading --------------------------------------------------------------------------

    def _bucket(self, sec: int) -> int:
        i = sec % self._size
        return self._ring[i] if self._secs[i] == sec else 0

    def rate(self) -> float:
        """Commands per second over the last `window` seconds (the current second counts for
        the part of it that has passed; a younger sink averages over its age, at least 1 s)."""
        now = self._clock()
        cur = int(now)
        total = sum(self._bucket(s) for s in range(cur - self.window + 1, cur + 1))
        span = max(1.0, min(self.window - 1 + (now - cur), now - self._started))
        return total / span

    def history(self) -> list[int]:
        """Commands in each of the last `history` seconds, oldest first; the last entry is the
        current second, so far."""
        cur = int(self._clock())
        return [self._bucket(s) for s in range(cur - self.history_seconds + 1, cur + 1)]

    def counts(self) -> dict[tuple[str, str], int]:
        """A snapshot of the counts by `(kind, name)`."""
        return dict(self._counts)

    def errors(self) -> list[LiveError]:
        """The recent errors, newest first."""
        return list(reversed(self._errors))

    def failing_saves(self) -> list[FailingSave]:
        """The channels whose saves are failing, longest failing first."""
        return list(self._failing.values())  # in the order their first failures came

    @property
    def failing_full(self) -> bool:
        """Whether a channel with failing saves was left out because the list was full."""
        return self._failing_full

    @property
    def error_total(self) -> int:
        """How many errors were seen in all, including those no longer kept."""
        return self._error_total

    def snapshot(self) -> dict[str, Any]:
        """Everything the live page shows of these stats, ready for JSON."""
        kinds: dict[str, int] = {}
        for (kind, _), n in self._counts.items():
            kinds[kind] = kinds.get(kind, 0) + n
        return {
            "uptime": round(self._clock() - self._started, 1),
            "rate": round(self.rate(), 2),
            "window": self.window,
            "history": self.history(),
            "kinds": kinds,
            "counts": [
                {"kind": kind, "name": name, "count": n}
                for (kind, name), n in sorted(self._counts.items())
            ],
            "error_total": self._error_total,
            "errors": [
                {
                    "time": e.time,
                    "kind": e.kind,
                    "channel": e.channel,
                    "type": e.type,
                    "message": e.message,
                }
                for e in self.errors()
            ],
            "saves_failing": [
                {
                    "channel": f.channel,
                    "failures": f.failures,
                    "since": f.since,
                    "last": f.last,
                    "type": f.type,
                    "message": f.message,
                }
                for f in self.failing_saves()
            ],
            "saves_failing_full": self._failing_full,
        }


def _ident_text(ident: Ident) -> str:
    try:
        kind, name = ident
    except (TypeError, ValueError):
        return repr(ident)
    return f"{kind}/{name}"


def live_snapshot(node: Node, live_stats: LiveStats) -> dict[str, Any]:
    """What `GET /api/live` returns: the node, its peers (the cluster's live nodes as it
    hears them), its live channels and actors, and the stats: all of this node's own."""
    return {
        "time": time.time(),
        "node": node.address,
        "peers": node.peers,
        "channels": node.live_channels,
        "actors": node.live_actors,
        **live_stats.snapshot(),
    }


def live_routes(node: Node, live_stats: LiveStats, *, title: str = "wes bank") -> list[Route]:
    """The live page `GET /` and its data `GET /api/live`, as Starlette routes.

    Args:
        node: the node whose live channels and actors the page shows.
        live_stats: the sink the node reports to (directly or among others).
        title: the name shown at the top of the page.
    """
    try:
        from starlette.responses import HTMLResponse, JSONResponse
        from starlette.routing import Route
    except ImportError:
        raise ImportError("the live page needs: pip install 'wes-actors[service]'") from None

    page = live_page_html(title)

    async def live_page(request: Request) -> Response:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    async def live_api(request: Request) -> Response:
        return JSONResponse(live_snapshot(node, live_stats), headers=_API_HEADERS)

    return [
        Route("/", live_page, methods=["GET"], name="live_page"),
        Route("/api/live", live_api, methods=["GET"], name="live_api"),
    ]


_API_HEADERS = {"Cache-Control": "no-store"}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # The page loads nothing from anywhere: its only request is the poll of its own API.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


_PLACEHOLDER = re.compile(r"\{\{(title|style|script)\}\}")


def live_page_html(title: str = "wes bank") -> str:
    """The live page as one document: `static/live.html` with the title, and the style and
    script of `static/live.css` and `static/live.js` inline (the page's policy allows no
    other source). One pass fills the slots, so a title like `{{script}}` stays text."""
    static = files(__package__) / "static"
    parts = {
        "title": html.escape(title),
        "style": (static / "live.css").read_text(encoding="utf-8").rstrip("\n"),
        "script": (static / "live.js").read_text(encoding="utf-8").rstrip("\n"),
    }
    template = (static / "live.html").read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda slot: parts[slot[1]], template)
