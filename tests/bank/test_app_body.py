"""The bank app reads a request body the way `json.loads` reads bytes: UTF-8, UTF-16 or
UTF-32, a UTF-8 byte order mark skipped, anything else invalid JSON."""

from __future__ import annotations

import json

import httpx
import pytest

import wes
from wes import bank


class RecordingBank(bank.Bank):
    """A bank whose insert records the amount it was given and answers a balance of 0."""

    def __init__(self, node: wes.Node) -> None:
        super().__init__(node)
        self.amounts: list[object] = []

    async def insert(self, user: str, name: str, amount: int) -> int:
        self.amounts.append(amount)
        return 0


async def insert_with(content: bytes) -> tuple[httpx.Response, list[object]]:
    node = bank.build_node(wes.MemoryStore())
    recording = RecordingBank(node)
    transport = httpx.ASGITransport(app=bank.create_app(node, bank=recording))
    async with httpx.AsyncClient(transport=transport, base_url="http://bank") as http:
        response = await http.post("/alice/insert", content=content, headers={"User-Id": "ann"})
    return response, recording.amounts


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
async def test_bodies_in_every_json_encoding_are_read(encoding: str) -> None:
    """A body in any encoding `json.loads` accepts arrives with the same fields."""
    content = json.dumps({"amount": 7}).encode(encoding)
    assert json.loads(content) == {"amount": 7}
    response, amounts = await insert_with(content)
    assert response.status_code == 200, response.text
    assert amounts == [7]


@pytest.mark.parametrize("content", [b'{"amount": 7\xff}', b"\xef\xbb\xbf", b'{"amount": 1e}'])
async def test_bodies_json_loads_refuses_are_invalid_json(content: bytes) -> None:
    """Bytes `json.loads` refuses (bad UTF-8, a lone byte order mark, bad JSON) answer 400."""
    with pytest.raises(ValueError):
        json.loads(content)
    response, amounts = await insert_with(content)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")
    assert amounts == []
