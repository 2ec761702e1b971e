"""The bank over HTTP: a Starlette app on a running node (see `create_app` for the API).

Every answer is JSON. An error answer is `{"error": CODE, "message": TEXT}`, plus the
account, balance and amount of an overdraft and `"session_ended": true`. Bad input is a 4xx,
never a 5xx. A 503 (with `Retry-After`) means something outside broke or the node is
stopping: the request was not acknowledged.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import BaseRoute, Route
    from starlette.types import ExceptionHandler
except ImportError:
    raise ImportError("the bank service needs: pip install 'wes-actors[service]'") from None

from wes import (
    LeaseLost,
    Node,
    NodeNotRunning,
    PrometheusStats,
    RegistryUnavailable,
    StaleToken,
    StoreUnavailable,
)
from wes.abc import Stats

from ._account import (
    AMOUNT_RULE,
    AccountExists,
    AccountLocked,
    AccountNotFound,
    BalanceLimitExceeded,
    InsufficientFunds,
    InvalidRequest,
    SessionElsewhere,
)
from ._bank import Bank, SessionUnavailable
from ._live import LiveStats, live_routes

S = TypeVar("S", bound=Stats)

MAX_BODY = 16 * 1024
"""The largest request body read, in bytes; a bank request needs a few dozen."""

# Exception type -> (status, error code). No type here derives from another, so the handler
# Starlette picks (that of the nearest class in the exception's MRO) is the one of its row.
_ERRORS: list[tuple[type[Exception], int, str]] = [
    (InvalidRequest, 400, "invalid_request"),
    (AccountNotFound, 404, "account_not_found"),
    (AccountLocked, 409, "account_locked"),
    (AccountExists, 409, "account_exists"),
    (SessionElsewhere, 409, "session_elsewhere"),
    (InsufficientFunds, 409, "insufficient_funds"),
    (BalanceLimitExceeded, 409, "balance_limit_exceeded"),
    (SessionUnavailable, 503, "session_unavailable"),
    (NodeNotRunning, 503, "stopping"),
    (StoreUnavailable, 503, "store_unavailable"),
    (RegistryUnavailable, 503, "registry_unavailable"),
    (LeaseLost, 503, "lease_lost"),
    (StaleToken, 503, "lease_lost"),
]


class _Json(JSONResponse):
    """`JSONResponse` with the same bytes from one encoder made once: Starlette's builds an
    encoder for every answer (`json.dumps` with options)."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class ApiError(Exception):
    """An answer other than success, raised by the endpoints' request parsing."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def create_app(node: Node, *, bank: Bank | None = None, title: str = "wes bank") -> Starlette:
    """The bank's HTTP API on `node` (built with `wes.bank.build_node`), as a Starlette app.

    The caller runs the node around the server (`async with node:`); the app neither starts
    nor stops it. Every bank route needs a `User-Id` header: it names the caller's session,
    the channel `("bank_session", user)`.

    - `POST /`: log in, starting the session; 200 `{"session", "accounts"}`.
    - `DELETE /`: log out, ending the session (saving, unlocking its accounts); 200
      `{"session", "stopped"}`.
    - `POST /{account}`: create the account (balance 0) in the session; 201
      `{"account", "balance", "created": true}`. An existing account is opened in the
      session instead: 200, `"created": false`.
    - `POST /{account}/insert`, `POST /{account}/withdraw` with `{"amount": n}`: 200
      `{"account", "balance"}`.
    - `POST /{from}/transfer` with `{"to": name, "amount": n}`: 200
      `{"from", "to", "amount", "balances": {from: n, to: n}}`, atomically.
    - `GET /{account}/balance`: 200 `{"balance": n}`; takes no lock.
    - `GET /metrics`: Prometheus text, when the node's stats include `PrometheusStats`
      (else 404).
    - `GET /healthz`: 200 `{"status": "ok"}` while the server runs; a constant answer, for
      health checks and as the baseline of the HTTP benchmark.
    - `GET /`: the live page, when the node's stats include `LiveStats` (else a JSON line).

    400: missing or invalid `User-Id`, an invalid account name, a body that is not a JSON
    object, a missing field, an amount that is not an integer from 1 to `MAX_AMOUNT`, a
    transfer to the source itself; 413: a body over `MAX_BODY` bytes. 404: an unknown
    account or route. 409: the account is open in another session (`account_locked`), the
    user's session runs on another node, an overdraft (`insufficient_funds`; the session
    ended unsaved and resumes from its last save, which holds every acknowledged request),
    a balance above `MAX_BALANCE`. 503 (`Retry-After: 1`): the store or registry failed, a
    lease was lost, or the node is stopping; the request was not acknowledged.

    Args:
        node: the node; its stats sinks (also inside a `MultiStats`) are looked at for a
            `PrometheusStats` to serve at `/metrics` and a `LiveStats` for the live page.
        bank: the operations; default `Bank(node)`.
        title: the live page's title.
    """
    bank = bank if bank is not None else Bank(node)
    prometheus = find_sink(node.stats, PrometheusStats)
    live = find_sink(node.stats, LiveStats)
    extra: list[BaseRoute] = []
    if live is not None:
        extra += live_routes(node, live, title=title)
    else:
        extra.append(Route("/", _index, methods=["GET"]))
    extra.append(Route("/metrics", _metrics_endpoint(prometheus), methods=["GET"]))
    # Account names that would clash with the other routes' first path segment.
    reserved = frozenset(
        {"metrics", "api", "healthz"} | {_path(r).strip("/").split("/")[0] for r in extra}
    )
    reserved -= {""}
    ops = _Endpoints(bank, reserved)
    routes: list[BaseRoute] = [
        # The router tries routes in turn (a regex each), so the busiest come first. No
        # other route matches a path ending in these verbs, so the order changes no answer;
        # `/{account}` stays after the others, whose 405s name their own methods.
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/{account}/balance", ops.balance, methods=["GET"]),
        Route("/{account}/transfer", ops.transfer, methods=["POST"]),
        Route("/{account}/insert", ops.insert, methods=["POST"]),
        Route("/{account}/withdraw", ops.withdraw, methods=["POST"]),
        Route("/", ops.login, methods=["POST"]),
        Route("/", ops.logout, methods=["DELETE"]),
        *extra,
        Route("/{account}", ops.open, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers=_exception_handlers())
    app.state.bank = bank
    app.state.node = node
    return app


def find_sink(stats: Stats, cls: type[S]) -> S | None:
    """The first sink of type `cls` in `stats`, also looking inside `MultiStats`."""
    if isinstance(stats, cls):
        return stats
    for sink in getattr(stats, "sinks", ()):
        found = find_sink(sink, cls)
        if found is not None:
            return found
    return None


def _path(route: BaseRoute) -> str:
    path = getattr(route, "path", "")
    return path if isinstance(path, str) else ""


class _Endpoints:
    """The bank routes; each turns the request into a `Bank` call and its result into JSON.
    What they raise, the app's exception handlers answer (`_exception_handlers`)."""

    def __init__(self, bank: Bank, reserved: frozenset[str]) -> None:
        self.bank = bank
        self.reserved = reserved

    async def login(self, request: Request) -> Response:
        user = _user(request)
        accounts = await self.bank.login(user)
        return _Json({"session": user, "accounts": sorted(accounts)})

    async def logout(self, request: Request) -> Response:
        user = _user(request)
        return _Json({"session": user, "stopped": await self.bank.logout(user)})

    async def open(self, request: Request) -> Response:
        user, name = _user(request), self._account(request)
        created, balance = await self.bank.open(user, name)
        body = {"account": name, "balance": balance, "created": created}
        return _Json(body, status_code=201 if created else 200)

    async def insert(self, request: Request) -> Response:
        user, name = _user(request), self._account(request)
        amount = _field(await _body(request), "amount")
        balance = await self.bank.insert(user, name, amount)
        return _Json({"account": name, "balance": balance})

    async def withdraw(self, request: Request) -> Response:
        user, name = _user(request), self._account(request)
        amount = _field(await _body(request), "amount")
        balance = await self.bank.withdraw(user, name, amount)
        return _Json({"account": name, "balance": balance})

    async def transfer(self, request: Request) -> Response:
        user, source = _user(request), self._account(request)
        body = await _body(request)
        target, amount = _field(body, "to"), _field(body, "amount")
        if isinstance(target, str):
            target = self._name(target)
        balances = await self.bank.transfer(user, source, target, amount)
        return _Json({"from": source, "to": target, "amount": amount, "balances": balances})

    async def balance(self, request: Request) -> Response:
        user, name = _user(request), self._account(request)
        return _Json({"balance": await self.bank.balance(user, name)})

    def _account(self, request: Request) -> str:
        return self._name(request.path_params["account"])

    def _name(self, name: str) -> str:
        if name in self.reserved:
            raise ApiError(400, "invalid_request", f"{name!r} is reserved, not an account name")
        return name


