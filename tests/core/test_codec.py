"""The default codec, `JsonCodec`: what it accepts and refuses, and that the bytes it writes
(with orjson or without) read back exactly as the standard library's JSON, which the codec
wrote before orjson, would have them."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections import OrderedDict
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wes
from wes import _codec
from wes.abc import Codec


def old_encode(state: dict[str, Any]) -> bytes:
    """What the codec wrote before orjson: the standard library's compact UTF-8 JSON."""
    return json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and of the same types throughout (1 is not 1.0)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture(params=["orjson", "stdlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> wes.JsonCodec:
    """The codec with orjson, and as built where orjson is not installed."""
    if request.param == "stdlib":
        monkeypatch.setattr(_codec, "orjson", None)
    return wes.JsonCodec()


# Everything the standard library writes: big integers, NaN and infinities, any text (but
# lone surrogates, which UTF-8 cannot hold), and keys of every kind it turns into strings.
text = st.text(st.characters(exclude_categories=["Cs"]))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | text
)
keys = text | st.integers() | st.booleans()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=20,
)
states = st.dictionaries(st.text(), values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(states)
def test_bytes_the_old_codec_wrote_decode_as_before(state: dict[str, Any]) -> None:
    """Every state the codec wrote before orjson decodes exactly as the standard library reads
    those bytes."""
    data = old_encode(state)
    assert same(wes.JsonCodec().decode(data), json.loads(data))


@settings(max_examples=300, deadline=None)
@given(states)
def test_what_the_codec_writes_reads_back_as_the_old_codec_would_have_it(
    state: dict[str, Any],
) -> None:
    """A state written now decodes (by this codec, and by the standard library) to what the
    old codec's bytes decode to: the stored meaning does not change."""
    codec = wes.JsonCodec()
    expected = json.loads(old_encode(state))
    data = codec.encode(state)
    assert same(codec.decode(data), expected)
    assert same(json.loads(data), expected)


@pytest.mark.parametrize(
    "state",
    [
        {"big": 2**64, "small": -(2**63) - 1, "huge": 10**40},
        {"edge": [2**63 - 1, 2**63, 2**64 - 1, -(2**63)]},
        {"keys": {7: "a", 2.5: "b", True: "c", None: "d"}},
        {"pair": (1, 2), "nested": [(3, (4,))]},
        {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "none": None},
        {"text": "héllo ✓ null", "phone": "12345678901234567890"},
        {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
    ],
    ids=["ints beyond 64 bits", "64-bit edges", "non-string keys", "tuples", "nan", "text", "deep"],
)
def test_what_the_old_codec_accepted_reads_back_the_same(
    codec: wes.JsonCodec, state: dict[str, Any]
) -> None:
    """Integers beyond 64 bits, non-string keys (as strings), tuples (as lists), NaN and
    infinities are written, and read back as the old codec's bytes would."""
    expected = json.loads(old_encode(state))
    assert same(codec.decode(codec.encode(state)), expected)


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"level": Level.HIGH}, {"level": 3}),
        ({"name": Name("x")}, {"name": "x"}),
        ({"sub": OrderedDict(a=1)}, {"sub": {"a": 1}}),
    ],
    ids=["int enum", "str subclass", "dict subclass"],
)
def test_subclasses_of_json_types_are_written_as_their_base(
    codec: wes.JsonCodec, state: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Subclasses of int, str and dict are written as the old codec wrote them."""
    assert codec.decode(codec.encode(state)) == expected


def test_a_dict_subclass_is_a_state(codec: wes.JsonCodec) -> None:
    """A state may be a dict subclass, as before."""
    assert codec.decode(codec.encode(OrderedDict(a=1))) == {"a": 1}


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "state",
    [
        {"when": datetime.date(2024, 1, 1)},
        {"point": Point(1)},
        {"data": b"raw"},
        {"tags": {1, 2}},
        {"text": "\ud800"},
        {"object": object()},
    ],
    ids=["date", "dataclass", "bytes", "set", "lone surrogate", "object"],
)
def test_what_the_old_codec_refused_is_refused(codec: wes.JsonCodec, state: dict[str, Any]) -> None:
    """Dates, dataclasses, bytes, sets, lone surrogates and other objects are refused with
    the standard library's own error, as before (not written as something that would load as
    another type)."""
    with pytest.raises((TypeError, ValueError)) as info:
        codec.encode(state)
    with pytest.raises(type(info.value)):
        old_encode(state)


def test_a_state_referring_to_itself_is_refused(codec: wes.JsonCodec) -> None:
    """A circular state is refused as the old codec refused it (a `RecursionError`: it skips
    the standard library's check for cycles, which costs on every save)."""
    state: dict[str, Any] = {}
    state["me"] = state
    with pytest.raises(RecursionError):
        codec.encode(state)


def test_a_state_that_is_no_dict_is_refused(codec: wes.JsonCodec) -> None:
    """Only a dict is a state."""
    with pytest.raises(TypeError, match="must be a dict, not list"):
        codec.encode([1, 2])  # type: ignore[arg-type]  # the wrong type on purpose


def test_orjson_also_writes_plain_enums_and_uuids() -> None:
    """With orjson, plain Enum members are written as their values and UUIDs as strings (the
    standard library refuses both): the one difference orjson makes."""

    class Colour(enum.Enum):
        RED = "red"

    key = uuid.UUID(int=7)
    codec = wes.JsonCodec()
    assert codec.decode(codec.encode({"c": Colour.RED, "k": key})) == {"c": "red", "k": str(key)}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a":NaN,"b":Infinity,"c":-Infinity}', {"a": math.nan, "b": math.inf, "c": -math.inf}),
        (b'{"a":123456789012345678901234567890}', {"a": 123456789012345678901234567890}),
        (b'{"a":-9223372036854775809}', {"a": -9223372036854775809}),
        (b'{"a":1e400}', {"a": math.inf}),
        (b'{"a":"\\ud800"}', {"a": "\ud800"}),
        (b'\xef\xbb\xbf{"a":1}', {"a": 1}),
        (b'{"a": 1, "a": 2}', {"a": 2}),
    ],
    ids=["nan", "big int", "below int64", "huge float", "lone surrogate", "bom", "duplicate"],
)
def test_stored_bytes_orjson_misreads_or_refuses_decode_as_before(
    codec: wes.JsonCodec, data: bytes, expected: dict[str, Any]
) -> None:
    """Bytes orjson alone would refuse (NaN, a lone surrogate, a BOM) or misread (an integer
    beyond 64 bits as a float) decode as the standard library reads them."""
    assert same(codec.decode(data), expected)
    assert same(codec.decode(data), json.loads(data))


