"""Actor specs: how a channel gets its actors (`create`, `load`, `load_or_create`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._abc import Ident
from ._errors import InvalidId, InvalidSpec

SpecMode = Literal["create", "load", "load_or_create"]


@dataclass(frozen=True, slots=True)
class Spec:
    """What to put in a channel: an actor, and whether to create it, load it, or either."""

    actor: Ident
    mode: SpecMode
    args: tuple[Any, ...] = ()


def create(actor: Ident, *args: Any) -> Spec:
    """A new actor built with `cls(*args)`; fails with `ActorAlreadyExists` if stored."""
    return Spec(check_id(actor, "actor"), "create", args)


def load(actor: Ident) -> Spec:
    """The stored actor; fails with `ActorNotFound` if the store does not hold it."""
    return Spec(check_id(actor, "actor"), "load")


def load_or_create(actor: Ident, *args: Any) -> Spec:
    """The stored actor if there is one, else a new one built with `cls(*args)`."""
    return Spec(check_id(actor, "actor"), "load_or_create", args)


def check_id(ident: Any, what: str) -> Ident:
    """Return `ident` if it is a `(str, str | int)` tuple, else raise `InvalidId`."""
    if (
        type(ident) is tuple
        and len(ident) == 2
        and type(ident[0]) is str
        and type(ident[1]) in (str, int)
    ):
        return ident
    raise InvalidId(f"{what} id must be a (type: str, name: str | int) tuple, not {ident!r}")


def as_specs(specs: Any) -> list[Spec]:
    """One spec or a sequence of specs, as a list; anything else is `InvalidSpec`."""
    if isinstance(specs, Spec):
        return [specs]
    if isinstance(specs, str | bytes) or not isinstance(specs, Sequence):
        raise InvalidSpec(
            f"specs must be a spec from wes.create/load/load_or_create or a list of them, "
            f"not {specs!r}"
        )
    out = list(specs)
    for i, spec in enumerate(out):
        if not isinstance(spec, Spec):
            raise InvalidSpec(
                f"specs[{i}] is {spec!r}, not a spec from wes.create/load/load_or_create"
            )
    seen: set[Ident] = set()
    for spec in out:
        if spec.actor in seen:
            raise InvalidSpec(f"actor {spec.actor!r} appears twice in the specs")
        seen.add(spec.actor)
    return out
