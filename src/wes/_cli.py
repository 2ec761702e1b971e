"""The `wes` command: `wes bank serve` runs the bank over HTTP, `wes inspect` lists the
actors a store holds. `wes --help` and `wes COMMAND --help` tell the options.

Exit codes: 0 done (also after SIGTERM or SIGINT: the service stops accepting requests,
stops every session normally, saving, and releases every lease), 1 something failed while
running (a store that cannot be reached, a port in use, a missing extra), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ._abc import Record, Registry, Store, Transport
from ._errors import InvalidConfig, WesError
from .bank import _serve as bank_serve

DEFAULT_DB = "wes.db"


class UsageProblem(Exception):
    """A bad argument found after parsing, such as a URL of an unknown scheme (exit 2)."""


# -- URLs -----------------------------------------------------------------------------------


def store_from_url(url: str) -> Store:
    """A store for `url`: `sqlite:///relative/path`, `sqlite:////absolute/path`,
    `redis://host:port/db` (also `rediss://`, `unix://`), `postgresql://...` (or
    `postgres://`), or `memory` (gone when the process ends)."""
    scheme = _scheme(url)
    if scheme == "memory":
        from ._backends.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from ._backends.sqlite import SqliteStore

        return SqliteStore(_sqlite_path(url))
    if scheme in ("redis", "rediss", "unix"):
        _check_netloc(url)
        from ._backends.redis import RedisStore

        return RedisStore(url)
    if scheme in ("postgresql", "postgres"):
        _check_netloc(url, need_host=False)  # no host: libpq's local socket
        from ._backends.postgres import PostgresStore

        try:
            return PostgresStore(url)
        except WesError as exc:
            raise UsageProblem(f"bad store URL {url!r}: {exc}") from None
    raise UsageProblem(
        f"bad store URL {url!r}: use sqlite:///PATH, redis://HOST[:PORT][/DB], "
        f"postgresql://USER@HOST/DB or memory"
    )


def registry_from_url(url: str) -> Registry:
    """A registry for `url`: `memory` (this process only), `sqlite:///PATH` (the processes
    of one host), or `redis://host:port/db` (several hosts)."""
    scheme = _scheme(url)
    if scheme == "memory":
        from ._backends.memory import MemoryRegistry

        return MemoryRegistry()
    if scheme == "sqlite":
        from ._backends.sqlite_registry import SqliteRegistry

        return SqliteRegistry(_sqlite_path(url))
    if scheme in ("redis", "rediss", "unix"):
        _check_netloc(url)
        from ._backends.redis_registry import RedisRegistry

        return RedisRegistry(url)
    raise UsageProblem(
        f"bad registry URL {url!r}: use memory, sqlite:///PATH or redis://HOST[:PORT][/DB]"
    )


def transport_from_url(url: str, cluster: str) -> Transport:
    """A transport for `url`: `nats://HOST:PORT` (several, comma-separated) for NATS."""
    for part in url.split(","):
        if _scheme(part) not in ("nats", "tls"):
            raise UsageProblem(f"bad transport URL {url!r}: use nats://HOST:PORT")
        _check_netloc(part)
    from ._backends.nats import NatsTransport

    try:
        return NatsTransport(url, cluster=cluster)
    except InvalidConfig as exc:
        raise UsageProblem(f"bad --cluster: {exc}") from None


def _scheme(url: str) -> str:
    if url in ("memory", "memory://"):
        return "memory"
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme else ""


def _sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise UsageProblem(
            f"bad SQLite URL {url!r}: use sqlite:///relative/path or sqlite:////absolute/path"
        )
    return url[len("sqlite:///") :]


def _check_netloc(url: str, *, need_host: bool = True) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise UsageProblem(f"bad URL {url!r}: {exc}") from None
    if need_host and parts.scheme != "unix" and not parts.hostname:
        raise UsageProblem(f"bad URL {url!r}: it names no host")


def _store_arg(args: argparse.Namespace) -> tuple[Store, str]:
    if args.store is not None:
        return store_from_url(args.store), args.store
    from ._backends.sqlite import SqliteStore

    return SqliteStore(args.db), f"sqlite:///{args.db}"


# -- the parser -----------------------------------------------------------------------------


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--db",
        metavar="PATH",
        default=DEFAULT_DB,
        help=f"the SQLite file holding the states (default: {DEFAULT_DB} here)",
    )
    where.add_argument(
        "--store",
        metavar="URL",
        help="the store instead of --db: sqlite:///PATH, redis://HOST[:PORT][/DB], "
        "postgresql://USER@HOST/DB, or memory",
    )


def build_parser() -> argparse.ArgumentParser:
    """The `wes` argument parser."""
    parser = argparse.ArgumentParser(
        prog="wes",
        description="wes: actor-based services on asyncio.",
        epilog="Run `wes COMMAND --help` for the options of a command.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    bank = commands.add_parser(
        "bank",
        help="the wes bank: accounts as actors, sessions as channels",
        description="The wes bank, the demo of the Erlang original, as an HTTP service.",
    )
    bank_commands = bank.add_subparsers(title="commands", metavar="COMMAND")
    bank.set_defaults(run=None, parser=bank)

    serve = bank_commands.add_parser(
        "serve", help=bank_serve.HELP, description=bank_serve.DESCRIPTION
    )
    _add_store_options(serve)
    serve.add_argument(
        "--registry",
        metavar="URL",
        default="memory",
        help="where sessions and accounts are locked: memory (this process; the default), "
        "sqlite:///PATH (the processes of one host), redis://HOST[:PORT][/DB] (several hosts)",
    )
    serve.add_argument(
        "--transport",
        metavar="URL",
        help="join a cluster over NATS: nats://HOST:PORT; every node of the cluster answers "
        "every user, forwarding to the node that runs the user's session (needs a shared "
        "--registry and store)",
    )
    serve.add_argument(
        "--cluster",
        default="bank",
        metavar="NAME",
        help="the cluster's name on the NATS server (default: bank)",
    )
    bank_serve.add_arguments(serve)
    serve.set_defaults(run=_bank_serve, parser=serve)

    inspect = commands.add_parser(
        "inspect",
        help="list the actors a store holds and their states",
        description="List every stored actor, one per line: its key, the version of the "
        "class that wrote it, the fencing token of the write, and its decoded state.",
    )
    _add_store_options(inspect)
    inspect.add_argument(
        "--prefix", default="", metavar="P", help="only keys starting with P, such as account/"
    )
    inspect.add_argument(
        "--json", action="store_true", help="one JSON object per line instead of columns"
    )
    inspect.set_defaults(run=_inspect, parser=inspect)
    parser.set_defaults(run=None, parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `wes` command; return its exit code."""
    args = build_parser().parse_args(argv)
    sub: argparse.ArgumentParser = args.parser
    if args.run is None:
        sub.print_help(sys.stderr)
        return 2
    try:
        code: int = args.run(args)
    except UsageProblem as exc:
        sub.error(str(exc))  # exits 2
    except ImportError as exc:
        print(f"wes: {exc}", file=sys.stderr)
        return 1
    return code