def _details(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, InsufficientFunds | BalanceLimitExceeded):
        # The command failed inside the session, which ended unsaved: say so.
        return {
            "account": exc.account,
            "balance": exc.balance,
            "amount": exc.amount,
            "session_ended": True,
        }
    if isinstance(exc, AccountNotFound | AccountLocked | AccountExists):
        return {"account": exc.account}
    return {}


def _error(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return _Json({"error": code, "message": message, **details}, status, headers)


def _user(request: Request) -> str:
    user = request.headers.get("user-id")
    if user is None:
        raise ApiError(400, "missing_user_id", "a User-Id header naming the session is required")
    return user  # `Bank` checks what it looks like


async def _body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"a request body is at most {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, "body_too_large", f"a request body is at most {MAX_BODY} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(
            400, "invalid_json", "the client went away before sending the body"
        ) from None
    raw = b"".join(chunks)
    try:
        # What json.loads does with bytes, but with one decoder made once: json.loads
        # builds a decoder for every call that passes parse_int (half of its 7.7 us here).
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError):  # also bad UTF-8
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


_MAX_DIGITS = sys.int_info.str_digits_check_threshold
"""Integer literals longer than this (640 digits) are not converted: `int()` may refuse them
(Python's limit, 4300 digits by default, can be set as low as this), and no field of a bank
request holds a number anywhere near that long."""