def test_orjson_reads_integers_beyond_64_bits_as_floats() -> None:
    """Why the codec checks for long digit runs: orjson alone loses precision there."""
    assert isinstance(orjson.loads(b"[123456789012345678901234567890]")[0], float)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"[1, 2]", "JSON list, not an object"), (b'"text"', "JSON str, not an object")],
)
def test_decoding_anything_but_an_object_is_refused(
    codec: wes.JsonCodec, data: bytes, message: str
) -> None:
    """A stored state must be a JSON object."""
    with pytest.raises(ValueError, match=message):
        codec.decode(data)


@pytest.mark.parametrize("data", [b"{", b"", b"\xff"])
def test_decoding_bytes_that_are_no_json_is_a_value_error(
    codec: wes.JsonCodec, data: bytes
) -> None:
    """Bytes that are not JSON raise `ValueError` (the loader turns it into
    `StateNotLoadable`)."""
    with pytest.raises(ValueError):
        codec.decode(data)


def test_orjson_writes_the_states_it_can_hold() -> None:
    """Where orjson is installed it writes a plain state itself (its float format tells)."""
    assert wes.JsonCodec().encode({"f": 1e-7}) == b'{"f":1e-7}'
    assert old_encode({"f": 1e-7}) == b'{"f":1e-07}'


