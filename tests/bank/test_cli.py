"""The `wes` command: help everywhere, bad arguments (exit 2), startup failures (exit 1), and
`wes inspect` listing stored actors from SQLite, Redis and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import wes
from wes._abc import Write
from wes._cli import main
from wes.bank import Bank, build_node

WES = Path(sys.executable).with_name("wes")


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WES), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- help and arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["bank", "inspect"]),
        (["bank"], ["serve"]),
        (["bank", "serve"], ["--db", "--store", "--registry", "--host", "--port", "--log-json"]),
        (["inspect"], ["--db", "--store", "--prefix", "--json"]),
    ],
)
def test_help_everywhere(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: list[str]
) -> None:
    """`--help` works on every command and subcommand, exits 0 and names its options."""
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: wes")
    for word in expected:
        assert word in out


@pytest.mark.subprocess
def test_installed_command_runs() -> None:
    """The `wes` console script is installed and answers --help."""
    done = run("bank", "serve", "--help")
    assert done.returncode == 0, done.stderr
    assert "SIGTERM" in done.stdout


@pytest.mark.parametrize("args", [[], ["bank"]])
def test_missing_command_exits_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """`wes` or `wes bank` without a command prints the help and exits 2."""
    assert main(args) == 2
    assert "usage: wes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bank", "serve", "--port", "abc"], "not a port number"),
        (["bank", "serve", "--port", "70000"], "from 0 to 65535"),
        (["bank", "serve", "--idle-timeout", "0"], "positive number of seconds"),
        (["bank", "serve", "--idle-timeout", "nan"], "positive number of seconds"),
        (["bank", "serve", "--store", "mysql://h/db"], "bad store URL"),
        (["bank", "serve", "--store", "wes.db"], "bad store URL"),
        (["bank", "serve", "--store", "sqlite://"], "bad SQLite URL"),
        (["bank", "serve", "--store", "sqlite:///"], "bad SQLite URL"),
        (["bank", "serve", "--store", "sqlite://host/x.db"], "bad SQLite URL"),
        (["bank", "serve", "--store", "redis://"], "names no host"),
        (["bank", "serve", "--store", "redis://h:port/0"], "bad URL"),
        (["bank", "serve", "--store", "postgresql://h:port/db"], "bad URL"),
        (["bank", "serve", "--registry", "postgresql://h/db"], "bad registry URL"),
        (["bank", "serve", "--registry", "bogus"], "bad registry URL"),
        (["bank", "serve", "--db", "a.db", "--store", "sqlite:///b.db"], "not allowed with"),
        (["bank", "serve", "--nope"], "unrecognized arguments"),
        (["bank", "serve", "--log-level", "loud"], "invalid choice"),
        (["inspect", "--db", "no-such.db"], "no database at"),
        (["inspect", "--store", "sqlite:///no-such.db"], "no database at"),
        (["inspect", "--store", "ftp://x"], "bad store URL"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    """Bad arguments exit 2 with a message that says what is wrong, creating no file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_serve_without_the_service_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without starlette or uvicorn, `wes bank serve` exits 1 naming the extra to install."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["bank", "serve", "--store", "memory"]) == 1
    assert "pip install 'wes-actors[service]'" in capsys.readouterr().err


@pytest.mark.subprocess
def test_serve_with_a_store_that_does_not_answer_exits_1() -> None:
    """A store nobody listens for stops the start at once: exit 1, saying so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        started = time.monotonic()
        done = run("bank", "serve", "--port", "0", "--store", f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 1, done.stderr
    assert "does not answer" in done.stderr
    assert time.monotonic() - started < 20


@pytest.mark.subprocess
def test_serve_on_a_port_in_use_exits_1(tmp_path: Path) -> None:
    """A port another socket listens on: exit 1 (uvicorn logs why)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run("bank", "serve", "--port", str(port), "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1, done.stderr
    assert "address already in use" in done.stderr.lower()


# -- wes inspect ----------------------------------------------------------------------------


async def fill(path: Path) -> None:
    """A bank database: alice 90 and bob 110, as acknowledged by a real node."""
    node = build_node(path)
    async with node:
        bank = Bank(node)
        for name, amount in (("alice", 100), ("bob", 100)):
            await bank.open("ann", name)
            await bank.insert("ann", name, amount)
        await bank.transfer("ann", "alice", "bob", 10)


def test_inspect_lists_keys_versions_tokens_and_states(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`wes inspect --db` prints a header, then one tab-separated line per stored actor."""
    db = tmp_path / "bank.db"
    asyncio.run(fill(db))
    assert main(["inspect", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "KEY\tVERSION\tTOKEN\tSTATE"
    rows = [line.split("\t") for line in lines[1:]]
    assert [(key, version, state) for key, version, _, state in rows] == [
        ("account/alice", "1", '{"balance": 90}'),
        ("account/bob", "1", '{"balance": 110}'),
    ]
    assert all(int(token) > 0 for _, _, token, _ in rows)
    assert captured.err.strip() == "2 actors"


def test_inspect_json_and_prefix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`--json` prints one object per actor; `--prefix` keeps the keys starting with it; a
    sqlite:/// URL works like --db."""
    db = tmp_path / "bank.db"
    asyncio.run(fill(db))
    assert main(["inspect", "--store", f"sqlite:///{db}", "--json", "--prefix", "account/b"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [{k: v for k, v in row.items() if k != "token"} for row in rows] == [
        {"key": "account/bob", "version": 1, "state": {"balance": 110}}
    ]
    assert isinstance(rows[0]["token"], int)
    assert captured.err.strip() == "1 actor"


def test_inspect_shows_undecodable_states(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A stored state that is not JSON is listed as such, not a crash."""
    db = tmp_path / "odd.db"

    async def write() -> None:
        async with wes.SqliteStore(db) as store:
            await store.write([[Write("odd/1", b"\xff\x00", 3, 7)]])

    asyncio.run(write())
    assert main(["inspect", "--db", str(db)]) == 0
    assert "odd/1\t3\t7\t<2 bytes that do not decode" in capsys.readouterr().out
    assert main(["inspect", "--db", str(db), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["state"] is None and "do not decode" in row["error"]


@pytest.mark.parametrize("server", ["redis", "postgres"])
def test_inspect_any_store_url(
    capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, server: str
) -> None:
    """`wes inspect --store URL` lists a Redis or PostgreSQL store too."""
    url = request.getfixturevalue("redis_url" if server == "redis" else "postgres_dsn")
    prefix = f"cli-{uuid.uuid4().hex[:8]}/"
    store: wes.abc.Store = wes.RedisStore(url) if server == "redis" else wes.PostgresStore(url)

    async def write() -> None:
        async with store:
            writes = [Write(f"{prefix}{i}", json.dumps({"n": i}).encode(), 1, 5) for i in range(3)]
            assert await store.write([writes]) == [None]

    asyncio.run(write())
    assert main(["inspect", "--store", url, "--prefix", prefix]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [f'{prefix}{i}\t1\t5\t{{"n": {i}}}' for i in range(3)]


def test_inspect_an_unreachable_store_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A store that cannot be reached: exit 1 with the store's error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert main(["inspect", "--store", f"redis://127.0.0.1:{port}/0"]) == 1
    assert "wes inspect:" in capsys.readouterr().err
