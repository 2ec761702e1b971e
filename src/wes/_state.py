"""The fields of a running channel, declared once for the modules that each handle one
concern of it (`_saving`, `_timers`, `_membership`, `_channel`): `Channel` inherits them all
and holds the slots, so the split costs no memory and no attribute hop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._turn import Turn

if TYPE_CHECKING:
    from ._abc import Claim
    from ._actor import Actor
    from ._types import ChannelConf


class Timer:
    """A periodic actor timer; `inline` when its `on_timer` is synchronous (the wheel's
    callback fires it right there)."""

    __slots__ = ("actor", "due", "inline", "interval", "name")

    def __init__(self, actor: Actor, name: str, interval: float, due: float) -> None:
        self.actor = actor
        self.name = name
        self.interval = interval
        self.due = due
        self.inline = not actor._wes_async_timer


class Pending:
    """What a command asked of its channel for after it (rare, so kept out of the channel)."""

    __slots__ = ("leaving", "stopping")

    def __init__(self) -> None:
        self.stopping = False
        self.leaving: list[Actor] = []


class ChannelState(Turn):
    """A channel's fields (its slots and `Turn`'s; the concerns' classes and `Channel` add
    none) and the steps its concerns call across modules."""

    __slots__ = (
        "actors",
        "claim",
        "conf",
        "dirty",
        "has_async",
        "id",
        "last_active",
        "lease_until",
        "pending",
        "save_retry",
        "timers",
        "wake_slot",
    )

    conf: ChannelConf
    claim: Claim | None  # None once stopped
    actors: tuple[Actor, ...]
    has_async: bool
    dirty: bool
    pending: Pending | None
    timers: Timer | dict[tuple[Actor, str], Timer] | None  # see `_timers`
    last_active: float
    save_retry: float | None  # the last backoff delay after a failed save
    lease_until: float
    wake_slot: list[Any] | None  # the wheel's

    @property
    def running(self) -> bool:
        return self.claim is not None

    if TYPE_CHECKING:  # defined by the concern that owns them

        def mark_dirty(self, now: float | None = None) -> None: ...
        async def save(self) -> None: ...
        def periodic_save_failed(self, exc: BaseException) -> None: ...
        def drop_timers(self, actors: tuple[Actor, ...] | list[Actor]) -> None: ...
        async def crash(self, exc: BaseException, *, lease_lost: bool = False) -> None: ...
        def crash_later(self, exc: BaseException, *, lease_lost: bool = False) -> None: ...
        async def stop_in_turn(self, reason: str) -> None: ...
        async def finish(self) -> None: ...
        def request_stop(self) -> None: ...
        def request_leave(self, actor: Actor) -> None: ...
        def set_timer(self, actor: Actor, name: str, seconds: float) -> None: ...
        def cancel_timer(self, actor: Actor, name: str) -> None: ...