def encode_or_error(codec: wes.JsonCodec, state: dict[str, Any]) -> bytes | type[Exception]:
    try:
        return codec.encode(state)
    except Exception as exc:
        return type(exc)


def encode_all_or_errors(codec: Codec, batch: list[dict[str, Any]]) -> list[Any]:
    """What `encoder_of_all(codec)` gives for `batch`: each state's bytes, or its error's type."""
    out, errors = _codec.encoder_of_all(codec)(batch)
    assert len(out) == len(batch)
    assert all(out[i] == b"" for i in errors)
    return [type(errors[i]) if i in errors else data for i, data in enumerate(out)]


@settings(max_examples=200, deadline=None)
@given(st.lists(states, max_size=8))
def test_encoding_many_states_at_once_gives_the_bytes_of_each(
    batch: list[dict[str, Any]],
) -> None:
    """A save sweep encodes its states many at once: the bytes are those `encode` writes for
    each, big integers, NaN and non-string keys among them."""
    codec = wes.JsonCodec()
    assert encode_all_or_errors(codec, batch) == [codec.encode(state) for state in batch]


def test_a_state_among_many_that_cannot_be_encoded_has_its_error_at_its_place(
    codec: wes.JsonCodec,
) -> None:
    """Of many states encoded at once, one that cannot be encoded gets its own error, the
    others their bytes: NaN (orjson would write null), a set, a big integer."""
    batch: list[dict[str, Any]] = [
        {"a": 1},
        {"tags": {1}},
        {"nan": math.nan},
        {"big": 2**70},
        {"text": "\ud800"},
    ]
    assert encode_all_or_errors(codec, batch) == [encode_or_error(codec, s) for s in batch]
    assert encode_all_or_errors(codec, batch)[1] is TypeError


def test_states_larger_than_orjsons_buffer_are_encoded_at_once_as_one_by_one() -> None:
    """A state beyond `_COMPACT` bytes is encoded at once as `encode` writes it."""
    codec = wes.JsonCodec()
    batch: list[dict[str, Any]] = [{"blob": "x" * (2 * _codec._COMPACT)}, {"a": 1}]
    assert encode_all_or_errors(codec, batch) == [codec.encode(state) for state in batch]


class Shouting(wes.JsonCodec):
    """A codec that changes how states are written."""

    def encode(self, state: dict[str, Any]) -> bytes:
        return super().encode(state).upper()


class Plain(Codec):
    """A codec of its own, with no way of encoding many states at once."""

    def encode(self, state: dict[str, Any]) -> bytes:
        if "bad" in state:
            raise ValueError("bad state")
        return repr(sorted(state.items())).encode()

    def decode(self, data: bytes) -> dict[str, Any]:
        raise NotImplementedError


def test_many_states_go_through_the_encode_of_a_codec_subclass() -> None:
    """A `JsonCodec` subclass that changes `encode` has every state of a batch go through it."""
    assert encode_all_or_errors(Shouting(), [{"a": "b"}]) == [b'{"A":"B"}']


def test_many_states_go_through_the_encode_of_any_other_codec() -> None:
    """A codec without a way of its own encodes a batch with its `encode`, one state at a
    time, each error at its place."""
    assert encode_all_or_errors(Plain(), [{"a": 1}, {"bad": 1}]) == [b"[('a', 1)]", ValueError]


def test_a_state_the_standard_library_refuses_after_orjson_wrote_null_has_its_error() -> None:
    """Of many states, one that orjson wrote with a `null` goes to the standard library; if
    that refuses it, the error is that state's alone."""
    codec = wes.JsonCodec()

    def refuse(state: dict[str, Any]) -> bytes:
        raise ValueError("refused")

    codec._std_encode = refuse
    assert encode_all_or_errors(codec, [{"a": None}, {"b": 1}]) == [ValueError, b'{"b":1}']
