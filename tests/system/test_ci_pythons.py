"""`.ci/other-pythons`, which runs the suite on every other supported CPython: a version the
machine lacks fails the run by name instead of being passed over."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.programs import ROOT

pytestmark = pytest.mark.subprocess

SCRIPT = ROOT / ".ci" / "other-pythons"


def run(*versions: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *versions], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_missing_python_is_reported_and_fails() -> None:
    """A version no interpreter on the machine provides is named MISSING, and the run fails."""
    done = run("3.99")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Python 3.99: MISSING (not on this machine)" in done.stdout
