"""The bank written the plain way, the baseline of the HTTP rows: Starlette over sqlite3.

One row per account, one transaction per request (`BEGIN IMMEDIATE`, read, check, update,
`COMMIT`) with `synchronous=FULL` in WAL mode, on a connection per thread, the database
work in Starlette's thread pool (`run_in_threadpool`, what a `def` endpoint runs in). The
HTTP side is the bank's own: the same routes, the same parsing and checks of the user id,
names, bodies and amounts (the very functions of `wes.bank`), the same answers and error
codes, so the rows compare the two ways of keeping the money and nothing else. There are no
sessions and so no locks between users: `POST /` and `DELETE /` only check the user id.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wes.bank import (
    MAX_BALANCE,
    AccountNotFound,
    BalanceLimitExceeded,
    InsufficientFunds,
    InvalidRequest,
)
from wes.bank._account import check_amount, check_name, check_user
from wes.bank._app import _body, _exception_handlers, _field, _healthz, _user

T = TypeVar("T")

RESERVED = frozenset({"metrics", "api", "healthz"})
"""The names the bank refuses as account names (they clash with its other routes)."""

SCHEMA = "CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL)"


class Accounts:
    """The accounts table, one sqlite3 connection per thread of the pool."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._db().execute(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: the transactions below are the ones written out.
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` inside `BEGIN IMMEDIATE` ... `COMMIT`, rolled back if it raises."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def balance(self, name: str) -> int:
        row = self._db().execute("SELECT balance FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise AccountNotFound(name)
        balance: int = row[0]
        return balance

    def open(self, name: str) -> tuple[bool, int]:
        def work(db: sqlite3.Connection) -> tuple[bool, int]:
            row = db.execute("SELECT balance FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return False, int(row[0])
            db.execute("INSERT INTO accounts (name, balance) VALUES (?, 0)", (name,))
            return True, 0

        return self.transaction(work)

    def move(self, source: str | None, target: str | None, amount: int) -> dict[str, int]:
        """Take `amount` out of `source` and put it into `target` (either may be `None`);
        the new balances."""

        def work(db: sqlite3.Connection) -> dict[str, int]:
            balances = {name: _read(db, name) for name in (source, target) if name is not None}
            if source is not None:
                if amount > balances[source]:
                    raise InsufficientFunds(source, balances[source], amount)
                balances[source] -= amount
            if target is not None:
                if balances[target] + amount > MAX_BALANCE:
                    raise BalanceLimitExceeded(target, balances[target], amount)
                balances[target] += amount
            db.executemany(
                "UPDATE accounts SET balance = ? WHERE name = ?",
                [(balance, name) for name, balance in balances.items()],
            )
            return balances

        return self.transaction(work)


def _read(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT balance FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise AccountNotFound(name)
    return int(row[0])


class Endpoints:
    """The bank's routes over `Accounts`."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    async def login(self, request: Request) -> Response:
        user = check_user(_user(request))
        return JSONResponse({"session": user, "accounts": []})

    async def logout(self, request: Request) -> Response:
        user = check_user(_user(request))
        return JSONResponse({"session": user, "stopped": False})

    async def open(self, request: Request) -> Response:
        name = self._names(request)
        created, balance = await run_in_threadpool(self.accounts.open, name)
        body = {"account": name, "balance": balance, "created": created}
        return JSONResponse(body, status_code=201 if created else 200)

    async def insert(self, request: Request) -> Response:
        name = self._names(request)
        amount = check_amount(_field(await _body(request), "amount"))
        balances = await run_in_threadpool(self.accounts.move, None, name, amount)
        return JSONResponse({"account": name, "balance": balances[name]})

    async def withdraw(self, request: Request) -> Response:
        name = self._names(request)
        amount = check_amount(_field(await _body(request), "amount"))
        balances = await run_in_threadpool(self.accounts.move, name, None, amount)
        return JSONResponse({"account": name, "balance": balances[name]})

    async def transfer(self, request: Request) -> Response:
        source = self._names(request)
        body = await _body(request)
        target, amount = _field(body, "to"), _field(body, "amount")
        if isinstance(target, str) and target in RESERVED:
            raise InvalidRequest(f"{target!r} is reserved, not an account name")
        target, amount = check_name(target), check_amount(amount)
        if source == target:
            raise InvalidRequest(f"a transfer needs two different accounts, not {source!r} twice")
        balances = await run_in_threadpool(self.accounts.move, source, target, amount)
        return JSONResponse({"from": source, "to": target, "amount": amount, "balances": balances})

    def balance(self, request: Request) -> Response:
        """A `def` endpoint: Starlette runs it in its thread pool."""
        name = self._names(request)
        return JSONResponse({"balance": self.accounts.balance(name)})

    def _names(self, request: Request) -> str:
        """The checked account name of the path, after the checked user id."""
        check_user(_user(request))
        name: Any = request.path_params["account"]
        if name in RESERVED:
            raise InvalidRequest(f"{name!r} is reserved, not an account name")
        return check_name(name)


def create_plain_app(path: str) -> Starlette:
    """The plain bank on the SQLite file `path`."""
    ops = Endpoints(Accounts(path))
    routes = [
        Route("/", ops.login, methods=["POST"]),
        Route("/", ops.logout, methods=["DELETE"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/{account}", ops.open, methods=["POST"]),
        Route("/{account}/insert", ops.insert, methods=["POST"]),
        Route("/{account}/withdraw", ops.withdraw, methods=["POST"]),
        Route("/{account}/transfer", ops.transfer, methods=["POST"]),
        Route("/{account}/balance", ops.balance, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers=_exception_handlers())
