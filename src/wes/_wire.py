"""The wire: the versioned JSON envelope of calls between the nodes of a cluster.

A request is one JSON object:

    {"wes": 1, "op": "command", "to": ["session", "s1"], "name": "incr", "args": [2],
     "kwargs": {}, "specs": [], "rid": "...", "deadline": 1764633600.25,
     "chain": [["session", "s0"]]}

`to` is the channel (the actor for `read`); `deadline` is the caller's wall clock by which
the answer is no use any more (a request that arrives later is dropped unexecuted);
`chain` holds the channels whose turn the call path holds, for `ReentrantCall` across
nodes. An answer is `{"wes": 1, "ok": VALUE}`, `{"wes": 1, "refused": REASON, "message":
...}` (nothing ran; the caller may retry) or `{"wes": 1, "error": {...}}` (`_travel`).

Nothing received is evaluated: JSON is parsed, checked field by field, and ids, names and
specs are rebuilt only from JSON values of the right shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, NoReturn

from ._abc import Ident
from ._codec import ORJSON_OPTION, orjson_decoder
from ._errors import InvalidArguments, InvalidId, InvalidName, InvalidSpec, UsageError, WesError
from ._specs import Spec, check_id

VERSION = 1
OPS = frozenset(
    {
        "command",
        "read",
        "status",
        "stop_channel",
        "create_actor",
        "ensure_actor",
        "create_channel",
        "ensure_channel",
    }
)
SPEC_MODES = frozenset({"create", "load", "load_or_create"})
Refusal = Literal["not_here", "overloaded", "expired", "stopping"]
REFUSALS = frozenset({"not_here", "overloaded", "expired", "stopping"})

try:
    import orjson
except ImportError:  # as in `_codec`: the standard library does it all then
    orjson = None  # type: ignore[assignment]

_NUMBER = (int, float)
_std_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_std_decoder = json.JSONDecoder(parse_constant=_no_constant)


def _std_encode(value: Any) -> bytes:
    return _std_dumps(value).encode()


def _std_loads(data: bytes) -> Any:
    return _std_decoder.decode(data.decode())


if orjson is None:
    _encode: Callable[[Any], bytes] = _std_encode
    _loads: Callable[[bytes], Any] = _std_loads
else:
    _orjson_dumps = orjson.dumps

    def _encode(value: Any) -> bytes:
        """orjson where it writes what the standard library would (as in `_codec`): not
        where it refuses (big integers, subclasses), nor where it wrote a `null`, which may
        be a NaN or an infinity that JSON cannot carry and the standard library refuses."""
        try:
            data = _orjson_dumps(value, None, ORJSON_OPTION)
        except TypeError:
            return _std_encode(value)
        return data if data.find(b"null") < 0 else _std_encode(value)

    _loads = orjson_decoder(_std_loads)


class BadRequest(Exception):
    """A request that cannot be executed as received; `error` is what the caller gets."""

    def __init__(self, error: WesError) -> None:
        super().__init__(str(error))
        self.error = error


class Request(NamedTuple):
    """A request as received and checked. (A named tuple: one is built per call.)"""

    op: str
    to: Ident
    name: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    specs: list[Spec]
    rid: str
    deadline: float
    chain: tuple[Ident, ...]


# -- requests ------------------------------------------------------------------------------


def encode_request(
    op: str, to: Ident, *, rid: str, deadline: float, max_payload: int, **fields: Any
) -> bytes:
    """The request's bytes (`fields` as `request_body` takes them); `InvalidArguments` if
    JSON cannot carry an argument or the request is over the transport's `max_payload`."""
    return encode_body(request_body(op, to, **fields), rid, deadline, max_payload)


def request_body(
    op: str,
    to: Ident,
    *,
    name: str | None = None,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    specs: list[Spec] | None = None,
    chain: tuple[Ident, ...] = (),
) -> dict[str, Any]:
    """A request's fields but its `rid` and `deadline`, which `encode_body` sets for each
    attempt (a call that is retried is built once)."""
    return {
        "wes": VERSION,
        "op": op,
        "to": to,
        "name": name,
        "args": args,
        "kwargs": kwargs or {},
        "specs": [encode_spec(spec) for spec in specs] if specs else [],
        "rid": "",
        "deadline": 0.0,
        "chain": chain,
    }


