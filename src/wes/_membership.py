"""Who is in a channel and how they go: actors joining (with `on_activate`), leaving and
stopping (with `on_deactivate` and a final save), crashing, and the lease's verdicts (a
mixin of `Channel`: the channel holds the slots)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._actor import Actor, note_expected
from ._errors import LeaseLost, StaleToken
from ._state import ChannelState, Pending
from ._turn import holding

if TYPE_CHECKING:
    from ._abc import Claim


class Membership(ChannelState):
    """The actors of a channel and the ends of its life."""

    __slots__ = ()

    def add(self, actors: Sequence[Actor]) -> None:
        for actor in actors:
            actor._wes_ch = self
        self.actors = self.actors + tuple(actors)
        self.has_async = any(a._wes_async_commands for a in self.actors)

    def remove(self, actor: Actor) -> None:
        actor._wes_ch = None
        self.actors = tuple(a for a in self.actors if a is not actor)
        self.has_async = any(a._wes_async_commands for a in self.actors)
        self.drop_timers([actor])

    def claims(self) -> list[Claim]:
        assert self.claim is not None
        return [self.claim, *(a._wes_claim for a in self.actors)]

    # -- requests from actors -------------------------------------------------------------

    def request_stop(self) -> None:
        if self.pending is None:
            self.pending = Pending()
        self.pending.stopping = True

    def request_leave(self, actor: Actor) -> None:
        if self.pending is None:
            self.pending = Pending()
        if actor not in self.pending.leaving:
            self.pending.leaving.append(actor)

    # -- joining --------------------------------------------------------------------------

    async def activate(self, actors: Sequence[Actor]) -> None:
        """Call `on_activate` of the actors about to join, as members (`self.channel` and
        timers work); the caller adds them afterwards. If one raises, the timers they set
        are dropped and the exception propagates, with a note naming the actor: the caller
        releases their claims, and nothing starts."""
        hooked = [actor for actor in actors if actor._wes_activates]
        if not hooked:
            return
        for actor in actors:
            actor._wes_ch = self
        try:
            for actor in hooked:
                try:
                    await holding(self, actor.on_activate())
                except Exception as exc:
                    exc.add_note(
                        f"raised by on_activate of actor {actor.id!r} joining channel "
                        f"{self.id!r}: the spec failed and nothing started"
                    )
                    raise
                actor._wes_dirty = True  # what the hook set is saved at the next save
        except BaseException:
            self.drop_timers(list(actors))
            raise
        finally:
            for actor in actors:
                actor._wes_ch = None

    # -- leaving and stopping ---------------------------------------------------------------

    async def stop_in_turn(self, reason: str) -> None:
        """Stop normally (the caller holds the turn): save, release every claim. A failed
        save raises and the channel keeps running, so no state is dropped silently."""
        if any(actor._wes_deactivates for actor in self.actors):  # no coroutine otherwise
            await self.deactivate(self.actors, reason)
        runtime = self.conf.runtime
        try:
            await self.save()
        except (StaleToken, LeaseLost) as exc:
            runtime.event("save", "error", self.id, error=exc)
            await self.crash(exc, lease_lost=True)
            raise
        except BaseException as exc:
            self.periodic_save_failed(exc)  # counted and logged; it runs on, dirty
            raise
        claims = self.detach()
        await runtime.leases.release(claims)
        runtime.event("stop", reason, self.id)  # after the release: stopped means free

    async def leave_in_turn(self, leaving: list[Actor]) -> None:
        """Save, then let the actors go (the caller holds the turn)."""
        if any(actor._wes_deactivates for actor in leaving):
            await self.deactivate(leaving, "leave")
        await self.save()
        runtime = self.conf.runtime
        gone = [actor for actor in leaving if actor._wes_ch is self]
        for actor in gone:
            self.remove(actor)
            runtime.forget_actor(actor)
        await runtime.leases.release([actor._wes_claim for actor in gone])

    async def deactivate(self, actors: Sequence[Actor], reason: str) -> None:
        """Run the actors' `on_deactivate(reason)` hooks before a final save; what they change
        is saved. One that raises kills the channel unsaved, like a command's exception, and
        the error propagates."""
        try:
            for actor in actors:
                if actor._wes_deactivates and actor._wes_ch is self:
                    await holding(self, actor.on_deactivate(reason))
                    actor._wes_dirty = True
                    self.mark_dirty()
        except BaseException as exc:
            await self.crash(exc)
            raise

    def detach(self) -> list[Claim]:
        """Take the channel out of the node at once; return the claims to release."""
        claims = self.claims()
        self.claim = None
        runtime = self.conf.runtime
        runtime.forget_channel(self)
        for actor in self.actors:
            actor._wes_ch = None
        self.timers = None
        failing = runtime.sweep.failing
        if failing:
            failing.pop(self, None)  # a streak of failing saves ends with the channel
        return claims

    # -- dying ------------------------------------------------------------------------------

    async def crash(self, exc: BaseException, *, lease_lost: bool = False) -> None:
        """Stop without saving; the next start sees the last persisted states."""
        if self.running:
            if not lease_lost:
                note_expected(exc, self.actors)
            claims = self.detach()
            await self._released(claims, "lease_lost" if lease_lost else type(exc).__name__, exc)

    def crash_later(self, exc: BaseException, *, lease_lost: bool = False) -> None:
        """Crash from a callback: stopped at once, the claims released by a task the node
        tracks."""
        if self.running:
            if not lease_lost:
                note_expected(exc, self.actors)
            claims = self.detach()
            reason = "lease_lost" if lease_lost else type(exc).__name__
            runtime = self.conf.runtime
            ident = self.id
            # Counted when the release ends, in a callback: if the node closes first, a task
            # cancelled before its first step never runs its coroutine (nor its `finally`).
            runtime.spawn(runtime.leases.release(claims)).add_done_callback(
                lambda _: runtime.event("stop", reason, ident, error=exc)
            )

    async def _released(self, claims: list[Claim], reason: str, exc: BaseException) -> None:
        runtime = self.conf.runtime
        try:
            await runtime.leases.release(claims)
        finally:  # counted even if the node closes while the claims are released
            runtime.event("stop", reason, self.id, error=exc)

    # -- the lease ------------------------------------------------------------------------

    def renewed(self, ok: bool, until: float) -> None:
        """The answer to a renewal: on success the lease now runs until `until` (the time
        the renewal was sent plus the lease)."""
        if not self.running:
            return
        if ok:
            self.lease_until = until
        else:
            self.crash_later(LeaseLost(f"channel {self.id!r} lost its lease"), lease_lost=True)
