"""The errors of wes. Every error wes raises derives from `WesError`; an actor's own exception
reaches the caller unchanged and is never wrapped.

    WesError
    ├── UsageError                  you asked for something wrong
    │   ├── InvalidId               an id that is not a (str, str | int) tuple
    │   ├── InvalidName             a bad command or read name, or one that clashes with Actor
    │   ├── InvalidArguments        arguments that do not bind to a handler's signature
    │   ├── InvalidSpec             a spec of the wrong shape
    │   ├── InvalidConfig           a bad channel_type / actor_type setting
    │   ├── UnknownChannelType
    │   ├── UnknownActorType
    │   └── NodeNotRunning          an operation outside `async with node`
    ├── ChannelAlreadyStarted
    ├── ChannelNotStarted
    ├── ActorAlreadyExists          `create` of an actor the store holds
    ├── ActorNotFound               `load` of an actor the store does not hold
    ├── ActorAlreadyLocked          the actor is active in another channel
    ├── ActorAlreadyInChannel
    ├── ActorNotActive              a read of an actor that is in no channel
    ├── UnknownCommand
    ├── UnknownRead
    ├── ReentrantCall               a handler awaited an operation on its own channel
    ├── StateNotLoadable            a stored state that cannot be decoded or migrated
    ├── StateNotEncodable           a state the codec cannot encode
    ├── StaleToken                  a store refused a write with an older fencing token
    ├── LeaseLost                   the channel lost its lease and stopped unsaved
    ├── StoreUnavailable            something outside broke: the store
    ├── RegistryUnavailable         something outside broke: the registry
    ├── NodeUnreachable             a cluster call certainly did not run: no node answered
    ├── OutcomeUnknown              a cluster call was sent and no answer came: it may have run
    └── RemoteError                 an actor's exception on another node, of a type not rebuilt here
"""

from __future__ import annotations


class WesError(Exception):
    """Root of every error that wes itself raises."""


class UsageError(WesError):
    """The caller asked for something that can never work as asked."""


class InvalidId(UsageError, TypeError):
    """An id is not a `(type: str, name: str | int)` tuple."""


class InvalidName(UsageError, TypeError):
    """A command or read name is not a `str`, or a handler or attribute name would replace a
    member of `wes.Actor`."""


class InvalidArguments(UsageError, TypeError):
    """A command's or read's arguments do not bind to a handler's signature; no actor ran and
    the channel runs on unchanged."""


class InvalidSpec(UsageError, TypeError):
    """A spec is not what `wes.create`, `wes.load` or `wes.load_or_create` build."""


class InvalidConfig(UsageError, ValueError):
    """A `channel_type` or `actor_type` setting is out of range or of the wrong kind."""


class UnknownChannelType(UsageError):
    """The channel type was never registered with `Node.channel_type`."""


class UnknownActorType(UsageError):
    """The actor type was never registered with `Node.actor_type`."""


class NodeNotRunning(UsageError):
    """An operation was called on a node outside its `async with` block."""


class ChannelAlreadyStarted(WesError):
    """`create_channel` of a channel that already runs (here or elsewhere)."""


class ChannelNotStarted(WesError):
    """The channel does not run on this node."""


class ActorAlreadyExists(WesError):
    """`wes.create` of an actor whose state the store already holds."""


class ActorNotFound(WesError):
    """`wes.load` of an actor whose state the store does not hold."""


class ActorAlreadyLocked(WesError):
    """The actor is active in another channel."""


class ActorAlreadyInChannel(WesError):
    """`create_actor` of an actor that is already in that channel."""


class ActorNotActive(WesError):
    """A read of an actor that is in no channel."""


class UnknownCommand(WesError):
    """No actor of the (non-empty) channel handles the command; nothing changed."""


class UnknownRead(WesError):
    """The actor has no read handler of that name."""


class ReentrantCall(WesError):
    """A handler awaited an operation on its own channel, which would wait for itself forever."""


class StateNotLoadable(WesError):
    """A stored state cannot be decoded or migrated; nothing started, the stored bytes are
    untouched. The cause is chained."""


class StateNotEncodable(WesError):
    """The codec cannot encode an actor's state; the error names the actor, which is also
    its `actor` attribute."""

    def __init__(self, message: str, actor: tuple[str, str | int] | None = None) -> None:
        super().__init__(message)
        self.actor = actor


class StaleToken(WesError):
    """A store refused a write whose fencing token is older than the stored one; nothing changed."""


class LeaseLost(WesError):
    """The channel lost its lease (it could not renew in time) and stopped without saving."""


class StoreUnavailable(WesError):
    """The store cannot be reached or failed; the cause is chained."""


class RegistryUnavailable(WesError):
    """The registry cannot be reached or failed; the cause is chained."""


class NodeUnreachable(WesError):
    """A cluster call certainly did not run: no node answered for the owner, or the transport
    is down. The caller already retried within `call_timeout`."""


class OutcomeUnknown(WesError):
    """A cluster call was sent and no answer came (it timed out or the connection broke): it
    may or may not have run. Commands run at most once, so it is never retried by wes."""


class RemoteError(WesError):
    """An actor's exception on another node, of a type this node does not rebuild (neither a
    builtin nor registered with `Node.error_type`). The remote traceback is a note."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message


class NotHere(Exception):
    """Mixin of the errors that mean "not on this node, and nothing ran": `ident` is the
    channel or actor asked for. A node serving a remote call answers them as a refusal, so
    the caller looks the owner up again; a local caller sees the public base class."""

    ident: tuple[str, str | int]

    def __reduce__(self) -> tuple[type[BaseException], tuple[object, ...]]:
        return type(self).__mro__[2], self.args  # pickled as the public class


class ChannelNotHere(NotHere, ChannelNotStarted):
    """The channel does not run here (or lost its lease), and nothing ran."""

    def __init__(self, ident: tuple[str, str | int], message: str) -> None:
        super().__init__(message)
        self.ident = ident


class ActorNotHere(NotHere, ActorNotActive):
    """The actor is in no channel here (or its channel lost its lease), and nothing ran."""

    def __init__(self, ident: tuple[str, str | int], message: str) -> None:
        super().__init__(message)
        self.ident = ident


# Users see these under their public names: in tracebacks, logs and stats keys (a channel
# killed by one counts as ("stop", "ChannelNotStarted")); pickled, they are the public class.
for _here, _public in ((ChannelNotHere, ChannelNotStarted), (ActorNotHere, ActorNotActive)):
    _here.__name__ = _here.__qualname__ = _public.__name__
