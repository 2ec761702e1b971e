"""The default codec: compact UTF-8 JSON."""

from __future__ import annotations

import json
from typing import Any

from ._abc import Codec


class JsonCodec(Codec):
    """Encodes states as compact UTF-8 JSON objects."""

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

    def encode(self, state: dict[str, Any]) -> bytes:
        """Encode `state`; raises `TypeError` or `ValueError` for what JSON cannot hold."""
        if not isinstance(state, dict):
            raise TypeError(f"a state must be a dict, not {type(state).__name__}")
        return self._encoder.encode(state).encode()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode JSON bytes into a dict; raises `ValueError` for anything else."""
        state = json.loads(data)
        if not isinstance(state, dict):
            raise ValueError(f"stored state is a JSON {type(state).__name__}, not an object")
        return state
