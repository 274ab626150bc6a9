"""Project files agree with each other: environment.yml and pyproject name the same packages."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    pip_lines = []
    in_pip = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.strip() == "- pip:":
            in_pip = True
            continue
        if in_pip and line.strip().startswith("- "):
            pip_lines.append(line.strip()[2:])
    listed = {_name(r) for r in pip_lines if not r.startswith("-e")}
    assert listed == wanted
    pins = {r for r in pip_lines if "==" in r}
    assert pins == {r for r in project["dependencies"] if "==" in r}
    assert any(r.startswith("-e .") for r in pip_lines)


def test_cli_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lab3", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("synth", "data", "train", "evaluate", "predict", "score", "run", "report"):
        assert command in out


def test_bad_data_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    result = subprocess.run(
        [sys.executable, "-m", "lab3", "data", "summary", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        len(result.stderr.strip().splitlines()) == 1 and "no known dataset layout" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_data_summary_on_synthetic(small_synthetic: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab3",
            "data",
            "summary",
            "--data",
            str(small_synthetic),
            "--image-size",
            "32",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "layout: course" in out and "train" in out and "cache (tightcrop,resize:32)" in out
    assert "160x160 RGB" in out
