"""How errors travel between nodes: as JSON, rebuilt from fixed tables, never evaluated.

A `WesError` arrives as its own class with its message. An actor's exception of a builtin
type, or of a class the calling node registered with `Node.error_type`, arrives as that
class, rebuilt from its JSON args; any other as `RemoteError` (qualified type name and
message). Every rebuilt exception carries the remote traceback as a note.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Any

from . import _errors
from ._errors import NotHere, RemoteError, WesError


def _wes_errors() -> dict[str, type[WesError]]:
    table: dict[str, type[WesError]] = {}
    for name in dir(_errors):
        cls = getattr(_errors, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, WesError)
            and not issubclass(cls, NotHere)
            and not name.startswith("_")
        ):
            table[name] = cls
    return table


WES_ERRORS = _wes_errors()


def qualified_name(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """`exc` as the JSON object of an error answer."""
    tb = "".join(traceback.format_exception(exc))
    if isinstance(exc, RemoteError):  # passing through: keep the original's identity
        return {"kind": "remote", "type": exc.type_name, "message": exc.message, "traceback": tb}
    cls: type[BaseException] = type(exc)
    ours = WES_ERRORS.get(cls.__name__) is cls or isinstance(exc, NotHere)
    if isinstance(exc, WesError) and ours:
        return {"kind": "wes", "type": _wes_base(cls), "message": str(exc), "traceback": tb}
    out = {
        "kind": "exception",
        "type": qualified_name(cls),
        "args": list(exc.args),
        "message": str(exc),
        "traceback": tb,
    }
    if isinstance(exc, WesError):  # a user's subclass: the caller falls back to wes's base
        out["base"] = _wes_base(cls)
    return out


def _wes_base(cls: type[BaseException]) -> str:
    for base in cls.__mro__:  # a NotHere travels as its public base
        if WES_ERRORS.get(base.__name__) is base:
            return base.__name__
    return "WesError"


def error_from_wire(
    error: dict[str, Any], registered: dict[str, type[BaseException]], address: str
) -> BaseException:
    """The exception an error answer from the node at `address` stands for."""
    kind = error.get("kind")
    type_name = str(error.get("type", "?"))
    message = str(error.get("message", ""))
    rebuilt: BaseException | None = None
    if kind == "wes" and type_name in WES_ERRORS:
        rebuilt = _build(WES_ERRORS[type_name], [message])
    elif kind == "exception":
        cls = registered.get(type_name) or _builtin(type_name)
        args = error.get("args")
        if cls is not None and isinstance(args, list):
            rebuilt = _build(cls, args)
        base = WES_ERRORS.get(str(error.get("base")))
        if rebuilt is None and base is not None:
            rebuilt = _build(base, [message])
    if rebuilt is None:
        rebuilt = RemoteError(type_name, message)
    tb = error.get("traceback")
    if isinstance(tb, str) and tb:
        rebuilt.add_note(f"remote traceback, from node {address}:\n{tb.rstrip()}")
    return rebuilt


def _builtin(type_name: str) -> type[BaseException] | None:
    module, _, name = type_name.rpartition(".")
    if module != "builtins":
        return None
    cls = getattr(builtins, name, None)
    # Only exceptions an actor may raise: never SystemExit, KeyboardInterrupt and the like.
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


def _build(cls: type[BaseException], args: list[Any]) -> BaseException | None:
    try:
        return cls(*args)
    except Exception:  # a class whose constructor takes other arguments than its args
        return None