class _HugeInt:
    """An integer literal of more than `_MAX_DIGITS` digits, kept unconverted: valid JSON,
    out of range for every field."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"


def _parse_int(literal: str) -> int | _HugeInt:
    digits = len(literal.lstrip("-"))
    return int(literal) if digits <= _MAX_DIGITS else _HugeInt(digits)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def _field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise ApiError(400, "invalid_request", f"the body needs the field {name!r}")
    value = body[name]
    if isinstance(value, _HugeInt):
        rule = AMOUNT_RULE if name == "amount" else f"the field {name!r} is out of range"
        raise ApiError(400, "invalid_request", f"{rule}, not {value!r}")
    return value


async def _index(request: Request) -> Response:
    return _Json({"service": "wes bank", "docs": "POST /{account} with a User-Id header opens one"})


_HEALTHY = json.dumps({"status": "ok"}, separators=(",", ":")).encode()
"""The answer of `/healthz`, rendered once: it never changes."""


async def _healthz(request: Request) -> Response:
    return Response(_HEALTHY, media_type="application/json")


def _metrics_endpoint(stats: PrometheusStats | None) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        if stats is None:
            return _error(404, "not_found", "no metrics: the node's stats hold no PrometheusStats")
        return Response(stats.exposition(), headers={"Content-Type": stats.content_type})

    return metrics


def _exception_handlers() -> dict[Any, ExceptionHandler]:
    """Every error an endpoint raises, turned into its JSON answer. Anything else is a bug:
    the `Exception` handler answers 500 from Starlette's `ServerErrorMiddleware`, which then
    raises the exception on, so the server logs it with its traceback."""
    handlers: dict[Any, ExceptionHandler] = {
        cls: _known_error(status, code) for cls, status, code in _ERRORS
    }
    handlers[ApiError] = _api_error
    handlers[HTTPException] = _http_error
    handlers[Exception] = _internal_error
    return handlers


def _known_error(status: int, code: str) -> ExceptionHandler:
    async def answer(request: Request, exc: Exception) -> Response:
        return _error(status, code, str(exc), **_details(exc))

    return answer


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.code, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = _error(exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _error(500, "internal_error", "the server failed; this is a bug")
