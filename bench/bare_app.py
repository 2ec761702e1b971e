"""A bare Starlette app answering a constant from an `async` endpoint: the baseline of the
bank's constant route (`GET /healthz`), to show what the bank's app costs on top of
Starlette itself."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_bare_app() -> Starlette:
    """The one route, `GET /healthz`, answering `{"status": "ok"}` as the bank does."""
    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])
