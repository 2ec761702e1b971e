"""A node's part in a cluster: joining and leaving it, and the operations' paths for a
channel or actor that does not run here (`Node` inherits this).

Every operation looks for its channel here first, exactly as a lone node does; only when it
is not here (or its lease ran out here) does it come to these paths, which ask the cluster
(`_cluster`) to reach the owner, or raise as a lone node does when there is no transport,
or when the node is serving a remote call for that very channel (`_cluster.serving`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._abc import Ident, Transport
from ._cluster import ABSENT, LOCAL, Cluster, serving
from ._errors import ActorNotHere, ChannelNotHere, InvalidConfig, InvalidName, WesError
from ._peers import Peers
from ._serving import Server
from ._specs import check_id
from ._travel import qualified_name

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._types import ChannelConf, ChannelRef

log = logging.getLogger("wes")


class InCluster:
    """The cluster paths of `Node` (see the module docstring)."""

    _rt: Runtime
    _cluster: Cluster | None
    _server: Server | None
    _error_types: dict[str, type[BaseException]]

    if TYPE_CHECKING:  # `Node`'s

        async def command(self, channel: Ident, name: str, /, *a: Any, **kw: Any) -> None: ...
        async def read(self, actor: Ident, name: str, /, *a: Any, **kw: Any) -> Any: ...
        async def status(self, channel: Ident) -> ChannelRef | None: ...

    def _setup_cluster(self, transport: Transport | None, call_timeout: Any) -> None:
        self._error_types = {}
        self._cluster = self._server = None
        number = isinstance(call_timeout, int | float) and not isinstance(call_timeout, bool)
        if not (number and call_timeout > 0):
            raise InvalidConfig(f"call_timeout must be a positive number, not {call_timeout!r}")
        if transport is None:
            return
        if not isinstance(transport, Transport):
            raise InvalidConfig(f"transport must be a wes.abc.Transport, not {transport!r}")
        rt = self._rt
        peers = Peers(rt.address, transport, rt.now, rt.spawn)
        self._cluster = Cluster(rt, transport, float(call_timeout), peers)
        self._cluster.error_types = self._error_types
        self._server = Server(self, rt, rt.channels, rt.actors, rt.tasks, transport)  # type: ignore[arg-type]

    @property
    def peers(self) -> list[str]:
        """The addresses of the cluster's live nodes as this node hears them, itself
        included (a lone node: itself alone), sorted. A hint, kept fresh by announcements:
        the registry alone decides who runs a channel."""
        if self._cluster is None:
            return [self._rt.address]
        return self._cluster.peers.live()

    def error_type(self, cls: type[BaseException]) -> None:
        """Rebuild an actor's exception of class `cls` that comes back from another node as
        `cls` itself (from its JSON args), not as `wes.RemoteError`."""
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise InvalidConfig(f"error_type needs an Exception subclass, not {cls!r}")
        self._error_types[qualified_name(cls)] = cls

    # -- joining and leaving --------------------------------------------------------------

    async def _join(self) -> None:
        """Take remote calls and announce this node (after the runtime started)."""
        cluster, server = self._cluster, self._server
        if cluster is None or server is None:
            return
        await cluster.transport.listen(self._rt.address, server.on_request, cluster.peers.heard)
        self._rt.spawn(cluster.peers.run())

    async def _stop_taking_calls(self) -> None:
        """The first step of closing: callers re-route from now on. Calls in flight finish."""
        cluster, server = self._cluster, self._server
        if cluster is None or server is None:
            return
        server.accepting = False
        await cluster.peers.leave()
        try:
            await cluster.transport.unlisten(self._rt.address)
        except Exception as exc:
            log.warning("could not stop taking remote calls: %r", exc)
        await server.drain(cluster.call_timeout)

    async def _leave(self) -> None:
        """The last step of closing, once every channel stopped."""
        if self._cluster is not None:
            try:
                await self._cluster.transport.leave(self._rt.address)
            except Exception as exc:
                log.warning("could not leave the cluster's transport: %r", exc)

    # -- operations on what does not run here ---------------------------------------------

    def _routed(self, ident: Ident, kind: str = "channel") -> Cluster | None:
        """The cluster to ask about the channel (or actor) `ident`, or None when this node
        answers alone."""
        if self._cluster is None or serving.get() == (kind, ident):
            return None
        return self._cluster

    def _checked(self, channel: Any, name: Any = "") -> ChannelConf:
        """The channel's type, once the call on a channel not running here is found sound:
        raises the first thing wrong with it (as a lone node would)."""
        self._rt.check_running()
        conf = self._rt.channel_conf_of(channel)
        if not isinstance(name, str):
            raise InvalidName(f"command name must be a str, not {name!r}")
        return conf

    async def _command_elsewhere(
        self,
        channel: Any,
        name: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        why: ChannelNotHere | None = None,
    ) -> None:
        conf = self._checked(channel, name)
        cluster = self._routed(channel)
        if cluster is None:
            raise why or _not_here(channel)
        got = await cluster.at_owner("command", channel, conf, name=name, args=args, kwargs=kwargs)
        if got is LOCAL:
            return await self.command(channel, name, *args, **kwargs)
        if got is ABSENT:
            raise _nowhere(channel)

    async def _read_elsewhere(
        self,
        actor: Any,
        name: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        why: WesError | None = None,
    ) -> Any:
        self._rt.check_running()
        conf = self._rt.actor_conf_of(check_id(actor, "actor"))
        if not isinstance(name, str):
            raise InvalidName(f"read name must be a str, not {name!r}")
        cluster = self._routed(actor, "actor")
        if cluster is None:
            # Raised where it is made: an exception kept in a local of the frame its
            # traceback holds is a reference cycle, garbage for the collector at every miss.
            raise why or ActorNotHere(actor, f"actor {actor!r} is in no channel on this node")
        got = await cluster.read(actor, conf, name, args, kwargs)
        if got is LOCAL:
            return await self.read(actor, name, *args, **kwargs)
        return got

    async def _status_elsewhere(self, channel: Ident) -> ChannelRef | None:
        cluster = self._routed(channel)
        if cluster is None:
            return None
        got = await cluster.at_owner("status", channel, self._rt.channel_conf_of(channel))
        if got is LOCAL:
            return await self.status(channel)
        return None if got is ABSENT else cluster.ref(got)

    async def _elsewhere(self, op: str, channel: Any, specs: Any = None) -> None:
        """`stop_channel`, `create_actor` or `ensure_actor` of a channel not running here."""
        conf = self._checked(channel)
        cluster = self._routed(channel)
        if cluster is None:
            raise _not_here(channel)
        fields = {} if specs is None else {"specs": specs}
        got = await cluster.at_owner(op, channel, conf, **fields)
        if got is LOCAL:
            again = getattr(self, op)
            await (again(channel) if specs is None else again(channel, specs))
        elif got is ABSENT:
            raise _nowhere(channel)


def _not_here(channel: Ident) -> ChannelNotHere:
    return ChannelNotHere(channel, f"channel {channel!r} is not running on this node")


def _nowhere(channel: Ident) -> ChannelNotHere:
    return ChannelNotHere(channel, f"channel {channel!r} is not running on any node")
