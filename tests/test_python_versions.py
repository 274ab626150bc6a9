"""The supported Pythons: pyproject admits 3.11-3.13, and make refuses an older one clearly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def _requires_python() -> SpecifierSet:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return SpecifierSet(project["requires-python"])


@pytest.mark.parametrize("version", ["3.11.0", "3.12.3", "3.13.0"])
def test_pyproject_admits_supported_python(version: str) -> None:
    """Catches a range that shuts out the Pythons of Ubuntu 24.04 (3.12) or Debian 13 (3.13)."""
    assert version in _requires_python()


def test_pyproject_refuses_python_310() -> None:
    """The code needs 3.11 (tomllib, enum and typing features): 3.10 must not install."""
    assert "3.10.13" not in _requires_python()


def _stub_python(folder: Path, version: tuple[int, int, int]) -> Path:
    """An executable that runs this interpreter but reports `version` as its own."""
    stub = folder / "python-stub"
    fake = f"({version[0]}, {version[1]}, {version[2]}, 'final', 0)"
    stub.write_text(
        "#!/bin/sh\n"
        # make calls `$(PYTHON) -c CODE`: run CODE under the faked version
        f'exec {sys.executable} -c "import sys; sys.version_info = {fake}; '
        f'exec(sys.argv[1])" "$2"\n'
    )
    stub.chmod(0o755)
    return stub


def _make(folder: Path, version: tuple[int, int, int], *args: str) -> subprocess.CompletedProcess:
    """`make ARGS` on a copy of the Makefile, with an interpreter that reports `version`."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, folder / name)
    stub = _stub_python(folder, version)
    return subprocess.run(
        ["make", *args, f"PYTHON={stub}"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_refuses_old_python_before_creating_venv(tmp_path: Path) -> None:
    """Catches a guard that is missing, passes 3.10, or runs only after `python -m venv`."""
    done = _make(tmp_path, (3, 10, 13), "test")
    assert done.returncode != 0
    message = [line for line in done.stderr.splitlines() if "lab3 needs Python" in line]
    assert len(message) == 1, done.stderr
    assert "found 3.10" in message[0] and "3.11" in message[0] and "PYTHON=" in message[0]
    assert not (tmp_path / ".venv").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_guard_passes_supported_python(tmp_path: Path) -> None:
    """The guard itself lets 3.12 through (the stub is only asked the guard's question)."""
    rule = "print-guard:\n\t@$(PYTHON) -c '$(PYTHON_GUARD)'"
    guard = _make(tmp_path, (3, 12, 3), "-s", "--eval", rule, "print-guard")
    assert guard.returncode == 0, guard.stderr
