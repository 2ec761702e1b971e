"""The wire: the versioned JSON envelope of calls between nodes, and what it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

import wes
from wes._wire import (
    OK_NONE,
    BadRequest,
    Unsendable,
    _encode,
    _loads,
    _std_encode,
    _std_loads,
    decode_answer,
    decode_ref_fields,
    decode_request,
    encode_error_body,
    encode_ok,
    encode_refusal,
    encode_request,
    encode_unsendable,
)

LIMIT = 1024 * 1024


def request(**fields: Any) -> bytes:
    """A good request's bytes, with `fields` replaced (a value of `...` drops the field)."""
    body: dict[str, Any] = {
        "wes": 1,
        "op": "command",
        "to": ["session", "s1"],
        "name": "incr",
        "args": [1],
        "kwargs": {},
        "specs": [],
        "rid": "n1#0",
        "deadline": 2e9,
        "chain": [],
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def refused_with(data: bytes) -> wes.WesError:
    with pytest.raises(BadRequest) as caught:
        decode_request(data)
    return caught.value.error


def test_a_request_round_trips_with_its_specs_and_chain() -> None:
    data = encode_request(
        "ensure_channel",
        ("session", 7),
        specs=[wes.create(("counter", "a"), 3), wes.load(("counter", 2))],
        rid="n0#1",
        deadline=123.5,
        chain=(("session", "s0"),),
        max_payload=LIMIT,
    )
    req = decode_request(data)
    assert (req.op, req.to, req.rid, req.deadline) == (
        "ensure_channel",
        ("session", 7),
        "n0#1",
        123.5,
    )
    assert req.chain == (("session", "s0"),)
    assert req.specs == [wes.create(("counter", "a"), 3), wes.load(("counter", 2))]


def test_a_command_carries_its_name_args_and_kwargs() -> None:
    data = encode_request(
        "command",
        ("session", "s1"),
        name="incr",
        args=(1, (2, 3)),
        kwargs={"n": {"k": 1}},
        rid="r",
        deadline=1.0,
        max_payload=LIMIT,
    )
    req = decode_request(data)
    assert (req.name, req.args, req.kwargs) == ("incr", [1, [2, 3]], {"n": {"k": 1}})


@pytest.mark.parametrize("value", [{1, 2}, b"x", object(), float("nan"), float("inf")])
def test_an_argument_json_cannot_carry_is_invalid_arguments_at_the_caller(value: Any) -> None:
    with pytest.raises(wes.InvalidArguments, match="cannot travel as JSON"):
        encode_request(
            "command",
            ("session", "s1"),
            name="incr",
            args=(value,),
            rid="r",
            deadline=1.0,
            max_payload=LIMIT,
        )


def test_a_request_over_the_payload_limit_is_invalid_arguments() -> None:
    with pytest.raises(wes.InvalidArguments, match="over the transport's limit of 100"):
        encode_request(
            "command",
            ("session", "s1"),
            name="incr",
            args=("x" * 200,),
            rid="r",
            deadline=1.0,
            max_payload=100,
        )


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"{not json", wes.UsageError, "must be JSON"),
        (b"\xff\xfe", wes.UsageError, "must be JSON"),
        (b"[1, 2]", wes.UsageError, "JSON object"),
        (b'{"wes": 1, "x": NaN}', wes.UsageError, "must be JSON"),
        (b"[" * 100_000, wes.UsageError, "must be JSON"),
        (request(wes=2), wes.UsageError, "version 2"),
        (request(wes=...), wes.UsageError, "version None"),
        (request(op="exec"), wes.UsageError, "unknown operation 'exec'"),
        (request(to=["session"]), wes.InvalidId, "channel id"),
        (request(to=[1, 2]), wes.InvalidId, "channel id"),
        (request(to="session/s1"), wes.InvalidId, "channel id"),
        (request(to=["session", 1.5]), wes.InvalidId, "channel id"),
        (request(op="read", to=["counter", None]), wes.InvalidId, "actor id"),
        (request(name=3), wes.InvalidName, "command name must be a str"),
        (request(op="read", to=["counter", "a"], name=None), wes.InvalidName, "read name"),
        (request(args={"n": 1}), wes.InvalidArguments, "args must be a list"),
        (request(kwargs=[1]), wes.InvalidArguments, "kwargs must be an object"),
        (request(rid=5), wes.UsageError, "rid must be a str"),
        (request(deadline="soon"), wes.UsageError, "deadline must be a number"),
        (request(deadline=True), wes.UsageError, "deadline must be a number"),
        (request(chain={"a": 1}), wes.UsageError, "chain must be a list"),
        (request(chain=[["session"]]), wes.InvalidId, "channel id"),
        (request(specs={}), wes.InvalidSpec, "specs must be a list"),
        (
            request(specs=[{"actor": ["counter", "a"], "mode": "eval"}]),
            wes.InvalidSpec,
            "not a spec",
        ),
        (request(specs=[["counter", "a"]]), wes.InvalidSpec, "not a spec"),
        (
            request(specs=[{"actor": ["counter", "a"], "mode": "create", "args": 1}]),
            wes.InvalidSpec,
            "spec args must be a list",
        ),
        (request(specs=[{"actor": "a", "mode": "load"}]), wes.InvalidId, "actor id"),
    ],
)
def test_a_malformed_request_is_refused_naming_what_is_wrong(
    data: bytes, error: type[wes.WesError], words: str
) -> None:
    got = refused_with(data)
    assert type(got) is error
    assert words in str(got)


