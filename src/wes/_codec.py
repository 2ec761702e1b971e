"""The default codec: compact UTF-8 JSON."""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any

from ._abc import Codec


def _fast_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str] | None:
    """The C encoder behind `encoder`, built once (json builds a new one per call); `None`
    where the C accelerator is missing. Saves encode a state per actor, so this matters."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
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

    def encode(state: Any) -> str:
        return "".join(iterate(state, 0))

    return encode


class JsonCodec(Codec):
    """Encodes states as compact UTF-8 JSON objects."""

    def __init__(self) -> None:
        encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
        self._encode = _fast_encoder(encoder) or encoder.encode

    def encode(self, state: dict[str, Any]) -> bytes:
        """Encode `state`; raises `TypeError` or `ValueError` for what JSON cannot hold."""
        if type(state) is not dict and not isinstance(state, dict):
            raise TypeError(f"a state must be a dict, not {type(state).__name__}")
        return self._encode(state).encode()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode JSON bytes into a dict; raises `ValueError` for anything else."""
        state = json.loads(data)
        if not isinstance(state, dict):
            raise ValueError(f"stored state is a JSON {type(state).__name__}, not an object")
        return state
