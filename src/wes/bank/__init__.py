"""wes bank: bank accounts as actors, customer sessions as channels, served over HTTP.

A port of wes_bank, the demo of the Erlang original. `Account` is the actor, `build_node`
a node for it, `Bank` the operations (one session channel per user, locking the accounts it
touches), and `create_app` the HTTP API (needs `pip install 'wes-actors[service]'`). The
`wes bank serve` command runs it; see `create_app` for the routes and status codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._account import ACCOUNT as ACCOUNT
from ._account import MAX_AMOUNT as MAX_AMOUNT
from ._account import MAX_BALANCE as MAX_BALANCE
from ._account import SESSION as SESSION
from ._account import Account as Account
from ._account import AccountExists as AccountExists
from ._account import AccountLocked as AccountLocked
from ._account import AccountNotFound as AccountNotFound
from ._account import BalanceLimitExceeded as BalanceLimitExceeded
from ._account import BankError as BankError
from ._account import InsufficientFunds as InsufficientFunds
from ._account import InvalidRequest as InvalidRequest
from ._account import SessionElsewhere as SessionElsewhere
from ._account import account as account
from ._account import session as session
from ._bank import Bank as Bank
from ._bank import SessionUnavailable as SessionUnavailable
from ._bank import build_node as build_node

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from wes import Node


def create_app(node: Node, *, bank: Bank | None = None, title: str = "wes bank") -> Starlette:
    """The bank's HTTP API on `node` as a Starlette app: the routes, bodies and status codes
    are in `wes.bank._app.create_app`. The caller runs the node around the server.

    The web framework is imported on first use, so `wes.bank` itself needs none; without it
    this raises `ImportError` naming `pip install 'wes-actors[service]'`.
    """
    from ._app import create_app as _create_app

    return _create_app(node, bank=bank, title=title)


__all__ = [
    "ACCOUNT",
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "SESSION",
    "Account",
    "AccountExists",
    "AccountLocked",
    "AccountNotFound",
    "BalanceLimitExceeded",
    "Bank",
    "BankError",
    "InsufficientFunds",
    "InvalidRequest",
    "SessionElsewhere",
    "SessionUnavailable",
    "account",
    "build_node",
    "create_app",
    "session",
]
