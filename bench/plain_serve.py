"""Serve the plain bank or the bare app under uvicorn with the server stack of `wes bank
serve` (the same loop, HTTP parser and options), so the HTTP rows compare apps, not servers.

Usage: python bench/plain_serve.py {plain,bare} [--db PATH] [--loop L] [--http H]

It prints `NAME: serving on http://HOST:PORT` once it listens on a free port, and exits
on SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import uvicorn
from bare_app import create_bare_app
from plain_bank import create_plain_app
from starlette.applications import Starlette


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["plain", "bare"])
    parser.add_argument("--db", default="plain.db", help="the plain bank's SQLite file")
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--http", default="httptools", choices=["h11", "httptools"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    app: Starlette = create_plain_app(args.db) if args.app == "plain" else create_bare_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # The options of `wes bank serve` (wes.bank._serve), but for the app.
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        loop=args.loop,
        http=args.http,
    )
    sock.listen(config.backlog)  # connections made from now on wait for the server
    host, port = sock.getsockname()[:2]
    print(f"{args.app}: serving on http://{host}:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
