"""The lifecycle hooks: `on_activate` when actors join a channel, `on_deactivate` before the
final save when they leave it normally. Both run in the channel's turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._turn import holding

if TYPE_CHECKING:
    from ._actor import Actor
    from ._channel import Channel


async def activate(ch: Channel, actors: Sequence[Actor]) -> None:
    """Call `on_activate` of the actors about to join `ch`, as members of it (`self.channel`
    and timers work); the caller adds them to the channel afterwards. If one raises, the
    timers they set are dropped and the exception propagates, with a note naming the actor:
    the caller releases their claims, and nothing starts."""
    hooked = [actor for actor in actors if actor._wes_activates]
    if not hooked:
        return
    for actor in actors:
        actor._wes_ch = ch
    try:
        for actor in hooked:
            try:
                await holding(ch, actor.on_activate())
            except Exception as exc:
                exc.add_note(
                    f"raised by on_activate of actor {actor.id!r} joining channel {ch.id!r}: "
                    f"the spec failed and nothing started"
                )
                raise
            actor._wes_dirty = True  # what the hook set is saved at the next save
    except BaseException:
        ch.drop_timers(actors)
        raise
    finally:
        for actor in actors:
            actor._wes_ch = None


async def deactivate(ch: Channel, actors: Sequence[Actor], reason: str) -> None:
    """Call `on_deactivate(reason)` of the actors leaving `ch` normally, before its final
    save; what they change is saved. The caller crashes the channel if one raises."""
    for actor in actors:
        if actor._wes_deactivates and actor._wes_ch is ch:
            await holding(ch, actor.on_deactivate(reason))
            actor._wes_dirty = True
            ch.mark_dirty()
