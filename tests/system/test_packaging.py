"""The distribution: the wheel builds, passes `twine check`, and installs and runs in a fresh
virtual environment with none of the development tree on its path."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.support.programs import ROOT

pytestmark = pytest.mark.subprocess

BUILD_TIMEOUT = 240.0  # seconds: an isolated build fetches setuptools first


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and sdist `python -m build` makes of the repository."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    return out


def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    """Both distributions build and their metadata renders (`twine check --strict`)."""
    files = sorted(dist.glob("wes_actors-*"))
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    run(sys.executable, "-m", "twine", "check", "--strict", *files, cwd=dist)


def test_wheel_metadata_states_license_and_pythons(dist: Path) -> None:
    """The wheel says its license by SPDX expression, ships the license text, and lists
    every Python that `requires-python` and CI claim."""
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    for version in ("3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {version}" in text
    assert "wes/py.typed" in names
    assert all(f"wes/bank/static/live.{ext}" in names for ext in ("html", "css", "js"))


def test_wheel_installs_and_runs_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    """Installed alone in a new virtual environment, the wheel imports, and `wes --help`
    works: nothing it needs at start-up comes from an extra or the repository."""
    [wheel] = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel, cwd=tmp_path)
    where = run(python, "-c", "import wes; print(wes.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(venv), where
    assert "bank" in run(venv / "bin" / "wes", "--help", cwd=tmp_path)