def encode_body(body: dict[str, Any], rid: str, deadline: float, max_payload: int) -> bytes:
    """The bytes of `request_body`'s `body` sent as `rid` with `deadline` (see
    `encode_request`)."""
    body["rid"] = rid
    body["deadline"] = deadline
    try:
        data = _encode(body)
    except (TypeError, ValueError) as exc:
        what = _what(body["op"], body["name"], body["to"])
        raise InvalidArguments(
            f"{what}: an argument cannot travel as JSON to another node: {exc}"
        ) from None
    if len(data) > max_payload:
        raise InvalidArguments(
            f"{_what(body['op'], body['name'], body['to'])}: the request is {len(data)} bytes,"
            f" over the transport's limit of {max_payload}"
        )
    return data


def _what(op: str, name: str | None, to: Ident) -> str:
    """The call, for an error message (built only when one is raised)."""
    return f"{op} {name!r} of {to!r}" if name is not None else f"{op} of {to!r}"


def encode_spec(spec: Spec) -> dict[str, Any]:
    return {"actor": spec.actor, "mode": spec.mode, "args": spec.args}


def decode_request(data: bytes) -> Request:
    """The checked request; `BadRequest` naming the first thing wrong with it.

    (Parsed JSON holds exact `dict`, `list`, `str`, `int` and `float`, so the checks test
    types with `is`: this runs for every call a node serves.)"""
    body = _parse(data)
    if type(body) is not dict:
        raise BadRequest(UsageError("a request must be a JSON object"))
    get = body.get
    version = get("wes")
    if version != VERSION:
        raise BadRequest(UsageError(f"wire version {version!r} is not spoken here ({VERSION})"))
    op = get("op")
    if type(op) is not str or op not in OPS:  # a list or object is unhashable
        raise BadRequest(UsageError(f"unknown operation {op!r}"))
    to = get("to")
    if type(to) is list and len(to) == 2 and type(to[0]) is str and type(to[1]) in _NAMES:
        to = (to[0], to[1])
    else:
        to = _ident(to, "actor" if op == "read" else "channel")  # raises, naming the fault
    name = get("name")
    if type(name) is not str:
        if op in ("command", "read"):
            raise BadRequest(InvalidName(f"{op} name must be a str, not {name!r}"))
        name = None
    args = get("args", _EMPTY)
    kwargs = get("kwargs", _NO_KWARGS)
    if type(args) is not list:
        raise BadRequest(InvalidArguments(f"args must be a list, not {args!r}"))
    if type(kwargs) is not dict:
        raise BadRequest(InvalidArguments(f"kwargs must be an object, not {kwargs!r}"))
    rid = get("rid")
    deadline = get("deadline")
    if type(rid) is not str:
        raise BadRequest(UsageError(f"rid must be a str, not {rid!r}"))
    if type(deadline) is not float and type(deadline) is not int:
        raise BadRequest(UsageError(f"deadline must be a number, not {deadline!r}"))
    chain = get("chain", _EMPTY)
    if type(chain) is not list:
        raise BadRequest(UsageError(f"chain must be a list, not {chain!r}"))
    specs = get("specs", _EMPTY)
    # `tuple.__new__` builds the named tuple without its Python-level `__new__`.
    return _new_request(
        Request,
        (
            op,
            to,
            name,
            args,
            kwargs,
            [] if type(specs) is list and not specs else _specs(specs),
            rid,
            float(deadline),
            tuple([_ident(item, "channel") for item in chain]) if chain else (),
        ),
    )


_NAMES = (str, int)  # the types of an id's name (not bool: `type(True) is bool`)
_EMPTY: list[Any] = []  # read only: the default of an absent list field
_NO_KWARGS: dict[str, Any] = {}
_new_request = tuple.__new__


def _parse(data: bytes) -> Any:
    try:
        return _loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(UsageError(f"a request must be JSON: {exc}")) from None


def _ident(value: Any, what: str) -> Ident:
    if isinstance(value, list):
        value = tuple(value)
    try:
        return check_id(value, what)
    except InvalidId as exc:
        raise BadRequest(exc) from None


def _specs(value: Any) -> list[Spec]:
    if not isinstance(value, list):
        raise BadRequest(InvalidSpec(f"specs must be a list, not {value!r}"))
    out = []
    for item in value:
        mode = item.get("mode") if isinstance(item, dict) else None
        if not isinstance(mode, str) or mode not in SPEC_MODES:
            raise BadRequest(InvalidSpec(f"not a spec: {item!r}"))
        args = item.get("args", [])
        if not isinstance(args, list):
            raise BadRequest(InvalidSpec(f"spec args must be a list, not {args!r}"))
        out.append(Spec(_ident(item.get("actor"), "actor"), item["mode"], tuple(args)))
    return out


