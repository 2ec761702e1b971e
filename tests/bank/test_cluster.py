"""The bank as a cluster: `make cluster` (examples/bank_cluster.py) starts NATS and three
nodes sharing a store and a registry; any node answers any user, and `wes bank serve`
refuses a cluster without shared state."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.programs import ROOT
from tests.support.servers import free_port
from wes.bank import (
    AccountLocked,
    AccountNotFound,
    BalanceLimitExceeded,
    InsufficientFunds,
    InvalidRequest,
    SessionElsewhere,
)

DEMO = ROOT / "examples" / "bank_cluster.py"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[list[str]]:
    """The demo on free ports; yields the three nodes' base URLs."""
    ports = [free_port() for _ in range(3)]
    proc = subprocess.Popen(
        [
            sys.executable,
            str(DEMO),
            "--dir",
            str(tmp_path / "state"),
            "--ports",
            ",".join(map(str, ports)),
            "--nats-port",
            str(free_port()),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        _wait_for(urls, proc)
        yield urls
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def _wait_for(urls: list[str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    for url in urls:
        while True:
            assert proc.poll() is None, "the demo exited early"
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"{url} did not come up"
                time.sleep(0.1)


@pytest.mark.subprocess
@pytest.mark.nats
def test_any_node_answers_any_user_of_the_demo(demo: list[str]) -> None:
    a, b, c = demo
    alice = {"User-Id": "alice"}
    assert httpx.post(f"{a}/savings", headers=alice).status_code == 201
    got = httpx.post(f"{b}/savings/insert", headers=alice, json={"amount": 100})
    assert got.json() == {"account": "savings", "balance": 100}
    assert httpx.get(f"{c}/savings/balance", headers=alice).json() == {"balance": 100}
    # Errors travel too: an overdraft through a node that does not run the session.
    over = httpx.post(f"{c}/savings/withdraw", headers=alice, json={"amount": 500})
    assert over.status_code == 409
    assert httpx.get(f"{b}/savings/balance", headers=alice).json() == {"balance": 100}


@pytest.mark.subprocess
@pytest.mark.nats
def test_the_live_page_shows_the_node_and_its_peers(demo: list[str]) -> None:
    alice = {"User-Id": "alice"}
    httpx.post(f"{demo[0]}/savings", headers=alice).raise_for_status()
    deadline = time.monotonic() + 10
    while True:
        live = [httpx.get(f"{url}/api/live").json() for url in demo]
        if all(len(page["peers"]) == 3 for page in live):
            break
        assert time.monotonic() < deadline, live
        time.sleep(0.2)
    assert sorted(page["node"] for page in live) == live[0]["peers"]
    assert [page["channels"] for page in live] == [1, 0, 0]  # alice's session runs on the first


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([], "--transport needs a registry the nodes share"),
        (["--registry", "sqlite:///r.db", "--store", "memory"], "a store the nodes share"),
        (["--registry", "sqlite:///r.db", "--cluster", "a.b"], "bad --cluster"),
    ],
)
def test_serve_refuses_a_cluster_it_cannot_be(tmp_path: Path, extra: list[str], words: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wes._cli", "bank", "serve", "--transport", "nats://x:1", *extra],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert words in done.stderr.decode()


@pytest.mark.subprocess
def test_serve_refuses_a_transport_url_that_is_not_nats(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wes._cli",
            "bank",
            "serve",
            "--registry",
            "sqlite:///r.db",
            "--transport",
            "http://127.0.0.1:4222",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "bad transport URL 'http://127.0.0.1:4222'" in done.stderr.decode()


@pytest.mark.parametrize(
    "error",
    [
        InsufficientFunds("savings", 5, 10),
        BalanceLimitExceeded("savings", 5, 10),
        InvalidRequest("an amount must be an integer"),
        AccountNotFound("savings"),
        AccountLocked("savings"),
        SessionElsewhere("alice"),
    ],
)
def test_a_bank_error_rebuilds_from_its_args_with_its_message(error: Exception) -> None:
    again = type(error)(*error.args)  # what a node does with one from another node
    assert str(again) == str(error)
    assert vars(again) == vars(error)
