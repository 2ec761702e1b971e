"""Channels: passive serial executors holding the states of their actors.

A channel owns no task. A caller that finds the channel free runs the handlers itself (the
event loop already serializes them); a caller that finds it busy queues for its turn
(`_turn`). Timers and idle timeouts come from the node's shared wheel (`_timers`); periodic
saves from the save sweep (`_saving`, `_sweep`); lease renewals from the renewal sweep
(`_leases`); joining, leaving, stopping and crashing are `_membership`'s. This module holds
the channel's fields and commands.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._abc import Claim, Ident
from ._arguments import Refused, binding_failed, check_command, invalid
from ._errors import ChannelNotHere, InvalidName, LeaseLost, UnknownCommand
from ._membership import Membership
from ._saving import Saving
from ._timers import Timers
from ._turn import holding
from ._types import ChannelConf


class Channel(Saving, Timers, Membership):
    """A running channel. Created and driven by its node.

    A million idle channels must fit in little memory, so a channel keeps few fields: the
    rare ones (requests from handlers, save retries, timers, waiters) are `None` until used,
    and the lease needs no wheel entry: the node's renewal sweep watches it. The concerns
    are mixins without slots of their own, so the split costs nothing per channel.
    """

    __slots__ = ()

    def __init__(self, ident: Ident, conf: ChannelConf, claim: Claim, now: float):
        self.id = ident
        self.conf = conf
        self.claim = claim
        self.actors = ()
        self.has_async = False
        self.busy = False
        self.waiters = None
        self.dirty = False
        self.pending = None
        self.timers = None
        stamp = conf.runtime.stamp
        self.last_active = stamp(now)
        self.save_retry = None
        self.lease_until = stamp(now + conf.lease)
        self.wake_slot = None

    def __repr__(self) -> str:
        return f"<Channel {self.id!r} actors={len(self.actors)} running={self.running}>"

    # -- commands ---------------------------------------------------------------------------

    def apply_sync(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Apply a command whose handlers are all synchronous; raises what a handler raised,
        or `Refused` (nothing ran) if the arguments do not bind. Returns whether any actor
        handled it."""
        actors = self.actors
        if len(actors) == 1:
            # The usual channel: Python's own binding is the check (see `_arguments`).
            actor = actors[0]
            try:
                handler = actor._wes_commands.get(name)
            except TypeError:  # an unhashable name; one that is no str finds no handler
                raise Refused(_not_a_name(name)) from None
            if handler is None:
                return False
            try:
                handler(actor, *args, **kwargs)
            except TypeError as exc:
                if binding_failed(exc):
                    raise Refused(invalid("command", name, actor, handler, args, kwargs)) from None
                raise
            actor._wes_dirty = True
            return True
        if not isinstance(name, str):
            raise Refused(_not_a_name(name))
        check_command(name, actors, args, kwargs)
        handled = False
        for actor in actors:
            handler = actor._wes_commands.get(name)
            if handler is not None:
                actor._wes_dirty = True
                handler(actor, *args, **kwargs)
                handled = True
        return handled

    async def apply(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Apply a command that may have async handlers; the caller holds the turn. Raises
        `Refused` (nothing ran) if the arguments do not bind to a handler."""
        check_command(name, self.actors, args, kwargs)
        handled = False
        for actor in self.actors:
            handler = actor._wes_commands.get(name)
            if handler is None:
                handler = actor._wes_async_commands.get(name)
                if handler is None:
                    continue
                actor._wes_dirty = True
                handled = True
                await holding(self, handler(actor, *args, **kwargs))
            else:
                actor._wes_dirty = True
                handled = True
                handler(actor, *args, **kwargs)
        return handled

    def lease_ran_out(self) -> ChannelNotHere:
        """Stop, unsaved, a channel found past its lease by this node's clock (a process
        frozen past it wakes up to find calls queued), and return the error for the call
        that found it: nothing ran, and the caller looks the owner up again."""
        self.crash_later(LeaseLost(f"channel {self.id!r} found its lease run out"), lease_lost=True)
        return ChannelNotHere(
            self.id, f"channel {self.id!r} lost its lease and stopped unsaved; nothing ran"
        )

    def unhandled(self, name: str) -> None:
        if not isinstance(name, str):
            raise _not_a_name(name)
        if self.actors:
            raise UnknownCommand(f"no actor of channel {self.id!r} handles command {name!r}")
        self.conf.runtime.event("dead_letter", name, self.id)

    async def run_command(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The general path: wait for the turn, then apply and finish in a task of its own,
        so that cancelling the caller cannot cut a command in half."""
        await self.take_turn()
        task = self.conf.runtime.spawn(self._command_then_pass(name, args, kwargs))
        await asyncio.shield(task)

    async def _command_then_pass(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Apply a command in the turn the caller took, then pass the turn. The fast path in
        `Node.command` is this, inline, for a free channel of synchronous handlers."""
        try:
            self.last_active = now = self.conf.runtime.now()
            if now >= self.lease_until:
                raise self.lease_ran_out()
            try:
                handled = await self.apply(name, args, kwargs)
            except Refused as refused:
                raise refused.error from None
            except BaseException as exc:
                await self.crash(exc)
                raise
            if not handled:
                self.unhandled(name)
                return
            self.mark_dirty()
            await self.finish()
        finally:
            self.pass_turn()

    async def finish_then_pass(self) -> None:
        """After a command applied on the fast path: durable save, leave, stop; then pass
        the turn, which the caller took (set `busy`) before spawning this."""
        try:
            await self.finish()
        finally:
            self.pass_turn()

    async def finish(self) -> None:
        """Complete a command that left work behind: a durable save, leaving actors, a stop."""
        if self.conf.durable and self.dirty:
            await self.save_or_die()  # acknowledged means durable, or the channel dies unsaved
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending.stopping:
            await self.stop_in_turn("normal")
        elif pending.leaving:
            await self.leave_in_turn(pending.leaving)


def _not_a_name(name: object) -> InvalidName:
    return InvalidName(f"command name must be a str, not {name!r}")
