"""wes: actor-based services on asyncio.

Actors hold isolated state; channels run them serially and apply commands atomically; a
registry makes sure a channel runs in one place; stores persist a channel's actors in one
atomic write. See the README for the model and `wes.Node` for the operations.
"""

from ._actor import Actor as Actor
from ._actor import command as command
from ._actor import read as read
from ._backends.memory import MemoryRegistry as MemoryRegistry
from ._backends.memory import MemoryStore as MemoryStore
from ._backends.memory_transport import MemoryTransport as MemoryTransport
from ._backends.nats import NatsTransport as NatsTransport
from ._backends.postgres import PostgresStore as PostgresStore
from ._backends.redis import RedisStore as RedisStore
from ._backends.redis_registry import RedisRegistry as RedisRegistry
from ._backends.sqlite import SqliteStore as SqliteStore
from ._backends.sqlite_registry import SqliteRegistry as SqliteRegistry
from ._codec import JsonCodec as JsonCodec
from ._errors import ActorAlreadyExists as ActorAlreadyExists
from ._errors import ActorAlreadyInChannel as ActorAlreadyInChannel
from ._errors import ActorAlreadyLocked as ActorAlreadyLocked
from ._errors import ActorNotActive as ActorNotActive
from ._errors import ActorNotFound as ActorNotFound
from ._errors import ChannelAlreadyStarted as ChannelAlreadyStarted
from ._errors import ChannelNotStarted as ChannelNotStarted
from ._errors import InvalidArguments as InvalidArguments
from ._errors import InvalidConfig as InvalidConfig
from ._errors import InvalidId as InvalidId
from ._errors import InvalidName as InvalidName
from ._errors import InvalidSpec as InvalidSpec
from ._errors import LeaseLost as LeaseLost
from ._errors import NodeNotRunning as NodeNotRunning
from ._errors import NodeUnreachable as NodeUnreachable
from ._errors import OutcomeUnknown as OutcomeUnknown
from ._errors import ReentrantCall as ReentrantCall
from ._errors import RegistryUnavailable as RegistryUnavailable
from ._errors import RemoteError as RemoteError
from ._errors import StaleToken as StaleToken
from ._errors import StateNotEncodable as StateNotEncodable
from ._errors import StateNotLoadable as StateNotLoadable
from ._errors import StoreUnavailable as StoreUnavailable
from ._errors import UnknownActorType as UnknownActorType
from ._errors import UnknownChannelType as UnknownChannelType
from ._errors import UnknownCommand as UnknownCommand
from ._errors import UnknownRead as UnknownRead
from ._errors import UsageError as UsageError
from ._errors import WesError as WesError
from ._logging import configure_logging as configure_logging
from ._node import Node as Node
from ._prometheus import PrometheusStats as PrometheusStats
from ._specs import Spec as Spec
from ._specs import create as create
from ._specs import load as load
from ._specs import load_or_create as load_or_create
from ._stats import LoggingStats as LoggingStats
from ._stats import MemoryStats as MemoryStats
from ._stats import MultiStats as MultiStats
from ._types import ChannelRef as ChannelRef

# The optional backends import their drivers only when constructed, so `import wes` needs
# none of them; constructing one without its driver says which extra to install.
__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorAlreadyExists",
    "ActorAlreadyInChannel",
    "ActorAlreadyLocked",
    "ActorNotActive",
    "ActorNotFound",
    "ChannelAlreadyStarted",
    "ChannelNotStarted",
    "ChannelRef",
    "InvalidArguments",
    "InvalidConfig",
    "InvalidId",
    "InvalidName",
    "InvalidSpec",
    "JsonCodec",
    "LeaseLost",
    "LoggingStats",
    "MemoryRegistry",
    "MemoryStats",
    "MemoryStore",
    "MemoryTransport",
    "MultiStats",
    "NatsTransport",
    "Node",
    "NodeNotRunning",
    "NodeUnreachable",
    "OutcomeUnknown",
    "PostgresStore",
    "PrometheusStats",
    "RedisRegistry",
    "RedisStore",
    "ReentrantCall",
    "RegistryUnavailable",
    "RemoteError",
    "Spec",
    "SqliteRegistry",
    "SqliteStore",
    "StaleToken",
    "StateNotEncodable",
    "StateNotLoadable",
    "StoreUnavailable",
    "UnknownActorType",
    "UnknownChannelType",
    "UnknownCommand",
    "UnknownRead",
    "UsageError",
    "WesError",
    "command",
    "configure_logging",
    "create",
    "load",
    "load_or_create",
    "read",
]
