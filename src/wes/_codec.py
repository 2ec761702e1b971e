"""The default codec: compact UTF-8 JSON, written by orjson where it is installed.

orjson encodes a small state ~8x faster than the standard library (saves encode a state per
actor), but it is not a drop-in: it writes NaN and infinities as `null`, refuses integers
beyond 64 bits and non-string keys, and reads integers beyond 64 bits as floats. So where it
would write or read anything differently, the standard library does the work instead, and
every state reads back exactly as the standard library's JSON would have it.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from itertools import repeat
from typing import Any

from ._abc import Codec

try:
    import orjson
except ImportError:  # PyPy, or a platform without a wheel: the standard library does it all
    orjson = None  # type: ignore[assignment]  # tested as `orjson is None` below

_Encode = Callable[[Any], bytes]
_Decode = Callable[[bytes], Any]
EncodeAll = Callable[[list[dict[str, Any]]], tuple[list[bytes], dict[int, Exception]]]
"""Encodes many states at once: their bytes, in order, and the error of each state that could
not be encoded by its index (its bytes then empty); see `encoder_of_all`."""

# Integer literals orjson reads exactly fit in 64 bits (signed or not), so have at most 20
# digits, and any that does not has 19 or more: data with a run of 19 digits anywhere (also
# inside a string or a float: harmless) goes to the standard library, which reads every
# integer exactly. Digits become zeros, then one search finds a run (a regex is ~10x slower).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_RUN = b"0" * 19
_translate = bytes.translate
_find = bytes.find  # `b in data` would first try `b` as an integer, which costs more
# orjson refuses what the standard library refuses (dataclasses, datetimes) rather than
# write them as objects and strings that would load as something else, and hands subclasses
# of str, int, float, dict and list to it, which encodes them as it always did.
# orjson writes into a buffer of 1 KiB (grown as needed) that it shrinks in place when done:
# each state it returns keeps its buffer's whole allocation, the remainder unusable for the
# next. A sweep holds thousands of states until their write ends, so each one took fresh
# memory (a page fault every few states, ~2 us a state) and the heap grew ~1 KiB a state.
# A copy of up to `_COMPACT` bytes (~0.15 us) is allocated to its size, and the buffer reused.
_COMPACT = 8192
_tobytes = memoryview.tobytes
_view: Callable[[bytes], memoryview] = memoryview
_OPTION = 0
if orjson is not None:
    _OPTION = (
        orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )


_NONES = repeat(None)  # endless: `map` stops at the end of its shortest argument
_OPTIONS = repeat(_OPTION)


def encoder_of_all(codec: Codec) -> EncodeAll:
    """How to encode many states with `codec` at once: its own way if it offers one
    (`_wes_encode_all()`, as the built-in `JsonCodec`), else its `encode` for a copy of
    each."""
    offer: Callable[[], EncodeAll | None] | None = getattr(codec, "_wes_encode_all", None)
    own = None if offer is None else offer()
    if own is not None:
        return own
    encode = codec.encode
    # A copy of each: a sweep hands over the actors' own `__dict__`s, which a codec of the
    # user's must not be able to change (as the default `to_state` gives a copy).
    return lambda states: encode_each(encode, list(map(dict.copy, states)))


def encode_each(
    encode: Callable[[dict[str, Any]], bytes], states: list[dict[str, Any]]
) -> tuple[list[bytes], dict[int, Exception]]:
    """`EncodeAll` by `encode`, one state at a time."""
    out: list[bytes] = []
    errors: dict[int, Exception] = {}
    for i, state in enumerate(states):
        try:
            out.append(encode(state))
        except Exception as exc:
            errors[i] = exc
            out.append(b"")
    return out, errors


def _std_encoder() -> _Encode:
    """The standard library's compact UTF-8 encoder, its C iterator built once (json builds
    a new one per call)."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator
        return lambda state: encoder.encode(state).encode()
    iterate = make(
        None,
        encoder.default,
        json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan, as json.dumps
    )
    return lambda state: "".join(iterate(state, 0)).encode()


