"""The bank app's exception handlers: every error a `Bank` call raises reaches the client as
its status and JSON body, also for a subclass of a mapped error, and anything else is a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import wes
from wes import bank
from wes.bank._app import _ERRORS


class RaisingBank(bank.Bank):
    """A bank whose every operation raises the exception it was given."""

    def __init__(self, node: wes.Node, exc: BaseException) -> None:
        super().__init__(node)
        self.exc = exc

    async def balance(self, user: str, name: str) -> int:
        raise self.exc


def client_raising(exc: BaseException) -> httpx.AsyncClient:
    node = bank.build_node(wes.MemoryStore())
    app = bank.create_app(node, bank=RaisingBank(node, exc))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://bank")


async def answer_to(exc: BaseException) -> httpx.Response:
    async with client_raising(exc) as http:
        return await http.get("/alice/balance", headers={"User-Id": "ann"})


def an_instance(cls: type[Exception]) -> Exception:
    """An instance of `cls` with the attributes its answer shows."""
    if issubclass(cls, bank.InsufficientFunds | bank.BalanceLimitExceeded):
        return cls("alice", 5, 10)
    if issubclass(cls, bank.AccountNotFound | bank.AccountLocked | bank.AccountExists):
        return cls("alice")
    return cls("it broke")


def test_no_mapped_error_derives_from_another() -> None:
    """No two rows of the table are related, so Starlette's pick (the handler of the nearest
    class in the exception's MRO) is always the row of the exception's own type."""
    types = [cls for cls, _, _ in _ERRORS]
    assert len(set(types)) == len(types)
    assert [(a, b) for a in types for b in types if a is not b and issubclass(a, b)] == []


@pytest.mark.parametrize(("cls", "status", "code"), _ERRORS, ids=[c.__name__ for c, *_ in _ERRORS])
async def test_every_mapped_error_answers_its_status_and_code(
    cls: type[Exception], status: int, code: str
) -> None:
    """Each error in the table answers its status and `{"error": code, "message": ...}`, a 503
    with `Retry-After: 1`."""
    exc = an_instance(cls)
    response = await answer_to(exc)
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert body["error"] == code and body["message"] == str(exc)
    assert response.headers.get("retry-after") == ("1" if status == 503 else None)


async def test_an_overdraft_answers_its_details() -> None:
    """An overdraft names the account, balance and amount, and says the session ended."""
    response = await answer_to(bank.InsufficientFunds("alice", 5, 10))
    assert response.json() == {
        "error": "insufficient_funds",
        "message": str(bank.InsufficientFunds("alice", 5, 10)),
        "account": "alice",
        "balance": 5,
        "amount": 10,
        "session_ended": True,
    }


async def test_a_subclass_of_a_mapped_error_answers_like_it() -> None:
    """A subclass of a mapped error answers as its base does."""

    class GoneForGood(bank.AccountNotFound):
        pass

    response = await answer_to(GoneForGood("alice"))
    assert response.status_code == 404
    assert response.json()["error"] == "account_not_found"
    assert response.json()["account"] == "alice"


@pytest.mark.parametrize("exc", [ValueError("a bug"), wes.StateNotEncodable("a bug")])
async def test_any_other_error_is_a_500(exc: Exception) -> None:
    """An error outside the table, also another `WesError`, is a bug: a JSON 500."""
    response = await answer_to(exc)
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "the server failed; this is a bug",
    }
