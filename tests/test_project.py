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


def _pip_lines(path: Path) -> list[str]:
    lines, in_pip = [], False
    for line in path.read_text().splitlines():
        if line.strip() == "- pip:":
            in_pip = True
        elif in_pip and line.strip().startswith("- "):
            lines.append(line.strip()[2:])
    return lines


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def test_environment_yml_installs_pyproject_under_the_constraints() -> None:
    """conda users get what make installs: the project with its dev extra, pinned the same."""
    assert _pip_lines(ROOT / "environment.yml") == ["-c constraints.txt", "-e .[dev]"]


def test_constraints_pin_every_dependency_inside_pyprojects_ranges() -> None:
    """Catches a dependency added to pyproject.toml but not locked (make and CI would then
    install whatever is newest), or a pin outside the range pyproject declares."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / "constraints.txt")
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(text)
        name = _name(requirement.name)
        assert name in pins, f"{name} is not pinned in constraints.txt: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    for library in ("torch", "torchvision"):
        assert not any(r.startswith(f"{library}==") for r in project["dependencies"]), (
            f"{library} pinned exactly in pyproject.toml: pip install -e . would replace a "
            "hosted notebook's PyTorch"
        )


def test_make_installs_from_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -c constraints.txt -e '.[dev]'" in makefile
    assert "$(BIN)/lab3: pyproject.toml constraints.txt" in makefile


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