def _orjson_decoder(fallback: _Decode) -> _Decode:
    """orjson, handing to `fallback` what it refuses (NaN, huge floats, lone surrogates) and
    what may hold an integer it would read as a float."""
    loads = orjson.loads
    error = orjson.JSONDecodeError
    translate, find, digits, run = _translate, _find, _DIGITS_TO_ZERO, _RUN

    def decode(data: bytes) -> Any:
        if find(translate(data, digits), run) >= 0:
            return fallback(data)
        try:
            return loads(data)
        except error:
            return fallback(data)

    return decode


# The cluster's wire (`_wire`) writes and reads its JSON the same way.
ORJSON_OPTION = _OPTION
orjson_decoder = _orjson_decoder


class JsonCodec(Codec):
    """Encodes states as compact UTF-8 JSON objects.

    Whether orjson is installed changes only the speed: the bytes written by either way read
    back the same, and a state is accepted or refused alike, except that orjson also writes
    plain `enum.Enum` members (as their values) and `uuid.UUID`s (as strings).
    """

    def __init__(self) -> None:
        self._std_encode = _std_encoder()
        self._dumps: Callable[[Any, None, int], bytes] | None = None
        self._decode: _Decode = json.loads
        if orjson is not None:
            self._dumps = orjson.dumps
            self._decode = _orjson_decoder(json.loads)

    def encode(self, state: dict[str, Any]) -> bytes:
        """Encode `state`; raises `TypeError` or `ValueError` for what JSON cannot hold."""
        dumps = self._dumps  # inline, not a function of its own: a save encodes every actor
        if dumps is not None and type(state) is dict:
            try:
                data = dumps(state, None, _OPTION)
            except TypeError:  # orjson.JSONEncodeError: big ints, non-string keys, subclasses
                pass
            else:
                if _find(data, b"null") < 0:  # else None, or a NaN or infinity written as null
                    return _tobytes(memoryview(data)) if len(data) <= _COMPACT else data
        if type(state) is not dict and not isinstance(state, dict):
            raise TypeError(f"a state must be a dict, not {type(state).__name__}")
        return self._std_encode(state)

    def _wes_encode_all(self) -> EncodeAll | None:
        """The save sweep's way in (`encoder_of_all`); not for a subclass that changes
        `encode`."""
        return self._encode_all if type(self).encode is JsonCodec.encode else None

    def _encode_all(self, states: list[dict[str, Any]]) -> tuple[list[bytes], dict[int, Exception]]:
        """`encode` of each of `states` (plain dicts), as a save sweep encodes a slice of its
        channels (`EncodeAll`). The same bytes and errors, for less than half the cost a
        state: orjson's calls, the search for `null` and the copies are each one pass in C
        over all states, with no Python frame per state. Anything orjson refuses or would
        write differently sends the states, one at a time, to `encode`."""
        dumps = self._dumps
        if dumps is not None:
            try:
                out = list(map(dumps, states, _NONES, _OPTIONS))
            except TypeError:
                pass
            else:
                # One search over all: `bytes.find` parses its arguments the slow way, which
                # costs more than the copy of a small state. No match can span two states,
                # each a JSON object.
                if _find(b"".join(out), b"null") < 0:
                    # Every state copied to its size (see `_COMPACT`): a larger one's copy
                    # costs a memcpy more, but the check would cost every state a call.
                    return list(map(_tobytes, map(_view, out))), {}
                return self._redo_nulls(states, out)
        return encode_each(self.encode, states)

    def _redo_nulls(
        self, states: list[dict[str, Any]], out: list[bytes]
    ) -> tuple[list[bytes], dict[int, Exception]]:
        """`_encode_all` where some of orjson's outputs `out` hold a `null`: those states are
        encoded by the standard library, as `encode` does (None, or a NaN or infinity)."""
        std = self._std_encode
        datas: list[bytes] = []
        errors: dict[int, Exception] = {}
        for i, data in enumerate(out):
            if _find(data, b"null") < 0:
                datas.append(_tobytes(_view(data)))
                continue
            try:
                datas.append(std(states[i]))
            except Exception as exc:  # none known (orjson wrote it), but its own error
                errors[i] = exc
                datas.append(b"")
        return datas, errors

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode JSON bytes into a dict; raises `ValueError` for anything else."""
        state = self._decode(data)
        if not isinstance(state, dict):
            raise ValueError(f"stored state is a JSON {type(state).__name__}, not an object")
        return state