# -- wes inspect ----------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    if args.store is None and not os.path.isfile(args.db):
        raise UsageProblem(f"no database at {args.db!r}")
    if args.store is not None and _scheme(args.store) == "sqlite":
        path = _sqlite_path(args.store)
        if not os.path.isfile(path):
            raise UsageProblem(f"no database at {path!r}")
    store, _ = _store_arg(args)
    try:
        count = asyncio.run(_list(store, args.prefix, as_json=args.json))
    except WesError as exc:
        print(f"wes inspect: {exc}", file=sys.stderr)
        return 1
    print(f"{count} actor{'' if count == 1 else 's'}", file=sys.stderr)
    return 0


async def _list(store: Store, prefix: str, *, as_json: bool) -> int:
    from ._codec import JsonCodec

    codec = JsonCodec()
    count = 0
    out = sys.stdout
    if not as_json:
        out.write("KEY\tVERSION\tTOKEN\tSTATE\n")
    async with store:
        async for key, record in store.scan(prefix):
            count += 1
            state, problem = _decode(codec, record)
            if as_json:
                row: dict[str, Any] = {
                    "key": key,
                    "version": record.version,
                    "token": record.token,
                    "state": state,
                }
                if problem is not None:
                    row["error"] = problem
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                shown = problem if problem is not None else json.dumps(state, ensure_ascii=False)
                out.write(f"{key}\t{record.version}\t{record.token}\t{shown}\n")
    out.flush()
    return count


def _decode(codec: Any, record: Record) -> tuple[Any, str | None]:
    try:
        return codec.decode(record.data), None
    except Exception as exc:
        return None, f"<{len(record.data)} bytes that do not decode: {exc}>"


# -- wes bank serve -------------------------------------------------------------------------


def _bank_serve(args: argparse.Namespace) -> int:
    """`wes bank serve`: the store and registry from their URLs, served by `wes.bank`."""
    bank_serve.require_service()  # first: a missing extra is the answer, even to a bad URL
    transport = None
    if args.transport is not None:
        if _scheme(args.registry) == "memory":
            raise UsageProblem(
                "--transport needs a registry the nodes share: --registry sqlite:///PATH "
                "(one host) or redis://HOST[:PORT][/DB]"
            )
        if args.store is not None and _scheme(args.store) == "memory":
            raise UsageProblem("--transport needs a store the nodes share, not memory")
        transport = transport_from_url(args.transport, args.cluster)
    store, store_url = _store_arg(args)
    registry = registry_from_url(args.registry)
    return bank_serve.serve(
        args, store, registry, store_url=store_url, registry_url=args.registry, transport=transport
    )


if __name__ == "__main__":
    sys.exit(main())
