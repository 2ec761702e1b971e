"""Interfaces for the pluggable building blocks of wes: registries, stores, stats, codecs
and transports.

Implement one by subclassing; every abstract method must be provided.
"""

from ._abc import AsyncResource as AsyncResource
from ._abc import Claim as Claim
from ._abc import ClaimKind as ClaimKind
from ._abc import Codec as Codec
from ._abc import Ident as Ident
from ._abc import NameTaken as NameTaken
from ._abc import OnAnnounce as OnAnnounce
from ._abc import OnRequest as OnRequest
from ._abc import Record as Record
from ._abc import Registry as Registry
from ._abc import Reply as Reply
from ._abc import Stats as Stats
from ._abc import Store as Store
from ._abc import Transport as Transport
from ._abc import Write as Write

__all__ = [
    "AsyncResource",
    "Claim",
    "ClaimKind",
    "Codec",
    "Ident",
    "NameTaken",
    "OnAnnounce",
    "OnRequest",
    "Record",
    "Registry",
    "Reply",
    "Stats",
    "Store",
    "Transport",
    "Write",
]
