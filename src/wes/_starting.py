"""Starting channels and adding actors to them: claims first, then the stored states, then
`on_activate`; all or nothing."""

from __future__ import annotations

import asyncio

from ._abc import Claim, ClaimKind, Ident, Registry
from ._actor import Actor
from ._channel import Channel
from ._errors import (
    ActorAlreadyInChannel,
    ActorAlreadyLocked,
    ChannelAlreadyStarted,
    ChannelNotHere,
    InvalidSpec,
)
from ._loader import build_actors
from ._runtime import Runtime
from ._specs import Spec
from ._types import ChannelConf


async def start_channel(
    rt: Runtime, channel: Ident, conf: ChannelConf, specs: list[Spec]
) -> Channel:
    """Claim `channel`, load its actors and start it; on failure every claim taken is
    released and nothing runs. Concurrent starts of one channel wait on `rt.starting`."""
    if channel in rt.starting or channel in rt.channels:
        # Another start got here first: a cluster's routing awaits between its callers'
        # checks and this start, so two of them may arrive at once.
        raise ChannelAlreadyStarted(f"channel {channel!r} is already running")
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    rt.starting[channel] = done
    try:
        await rt.leases.settle()  # a stopped channel's claims may be on their way out
        check_local_locks(rt, specs, channel)
        sent_at = rt.now()  # the lease runs from the request, not the reply
        claims = await rt.leases.claim(
            [("channel", channel)], rt.address, conf.registry, conf.lease
        )
        ch = Channel(channel, conf, claims[0], sent_at)
        try:
            actors = await load(rt, ch, specs)
        except BaseException:
            ch.claim = None  # never started: a wheel entry its hooks made finds it stopped
            await rt.leases.release(claims)
            raise
        rt.channels[channel] = ch
        attach(rt, ch, actors)
        rt.event("start", "channel", channel)
        ch.reschedule()
        if ch.pending is not None:  # an on_activate hook asked to stop or to leave
            await ch.in_turn(ch.finish)
        return ch
    finally:
        del rt.starting[channel]
        done.set_result(None)


async def add_actors(rt: Runtime, ch: Channel, specs: list[Spec], *, ensure: bool) -> None:
    """Add the specs' actors to a running channel in its turn; with `ensure`, actors already
    in it are fine, else they are `ActorAlreadyInChannel`."""
    await ch.take_turn()
    try:
        present = {a._wes_id for a in ch.actors}
        missing = []
        for spec in specs:
            if spec.actor in present:
                if not ensure:
                    raise ActorAlreadyInChannel(
                        f"actor {spec.actor!r} is already in channel {ch.id!r}"
                    )
            else:
                missing.append(spec)
        if not missing:
            return
        check_local_locks(rt, missing, ch.id)
        actors = await load(rt, ch, missing)
        if not ch.running:
            await rt.leases.release([a._wes_claim for a in actors])
            raise ChannelNotHere(ch.id, f"channel {ch.id!r} stopped")
        attach(rt, ch, actors)
        if ch.pending is not None:  # an on_activate hook asked to stop or to leave
            await ch.finish()
    finally:
        ch.pass_turn()


def attach(rt: Runtime, ch: Channel, actors: list[Actor]) -> None:
    ch.add(actors)
    for actor in actors:
        rt.actors[actor._wes_id] = actor
        rt.event("start", "actor", actor._wes_id)
        if actor._wes_dirty:
            ch.mark_dirty()


def check_local_locks(rt: Runtime, specs: list[Spec], channel: Ident) -> None:
    for spec in specs:
        actor = rt.actors.get(spec.actor)
        if actor is not None and actor._wes_ch is not None:
            raise ActorAlreadyLocked(
                f"actor {spec.actor!r} is active in channel {actor._wes_ch.id!r}"
            )


async def load(rt: Runtime, ch: Channel, specs: list[Spec]) -> list[Actor]:
    """Claim the actors for the channel, build them, run their `on_activate` hooks; all
    or nothing."""
    by_registry: dict[Registry, list[tuple[ClaimKind, Ident]]] = {}
    actor_of: dict[Ident, Ident] = {}  # claim name -> actor id
    for spec in specs:
        conf = rt.actor_types[spec.actor[0]]
        name = conf.claim_ident(spec.actor[1])
        other = actor_of.setdefault(name, spec.actor)
        if other != spec.actor:
            raise InvalidSpec(
                f"actors {other!r} and {spec.actor!r} have one storage key {name[1]!r}: "
                f"they are one stored state, and only one of them can be active"
            )
        by_registry.setdefault(conf.registry, []).append(("actor", name))
    claims: list[Claim] = []
    try:
        for registry, names in by_registry.items():
            claims += await rt.leases.claim(
                names, ch.id, registry, ch.conf.lease, actor_of=actor_of
            )
        by_actor = {actor_of[c.ident]: c for c in claims}
        actors = await build_actors(rt, specs, by_actor)
        await ch.activate(actors)
        return actors
    except BaseException:
        await rt.leases.release(claims)
        raise
