"""The lifecycle hooks: `on_activate` when actors join a channel, `on_deactivate` before the
final save when they leave it normally. Both run in the channel's turn."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._turn import _holding

if TYPE_CHECKING:
    from ._actor import Actor
    from ._channel import Channel


async def activate(ch: Channel, actors: Sequence[Actor]) -> None:
    """Call `on_activate` of the actors about to join `ch`, as members of it (`self.channel`
    and timers work). If one raises, the actors are taken out again with the timers they
    set, and the exception propagates: the caller releases their claims, and nothing starts.
    """
    hooked = [actor for actor in actors if actor._wes_activates]
    if not hooked:
        return
    for actor in actors:
        actor._wes_ch = ch
    try:
        for actor in hooked:
            await _run(ch, actor, actor.on_activate())
            actor._wes_dirty = True  # what the hook set is saved at the next save
    except BaseException as exc:
        for actor in actors:
            actor._wes_ch = None
        if ch.timers:
            joining = set(map(id, actors))
            for key in [key for key in ch.timers if id(key[0]) in joining]:
                del ch.timers[key]
        if isinstance(exc, Exception):
            exc.add_note(
                f"raised by on_activate of actor {actor.id!r} joining channel {ch.id!r}: "
                f"the spec failed and nothing started"
            )
        raise
    finally:
        for actor in actors:
            if actor._wes_ch is ch:
                actor._wes_ch = None  # the caller adds them to the channel for good


async def deactivate(ch: Channel, actors: Sequence[Actor], reason: str) -> None:
    """Call `on_deactivate(reason)` of the actors leaving `ch` normally, before its final
    save; what they change is saved. The caller crashes the channel if one raises."""
    for actor in actors:
        if actor._wes_deactivates and actor._wes_ch is ch:
            await _run(ch, actor, actor.on_deactivate(reason))
            actor._wes_dirty = True
            ch.mark_dirty()


async def _run(ch: Channel, actor: Actor, result: Any) -> None:
    if asyncio.iscoroutine(result):
        token = _holding.set((*_holding.get(), ch))
        try:
            await result
        finally:
            _holding.reset(token)
