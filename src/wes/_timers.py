"""Timers and idle timeouts of a channel, woken by the node's shared wheel (a mixin of
`Channel`: the channel holds the slots).

A channel's `timers` is `None`, its one `Timer` (the usual case: a dict of one entry and its
key tuple would cost ~240 bytes per timed channel, and the tick would pay for walking it), or
a dict of its timers by (actor, name) once it has several.

The hot path is a million channels with one synchronous timer each, under periodic
durability: the wheel's callback fires such a tick right there (`wake`), with no task and no
future, as a free channel runs commands in its caller, and asks the wheel for the next tick
itself when nothing else (an idle deadline, a request of the handler) needs looking at.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._state import ChannelState, Timer
from ._turn import holding
from ._wheel import BUSY_DELAY, RESOLUTION

if TYPE_CHECKING:
    from ._actor import Actor

_NEVER = float("inf")


class Timers(ChannelState):
    """Actor timers (`timers`, `None` until one is set) and the idle timeout."""

    __slots__ = ()

    def set_timer(self, actor: Actor, name: str, seconds: float) -> None:
        runtime = self.conf.runtime
        due = runtime.now() + seconds
        timer = Timer(actor, name, seconds, due)
        timers = self.timers
        if timers is None or (
            isinstance(timers, Timer) and timers.actor is actor and timers.name == name
        ):
            self.timers = timer
        elif isinstance(timers, Timer):
            self.timers = {(timers.actor, timers.name): timers, (actor, name): timer}
        else:
            timers[actor, name] = timer
        runtime.wheel.schedule(self, due)

    def cancel_timer(self, actor: Actor, name: str) -> None:
        timers = self.timers
        if isinstance(timers, Timer):
            if timers.actor is actor and timers.name == name:
                self.timers = None
        elif timers:
            timers.pop((actor, name), None)

    def drop_timers(self, actors: tuple[Actor, ...] | list[Actor]) -> None:
        """Cancel every timer of these actors."""
        timers = self.timers
        if isinstance(timers, Timer):
            if any(timers.actor is a for a in actors):
                self.timers = None
        elif timers:
            for key in [k for k in timers if any(k[0] is a for a in actors)]:
                del timers[key]

    def timer_list(self) -> list[Timer]:
        """The channel's timers, whatever form `timers` has."""
        timers = self.timers
        if timers is None:
            return []
        if isinstance(timers, Timer):
            return [timers]
        return list(timers.values())

    def holds_timer(self, timer: Timer) -> bool:
        """Whether `timer` is still set (not cancelled, replaced, or dropped by a stop)."""
        timers = self.timers
        if isinstance(timers, Timer):
            return timers is timer
        return timers is not None and timers.get((timer.actor, timer.name)) is timer

    def wake(self, now: float) -> None:
        """Called by the wheel at (or after) the earliest deadline asked for."""
        if self.claim is None:  # stopped
            return
        conf = self.conf
        if self.busy:
            conf.runtime.wheel.schedule(self, now + BUSY_DELAY)  # due work waits for the turn
            return
        timer = self.timers
        if timer is not None and not conf.durable:
            if isinstance(timer, Timer):
                if timer.due <= now and timer.inline:
                    if not self.tick_inline(timer, now):
                        return
                    if self.pending is None and self.timers is timer:
                        # The next wake (`after_inline`, then `reschedule`, inline).
                        deadline = timer.due
                        idle = conf.idle_timeout
                        if idle is not None and self.last_active + idle < deadline:
                            deadline = self.last_active + idle
                        soonest = now + RESOLUTION
                        wheel = conf.runtime.wheel
                        wheel.schedule(self, deadline if deadline > soonest else soonest, now)
                    else:
                        self.after_inline(now)
                    return
            else:
                due = self.due_timers(now)
                if due and all(t.inline for t in due):
                    self.fire_timers_inline(due, now)
                    return
        work = self.due_work(now)
        if work is None:
            self.reschedule(now)
        else:
            self.busy = True
            conf.runtime.spawn(
                self._run_due(self.fire_timers if work == "timers" else self.stop_idle)
            )

    def due_work(self, now: float) -> str | None:
        if any(t.due <= now for t in self.timer_list()):
            return "timers"
        idle = self.conf.idle_timeout
        if idle is not None and now >= self.last_active + idle:
            return "idle"
        return None

    async def _run_due(self, work: Callable[[], Awaitable[Any]]) -> None:
        try:
            await work()
        finally:
            self.pass_turn()
            if self.running:
                self.reschedule()

    async def stop_idle(self) -> None:
        # A failed save was counted; the channel runs on and retries after another period.
        # An on_deactivate hook that raised killed the channel, and that was counted too.
        with contextlib.suppress(Exception):
            await self.stop_in_turn("idle")
        if self.running:
            self.last_active = self.conf.runtime.now()  # retry after another idle period

    def due_timers(self, now: float) -> list[Timer]:
        """The timers due at `now`, earliest first."""
        due = [t for t in self.timer_list() if t.due <= now]
        if len(due) > 1:
            due.sort(key=lambda t: t.due)
        return due

    def fire_timers_inline(self, due: list[Timer], now: float) -> None:
        """Fire due synchronous timers right in the wheel's callback, as a free channel runs
        commands in its caller: no task, no future (there may be a million timers ticking).
        Only for periodic durability, where nothing needs awaiting afterwards."""
        for timer in due:
            if not self.holds_timer(timer):
                continue  # cancelled by an earlier timer, or the channel stopped
            if not self.tick_inline(timer, now):
                return
        self.after_inline(now)

    def tick_inline(self, timer: Timer, now: float) -> bool:
        """Fire one due synchronous timer in the wheel's callback; False if it crashed the
        channel."""
        interval = timer.interval
        due = timer.due + interval
        timer.due = due if due > now else now + interval  # fell behind: skip, don't burst
        actor = timer.actor
        runtime = self.conf.runtime
        if runtime.counts_events:
            runtime.event("timer", timer.name, self.id)
        actor._wes_dirty = True
        try:
            actor.on_timer(timer.name)
        except Exception as exc:
            self.crash_later(exc)
            return False
        if not self.dirty:
            self.mark_dirty(now)
        return True

    def after_inline(self, now: float) -> None:
        """After inline timers: what they asked for (a stop, a leave), or the next wake."""
        if self.pending is not None:  # a timer asked to stop the channel or to leave it
            self.busy = True
            self.conf.runtime.spawn(self._run_due(self.finish))
        else:
            self.reschedule(now)

    async def fire_timers(self) -> None:
        runtime = self.conf.runtime
        now = runtime.now()
        for timer in self.due_timers(now):
            if not self.running or self.timers is None:
                return
            if not self.holds_timer(timer):
                continue  # cancelled by an earlier timer
            timer.due += timer.interval
            if timer.due <= now:
                timer.due = now + timer.interval  # fell behind: skip, don't burst
            runtime.event("timer", timer.name, self.id)
            try:
                timer.actor._wes_dirty = True
                await holding(self, timer.actor.on_timer(timer.name))
            except BaseException as exc:
                await self.crash(exc)
                return
            self.mark_dirty()
        if self.running:
            # A failure was counted, and the channel stopped (durable) or runs on.
            with contextlib.suppress(Exception):
                await self.finish()

    def reschedule(self, now: float | None = None) -> None:
        """Ask the wheel to wake this channel at its next deadline."""
        conf = self.conf
        idle = conf.idle_timeout
        deadline = _NEVER if idle is None else self.last_active + idle
        timers = self.timers
        if isinstance(timers, Timer):
            if timers.due < deadline:
                deadline = timers.due
        elif timers:
            deadline = min(deadline, min(t.due for t in timers.values()))
        if deadline != _NEVER:
            runtime = conf.runtime
            if now is None:
                now = runtime.now()
            soonest = now + RESOLUTION
            runtime.wheel.schedule(self, deadline if deadline > soonest else soonest, now)
