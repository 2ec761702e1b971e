"""Running a test module as a program of its own (a worker the test starts, kills or freezes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: `tests` is importable from here


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs `module` (e.g. `tests.system.fault_worker`) with `args`;
    start it with `cwd=ROOT` so the worker imports `tests.support` as the tests do."""
    return [sys.executable, "-m", module, *args]


def run_python(script: str | Path, cwd: Path) -> str:
    """Run a Python script to its end in `cwd` (within a minute); its output, asserting that
    it exited 0."""
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