# -- answers -------------------------------------------------------------------------------

OK_NONE = _encode({"wes": VERSION, "ok": None})


class Unsendable(Exception):
    """A value that cannot travel as an answer; the message says why."""


def encode_ok(value: Any, max_payload: int) -> bytes:
    """The answer carrying `value`; `Unsendable` if JSON cannot carry it or it is over
    `max_payload` (the caller then gets an error answer, not a timeout)."""
    if value is None:
        return OK_NONE
    try:
        data = _encode({"wes": VERSION, "ok": value})
    except (TypeError, ValueError) as exc:
        raise Unsendable(f"JSON cannot carry the answer to another node: {exc}") from None
    if len(data) > max_payload:
        raise Unsendable(
            f"the answer is {len(data)} bytes, over the transport's limit of {max_payload}"
        )
    return data


def encode_unsendable(what: str, why: Unsendable, max_payload: int) -> bytes:
    """The error answer for an answer to `what` that could not be sent."""
    error = {"kind": "wes", "type": "UsageError", "message": f"{what}: {why}"}
    return encode_error_body(error, max_payload)


def encode_refusal(reason: Refusal, message: str) -> bytes:
    return _encode({"wes": VERSION, "refused": reason, "message": message})


def encode_error_body(error: dict[str, Any], max_payload: int | None = None) -> bytes:
    """The error answer; one over `max_payload` is cut to fit, since a transport refuses to
    send it and its caller would wait for an answer that never comes."""
    try:
        data = _encode({"wes": VERSION, "error": error})
    except (TypeError, ValueError):  # args JSON cannot carry: travel without them
        error = {**error, "args": None}
        data = _encode({"wes": VERSION, "error": error})
    if max_payload is not None and len(data) > max_payload:
        return _fitted(error, max_payload)
    return data


CUT = " [cut to fit the transport's payload limit]"


def _fitted(error: dict[str, Any], max_payload: int) -> bytes:
    """`error` without its traceback; if still too large, also without its args (the caller
    then rebuilds `RemoteError` or the wes base) and with its message halved until it fits."""
    error = {**error, "traceback": "(cut: the answer was over the transport's payload limit)"}
    data = _encode({"wes": VERSION, "error": error})
    message = str(error.get("message", ""))
    while len(data) > max_payload and message:
        message = message[: len(message) // 2]
        error = {**error, "args": None, "message": message + CUT}
        data = _encode({"wes": VERSION, "error": error})
    return data


class Answer(NamedTuple):
    """An answer as received: exactly one of `ok` (with `value`), `refused` or `error`."""

    ok: bool
    value: Any = None
    refused: Refusal | None = None
    message: str = ""
    error: dict[str, Any] | None = None


def decode_answer(data: bytes) -> Answer:
    """The answer; `UsageError` if the bytes are not an answer of this version."""
    try:
        body = _loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"an answer from another node is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("wes") != VERSION:
        raise UsageError(f"an answer from another node is not a wes v{VERSION} answer")
    if "ok" in body:
        return Answer(True, body["ok"])
    refused = body.get("refused")
    if isinstance(refused, str) and refused in REFUSALS:
        reason: Refusal = refused  # type: ignore[assignment]  # one of REFUSALS, checked
        return Answer(False, refused=reason, message=str(body.get("message", "")))
    error = body.get("error")
    if isinstance(error, dict):
        return Answer(False, error=error)
    raise UsageError(f"an answer from another node has no result: {body!r}")


# -- values --------------------------------------------------------------------------------


def encode_ref(ident: Ident, owner: str, actors: tuple[Ident, ...]) -> dict[str, Any]:
    return {"id": ident, "owner": owner, "actors": actors}


def decode_ref_fields(value: Any) -> tuple[Ident, str, tuple[Ident, ...]]:
    """The fields of a `ChannelRef` from an answer; `UsageError` if malformed."""
    try:
        ident = check_id(tuple(value["id"]), "channel")
        owner = value["owner"]
        actors = tuple(check_id(tuple(a), "actor") for a in value["actors"])
    except (KeyError, TypeError, InvalidId) as exc:
        raise UsageError(f"a channel reference from another node is malformed: {exc}") from None
    if not isinstance(owner, str):
        raise UsageError(f"a channel reference's owner must be a str, not {owner!r}")
    return ident, owner, actors
