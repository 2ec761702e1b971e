"""Building actors from specs: create them, or load and migrate their stored states."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._abc import Claim, Codec, Ident, Record, Store
from ._actor import Actor
from ._errors import (
    ActorAlreadyExists,
    ActorNotFound,
    StateNotLoadable,
    StoreUnavailable,
    WesError,
)
from ._specs import Spec
from ._types import ActorConf

if TYPE_CHECKING:
    from ._types import Services


async def build_actors(
    runtime: Services, specs: list[Spec], claims: dict[Ident, Claim]
) -> list[Actor]:
    """The actors of `specs`, each holding its claim (by actor id; a claim is named by the
    actor's storage key); raises the first spec error."""
    confs = [runtime.actor_conf(spec.actor[0]) for spec in specs]
    keys = [str(claims[spec.actor].ident[1]) for spec in specs]
    records = await _read(confs, keys)
    actors = []
    for spec, conf, key in zip(specs, confs, keys, strict=True):
        actor = _build(runtime, spec, conf, key, records.get(key))
        actor._wes_claim = claims[spec.actor]
        actors.append(actor)
    return actors


async def _read(confs: list[ActorConf], keys: list[str]) -> dict[str, Record]:
    by_store: dict[Store, list[str]] = {}
    for conf, key in zip(confs, keys, strict=True):
        by_store.setdefault(conf.store, []).append(key)
    records: dict[str, Record] = {}
    for store, store_keys in by_store.items():
        try:
            records.update(await store.read(store_keys))
        except WesError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"store read failed: {exc!r}") from exc
    return records


def _build(
    runtime: Services, spec: Spec, conf: ActorConf, key: str, record: Record | None
) -> Actor:
    if record is None:
        if spec.mode == "load":
            raise ActorNotFound(f"actor {spec.actor!r} is not in the store (key {key!r})")
        return _create(conf.cls, spec)
    if spec.mode == "create":
        raise ActorAlreadyExists(f"actor {spec.actor!r} is already in the store (key {key!r})")
    actor = decode(runtime.codec, conf, key, record)
    _init_slots(actor, spec.actor, dirty=False)
    return actor


def _create(cls: type[Actor], spec: Spec) -> Actor:
    actor = cls.__new__(cls)
    _init_slots(actor, spec.actor, dirty=True)  # so that `self.id` works in __init__
    cls.__init__(actor, *spec.args)
    return actor


def _init_slots(actor: Actor, ident: Ident, *, dirty: bool) -> None:
    actor._wes_id = ident
    actor._wes_ch = None
    actor._wes_dirty = dirty


async def read_stored(codec: Codec, conf: ActorConf, ident: Ident) -> Actor | None:
    """The actor `ident` as its store holds it, decoded and migrated but not activated (no
    claim, no channel, no hooks), or `None` if the store does not hold it."""
    key = conf.key(ident[1])
    record = (await _read([conf], [key])).get(key)
    if record is None:
        return None
    actor = decode(codec, conf, key, record)
    _init_slots(actor, ident, dirty=False)
    return actor


def decode(codec: Codec, conf: ActorConf, key: str, record: Record) -> Actor:
    """Decode and migrate a stored record; any failure is `StateNotLoadable` naming `key`."""
    cls = conf.cls
    try:
        state: Any = codec.decode(record.data)
        if record.version > cls.version:
            raise ValueError(
                f"stored version {record.version} is newer than {cls.__qualname__}.version "
                f"{cls.version}"
            )
        if record.version < cls.version:
            state = cls.migrate(state, record.version)
            if not isinstance(state, dict):
                raise TypeError(f"migrate() returned {type(state).__name__}, not a dict")
        actor = cls.from_state(state)
        if not isinstance(actor, cls):
            raise TypeError(f"from_state() returned {actor!r}, not a {cls.__qualname__}")
    except Exception as exc:
        raise StateNotLoadable(
            f"stored state at key {key!r} (version {record.version}) cannot be loaded as "
            f"{cls.__qualname__}: {exc!r}"
        ) from exc
    return actor