def test_a_huge_integer_is_refused_not_parsed() -> None:
    got = refused_with(request(args=[]).replace(b"[]", b"[" + b"9" * 10_000 + b"]", 1))
    assert isinstance(got, wes.UsageError)


def test_an_answer_carries_a_value_and_none_is_one_constant() -> None:
    assert encode_ok(None, LIMIT) == OK_NONE
    answer = decode_answer(encode_ok({"a": (1, 2)}, LIMIT))
    assert answer.ok and answer.value == {"a": [1, 2]}


def test_a_value_json_cannot_carry_is_unsendable_and_becomes_an_error_answer() -> None:
    with pytest.raises(Unsendable, match="JSON cannot carry") as why:
        encode_ok({1, 2}, LIMIT)
    answer = decode_answer(encode_unsendable("read 'value' of ('counter', 'a')", why.value, LIMIT))
    assert not answer.ok and answer.error is not None
    assert answer.error["type"] == "UsageError"
    assert answer.error["message"].startswith("read 'value' of ('counter', 'a'): JSON cannot")


def test_an_answer_over_the_payload_limit_is_unsendable() -> None:
    with pytest.raises(Unsendable, match="over the transport's limit of 100"):
        encode_ok("x" * 500, 100)


def test_a_refusal_says_why() -> None:
    answer = decode_answer(encode_refusal("overloaded", "1024 calls in flight"))
    assert (answer.ok, answer.refused, answer.message) == (
        False,
        "overloaded",
        "1024 calls in flight",
    )


def test_an_error_whose_args_json_cannot_carry_travels_without_them() -> None:
    answer = decode_answer(encode_error_body({"kind": "exception", "type": "x", "args": [{1}]}))
    assert answer.error == {"kind": "exception", "type": "x", "args": None}


@pytest.mark.parametrize(
    "data", [b"nope", b"[]", b'{"wes": 2, "ok": 1}', b'{"wes": 1}', b'{"wes": 1, "refused": "why"}']
)
def test_an_answer_that_is_not_one_is_a_usage_error(data: bytes) -> None:
    with pytest.raises(wes.UsageError, match="answer from another node"):
        decode_answer(data)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"id": ["session"], "owner": "n0", "actors": []},
        {"id": ["session", "s1"], "owner": 3, "actors": []},
        {"id": ["session", "s1"], "owner": "n0", "actors": [["counter"]]},
        "ref",
        None,  # where create_channel or ensure_channel wants a reference
    ],
)
def test_a_malformed_channel_ref_is_a_usage_error(value: Any) -> None:
    with pytest.raises(wes.UsageError, match="channel reference"):
        decode_ref_fields(value)


class Name(str):
    """A str subclass, which orjson hands back and the standard library writes."""


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "x", True]},
        {"none": None, "list": [None]},
        {"big": 2**70, "neg": -(2**80), "edge": 2**64 - 1},
        {"sub": Name("x"), Name("k"): 1},
        {"nested": ((1, 2), [3, (4,)])},
        {"text": "ünï\u2028"},
        {"int_keys": {1: "a"}},
    ],
    ids=repr,
)
def test_the_wire_writes_and_reads_json_as_the_standard_library_does(value: Any) -> None:
    """With orjson installed or not, the bytes on the wire mean the same."""
    assert _loads(_encode(value)) == _std_loads(_std_encode(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=repr)
def test_the_wire_refuses_what_json_cannot_carry_whoever_writes_it(value: float) -> None:
    with pytest.raises(ValueError):
        _encode({"x": value})
    with pytest.raises(ValueError):
        _std_encode({"x": value})


def test_the_wire_reads_integers_beyond_64_bits_exactly() -> None:
    assert _loads(b'{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
