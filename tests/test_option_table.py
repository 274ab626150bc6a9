"""tests/README.md names a guarding test for every TrainConfig field and every command's flag,
and every test it names exists."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from functools import cache
from pathlib import Path

from lab3.cli import build_parser
from lab3.config import TrainConfig

TESTS = Path(__file__).resolve().parent
README = TESTS / "README.md"


def _rows(heading: str) -> list[list[str]]:
    """The table rows (cells, stripped) of the section under `## heading`."""
    section = README.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


@cache
def _tests_in(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    )


def _missing(guards: str) -> list[str]:
    """The references in a row's last cell that name no test file or no test in it."""
    missing = []
    for ref in guards.split(";"):
        ref = re.sub(r"\s*\(.*\)\s*$", "", ref.strip())  # a trailing remark in brackets
        file, _, test = ref.partition("::")
        path = TESTS / file
        if not path.is_file() or (test and test not in _tests_in(path)):
            missing.append(ref)
    return missing


def test_every_train_config_field_has_a_row_naming_real_tests() -> None:
    rows = {row[0].strip("`"): row[-1] for row in _rows("TrainConfig fields")}
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [f for f in fields if f not in rows] == [], "fields without a row in tests/README.md"
    for field in fields:  # a row for a field still to come (another branch) is not checked
        assert _missing(rows[field]) == [], f"{field}: no such test"


def _flags() -> dict[str, list[str]]:
    """Each command (sub-subcommands joined by a space) and its --flags."""
    found: dict[str, list[str]] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
            elif prefix:
                options = [o for o in action.option_strings if o.startswith("--")]
                found.setdefault(prefix, []).extend(o for o in options if o != "--help")

    walk(build_parser(), "")
    return found


def test_every_flag_of_every_command_has_a_row_naming_real_tests() -> None:
    rows = {(row[0], row[1].strip("`")): row[-1] for row in _rows("Command-line flags")}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unlisted = []
    for command, flags in _flags().items():
        for flag in flags:
            if command == "train" and flag[2:].replace("-", "_") in fields:
                continue  # the TrainConfig table's row guards it
            if (command, flag) not in rows:
                unlisted.append(f"{command} {flag}")
    assert unlisted == [], "flags without a row in tests/README.md"
    for (command, flag), guards in rows.items():
        assert _missing(guards) == [], f"{command} {flag}: no such test"


def test_every_contract_names_real_tests() -> None:
    for contract, guards in (row[:: len(row) - 1] for row in _rows("Contracts")):
        assert _missing(guards) == [], contract
