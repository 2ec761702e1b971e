"""Checking a command's or read's arguments against its handlers before any actor runs.

A command whose arguments cannot bind to a handler must change nothing: raised from inside
the broadcast, the `TypeError` would kill the channel and roll every actor back. So every
handler the command reaches is checked first, from what its signature needs (`Arity`,
computed for every handler when its class is defined).

The channel's one-actor fast path skips the check and lets Python bind the arguments itself:
a call that cannot bind raises before the handler's frame starts, so its traceback ends in
the calling frame (`binding_failed`), which no exception from inside the handler does. That
costs nothing on a call that binds; see `Channel.apply_sync` and `Node.read`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

from ._errors import InvalidArguments, InvalidName


class Actor(Protocol):
    """What the checks read of an actor (`wes.Actor` has it; a protocol keeps this module,
    which `_actor` uses when a class is defined, below it)."""

    @property
    def id(self) -> Any: ...
    @property
    def _wes_command_arity(self) -> dict[str, Arity]: ...
    @property
    def _wes_read_arity(self) -> dict[str, Arity]: ...


_P = inspect.Parameter
_MANY = 1 << 30  # "any number" of positional arguments


class Refused(Exception):
    """Raised by a channel when arguments do not bind (or the name is no str) before any
    actor ran; the node raises `error` without crashing the channel (an actor that raises
    `InvalidArguments` itself still kills it)."""

    def __init__(self, error: InvalidArguments | InvalidName) -> None:
        super().__init__(str(error))
        self.error = error


class Arity:
    """What binding arguments to a handler needs, its `self` left out. A handler whose
    signature Python cannot tell (a builtin) takes anything here; its call decides."""

    __slots__ = (
        "counts",
        "handler",
        "kw_only",
        "least",
        "most",
        "named",
        "positional_only",
        "required_kw",
        "var_kw",
    )

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler
        try:
            params = list(inspect.signature(handler).parameters.values())[1:]  # not `self`
        except (TypeError, ValueError):
            params = [_P("args", _P.VAR_POSITIONAL), _P("kwargs", _P.VAR_KEYWORD)]
        positional = [p for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
        self.least = sum(1 for p in positional if p.default is _P.empty)
        self.most = _MANY if any(p.kind is _P.VAR_POSITIONAL for p in params) else len(positional)
        self.named = [p.name for p in positional]  # in order: a keyword may fill a slot
        self.positional_only = frozenset(p.name for p in params if p.kind is _P.POSITIONAL_ONLY)
        self.kw_only = frozenset(p.name for p in params if p.kind is _P.KEYWORD_ONLY)
        self.required_kw = frozenset(
            p.name for p in params if p.kind is _P.KEYWORD_ONLY and p.default is _P.empty
        )
        self.var_kw = any(p.kind is _P.VAR_KEYWORD for p in params)
        # The numbers of positional arguments that bind without keywords, for a check with
        # no call of its own in the usual case (`check_command`).
        self.counts = range(0) if self.required_kw else range(self.least, self.most + 1)

    def fits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether `handler(actor, *args, **kwargs)` binds."""
        n = len(args)
        if n > self.most:
            return False
        if not kwargs:
            return n in self.counts
        if not self.required_kw <= kwargs.keys():
            return False
        named = self.named
        for key in kwargs:
            if key in self.kw_only:
                continue
            if key in named and key not in self.positional_only:
                if named.index(key) < n:
                    return False  # given twice
            elif not self.var_kw:
                return False
        return all(
            name in kwargs and name not in self.positional_only for name in named[n : self.least]
        )


def arities(*tables: dict[str, Callable[..., Any]]) -> dict[str, Arity]:
    """The `Arity` of every handler of a class's tables, by command or read name."""
    return {name: Arity(handler) for table in tables for name, handler in table.items()}


def check_command(name: str, actors: Sequence[Actor], args: Any, kwargs: Any) -> None:
    """Raise `Refused` if the arguments do not bind to the handler of command `name` of any
    of the actors; run before any of them."""
    n = len(args)
    for actor in actors:
        found = actor._wes_command_arity.get(name)
        if found is not None and (kwargs or n not in found.counts) and not found.fits(args, kwargs):
            raise Refused(invalid("command", name, actor, found.handler, args, kwargs))


def check_read(name: str, actor: Actor, args: Any, kwargs: Any) -> None:
    """Raise `InvalidArguments` if the arguments do not bind to the actor's read `name`."""
    found = actor._wes_read_arity.get(name)
    if found is not None and not found.fits(args, kwargs):
        raise invalid("read", name, actor, found.handler, args, kwargs)


def binding_failed(exc: TypeError) -> bool:
    """Whether `exc`, caught in the frame that called a handler, came from binding the
    arguments (the handler never started) rather than from inside the handler."""
    tb: TracebackType | None = exc.__traceback__
    return tb is not None and tb.tb_next is None


def invalid(
    kind: str,
    name: str,
    actor: Actor,
    handler: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> InvalidArguments:
    """The error for arguments that do not bind, naming the command, the actor type, the
    handler's signature and what did not fit."""
    sig = inspect.signature(handler)
    sig = sig.replace(parameters=list(sig.parameters.values())[1:])
    try:
        sig.bind(*args, **kwargs)
        reason = "they do not bind"
    except TypeError as exc:
        reason = str(exc)
    given = f"{len(args)} positional" + (f" and keywords {sorted(kwargs)}" if kwargs else "")
    qualname = getattr(handler, "__qualname__", repr(handler))
    return InvalidArguments(
        f"{kind} {name!r} of actor type {actor.id[0]!r}: the arguments ({given}) do not fit "
        f"{qualname}{sig}: {reason}; no actor ran and the channel runs on unchanged"
    )
