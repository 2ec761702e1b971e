"""`wes bank serve`: the bank over HTTP under uvicorn, until SIGTERM or SIGINT.

The core `wes` command owns the parser and where the state lives: it adds the options of
`add_arguments` to the command's parser, turns the `--db`/`--store` and `--registry` URLs
into a store and a registry, and hands them to `serve`, which runs the node and the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

from wes import LoggingStats, MultiStats, PrometheusStats, WesError, configure_logging
from wes.abc import Registry, Store, Transport

from ._bank import build_node
from ._live import LiveStats

log = logging.getLogger("wes.cli")

GRACE = 10  # seconds in-flight requests get to finish after SIGTERM before they are cut
PROBE_TIMEOUT = 10.0  # seconds the store and registry get to answer at startup

HELP = "serve the bank over HTTP"
DESCRIPTION = (
    "Serve the bank over HTTP until SIGTERM or SIGINT, then stop every session normally "
    "(saving), release every lease and exit 0. Each request names its session in a User-Id "
    "header; GET / is a live page, GET /metrics Prometheus metrics."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `wes bank serve` besides where the state lives: the address, the
    sessions' idle timeout and the logging."""
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument(
        "--port", type=_port, default=8080, help="the port to listen on (0: any free one)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="a session without requests for this long ends, saving and unlocking its "
        "accounts (default: 60)",
    )
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the lowest level logged (default: info; debug shows every stats event)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="the event loop (default: uvloop when installed, as the service extra does)",
    )
    parser.add_argument(
        "--http",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="the HTTP parser (default: httptools when installed, as the service extra does)",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, not {port}")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return seconds


def require_service() -> None:
    """Raise `ImportError` naming the extra when Starlette or uvicorn is missing; the `wes`
    command calls it before it opens anything."""
    try:
        import starlette  # noqa: F401 - only to fail early, naming the extra
        import uvicorn  # noqa: F401
    except ImportError:
        raise ImportError("wes bank serve needs: pip install 'wes-actors[service]'") from None


def serve(
    args: argparse.Namespace,
    store: Store,
    registry: Registry,
    *,
    store_url: str,
    registry_url: str,
    transport: Transport | None = None,
) -> int:
    """Serve the bank on `store` and `registry` with the options of `add_arguments` until
    SIGTERM or SIGINT; return the exit code (0, or 1 when it could not start). The URLs are
    only logged. Needs the service extra (see `require_service`)."""
    loop_factory = _loop_factory(args.loop)
    _check_http(args.http)
    handler = configure_logging(args.log_level, json=args.log_json, loggers=("wes", "uvicorn"))
    handler.addFilter(_drop_color)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            urls = (store_url, registry_url)
            return runner.run(_serve_async(args, store, registry, transport, urls))
    except KeyboardInterrupt:  # a SIGINT before the handlers were in place
        return 0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop for `--loop` (`None`: asyncio's own); what uvloop gains is in the
    README's speed section."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "auto":
            return None
        raise ImportError("--loop uvloop needs: pip install 'wes-actors[service]'") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _check_http(name: str) -> None:
    """`--http httptools` without httptools fails here, before anything starts (with "auto"
    uvicorn falls back to h11 by itself)."""
    if name != "httptools":
        return
    try:
        import httptools  # noqa: F401 - only to fail early, naming the extra
    except ImportError:
        raise ImportError("--http httptools needs: pip install 'wes-actors[service]'") from None


def _drop_color(record: logging.LogRecord) -> bool:
    """uvicorn adds a copy of its message with terminal colours; a log line wants one."""
    record.__dict__.pop("color_message", None)
    return True


async def _serve_async(
    args: argparse.Namespace,
    store: Store,
    registry: Registry,
    transport: Transport | None,
    urls: tuple[str, str],
) -> int:
    import uvicorn

    from ._app import create_app

    prometheus = PrometheusStats()
    stats = MultiStats(LoggingStats(), prometheus, LiveStats())
    node = build_node(store, registry, stats, idle_timeout=args.idle_timeout, transport=transport)
    prometheus.watch(node)
    config = uvicorn.Config(
        create_app(node),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=args.access_log,
        lifespan="off",
        timeout_graceful_shutdown=GRACE,
        server_header=False,
        http=args.http,
    )
    server = _server_class()(config)
    with _stop_on_signals(server):
        async with node:
            try:
                await asyncio.wait_for(_probe(store, registry), PROBE_TIMEOUT)
            except (WesError, TimeoutError) as exc:
                log.error("the store or registry does not answer: %s", str(exc) or "timeout")
                return 1
            log.info("bank starting: store %s, registry %s", *urls)
            if transport is not None:
                log.info(
                    "node %s in cluster %r over %s", node.address, args.cluster, args.transport
                )
            # The service owns its process: what start-up built (modules, the app, the node)
            # lives as long as it does, so full collections need not walk it again and again.
            gc.collect()
            gc.freeze()
            try:
                await server.serve()
            except SystemExit:  # uvicorn's way to say it could not start; it logged why
                return 1
            log.info("stopping: saving and ending %d sessions", node.live_channels)
        log.info("stopped: every session ended and every lease released")
    return 0


async def _probe(store: Store, registry: Registry) -> None:
    """One read of each backend, so a store or registry that is down stops the start."""
    try:
        await store.read(["wes-cli/probe"])
        await registry.holder("channel", ("wes-cli", "probe"))
    except WesError:
        raise
    except Exception as exc:
        raise WesError(f"{exc!r}") from exc


@contextlib.contextmanager
def _stop_on_signals(server: Any) -> Iterator[None]:
    """SIGTERM or SIGINT: the server stops accepting requests, lets the running ones finish
    and returns; a second SIGINT cuts the wait for them short. Installed around the whole
    run, so a signal during the final saves cannot kill the process half way."""
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT)

    def on_signal(sig: signal.Signals) -> None:
        if not server.should_exit:
            log.info("%s: stopping", sig.name)
            server.should_exit = True
        elif sig == signal.SIGINT:
            log.info("SIGINT again: not waiting for running requests")
            server.force_exit = True

    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, without its own signal handling: `_stop_on_signals` does it,
        and unlike uvicorn's it does not raise the signal again once the server stopped
        (which would kill the process before the node saved)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # older uvicorn
            pass

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                for listener in getattr(self, "servers", ()):
                    for sock in listener.sockets:
                        host, port = sock.getsockname()[:2]
                        host = f"[{host}]" if ":" in host else host
                        print(f"wes bank: serving on http://{host}:{port}", flush=True)

    return Server
