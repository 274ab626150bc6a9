"""Every allowed value, default and the default data folder is written once, and every reader
takes it from there: the command line's choices and defaults, the runner's, the lab's and the
bench's defaults, the one check of a profile name and the one parser of a model list.

A second copy of a choice list, of the course's depths or of the data folder anywhere in lab3/
fails `test_each_list_and_the_data_folder_is_written_once`, naming where it is.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab3 import cli
from lab3.bench import BenchSettings
from lab3.config import (
    CHOICES,
    COURSE_MODELS,
    DEFAULT_PROFILE,
    MODEL_NAMES,
    PROFILES,
    TrainConfig,
    make_config,
    parse_models,
)
from lab3.data import synthetic
from lab3.data.layouts import DEFAULT_DATA, DEFAULT_SPLIT_MODE, SPLIT_MODES
from lab3.data.preprocess import AUGMENTATIONS
from lab3.errors import UserError
from lab3.workbook import folders, interactive, runner
from lab3.workbook.ablation import ABLATION

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lab3"
# the lists a second literal copy of which is an offence, wherever it is
LISTS = {*CHOICES.values(), SPLIT_MODES, COURSE_MODELS, AUGMENTATIONS}


def _parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command's parser with its name (`lab3 data summary` included)."""
    todo = [("lab3", parser)]
    while todo:
        name, current = todo.pop()
        yield name, current
        for action in current._actions:
            if isinstance(action.choices, dict):
                todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]


def _options() -> list[tuple[str, argparse.Action]]:
    return [
        (name, action)
        for name, parser in _parsers(cli.build_parser())
        for action in parser._actions
        if action.option_strings
    ]


def test_the_command_lines_choices_are_the_configs() -> None:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    wrong = []
    for command, action in _options():
        if action.dest == "profile" and action.choices is not None:
            expected = sorted(PROFILES)
        elif action.dest in CHOICES:
            expected = CHOICES[action.dest]
        elif action.dest in fields and action.choices is not None:
            expected = None  # a setting with choices of its own belongs in CHOICES
        else:
            continue
        if action.choices != expected:
            wrong.append(f"{command} {action.option_strings[0]}: {action.choices}")
    assert not wrong, "\n".join(wrong)
    assert set(CHOICES) <= fields
    assert CHOICES["split_mode"] is SPLIT_MODES


def _literals(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` but docstrings (an example there is no second definition)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return (node for node in ast.walk(tree) if id(node) not in docstrings)


def _strings(node: ast.AST) -> tuple[str, ...] | None:
    """The strings of a tuple or list literal of strings alone, else None."""
    if not isinstance(node, ast.Tuple | ast.List) or len(node.elts) < 2:
        return None
    if not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return None
    return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]


def _copies_in(source: str) -> list[tuple[object, int]]:
    """(value, line) of each literal of `source` that writes the data folder, the course's
    depths as one string, or one of LISTS."""
    course = ",".join(COURSE_MODELS)
    found: list[tuple[object, int]] = []
    for node in _literals(ast.parse(source)):
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and (DEFAULT_DATA in text or course in text):
            found.append((text, node.lineno))
        if _strings(node) in LISTS:
            found.append((_strings(node), node.lineno))
    return found


def test_each_list_and_the_data_folder_is_written_once() -> None:
    found = [
        (path.relative_to(ROOT).as_posix(), value, line)
        for path in sorted(PACKAGE.rglob("*.py"))
        for value, line in _copies_in(path.read_text(encoding="utf-8"))
    ]
    homes = {("lab3/config.py", values) for values in CHOICES.values() if values != SPLIT_MODES}
    homes |= {("lab3/data/layouts.py", SPLIT_MODES), ("lab3/data/layouts.py", DEFAULT_DATA)}
    homes |= {("lab3/data/preprocess.py", AUGMENTATIONS)}
    written = "\n".join(f"{where}:{line}: {value!r}" for where, value, line in found)
    assert sorted(((where, value) for where, value, _ in found), key=repr) == sorted(
        homes, key=repr
    ), written


def test_a_copy_is_found() -> None:
    """The search sees a list, the data folder and an f-string's part, and skips docstrings."""
    source = (
        f'"""{DEFAULT_DATA} in a docstring is an example."""\n'
        'SPLITS = ("random", "stratified", "subject")\n'
        f'HELP = f"default {DEFAULT_DATA} ({{1}})"\n'
        'MODELS = "resnet18,resnet50,resnet152"\n'
    )
    assert sorted(_copies_in(source), key=lambda copy: copy[1]) == [
        (SPLIT_MODES, 2),
        (f"default {DEFAULT_DATA} (", 3),
        ("resnet18,resnet50,resnet152", 4),
    ]


def test_the_defaults_are_read_from_one_place() -> None:
    config = TrainConfig()
    assert (config.data, config.profile, config.split_mode) == (
        DEFAULT_DATA,
        DEFAULT_PROFILE,
        DEFAULT_SPLIT_MODE,
    )
    assert DEFAULT_PROFILE in PROFILES and DEFAULT_SPLIT_MODE in SPLIT_MODES
    assert make_config().profile == DEFAULT_PROFILE
    assert synthetic.DEFAULT_OUT == Path(DEFAULT_DATA), "lab3 synth writes what lab3 reads"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"\nDEFAULT_DATA := {DEFAULT_DATA}\n" in makefile, "make reads lab3's default folder"
    assert makefile.count(DEFAULT_DATA) == 1, "the Makefile names the default folder once"
    assert set(COURSE_MODELS) <= set(MODEL_NAMES)
    # `lab3 run` starts a run with the runner's own defaults
    signature = inspect.signature(runner.run_workbook).parameters
    run = {name: signature[name].default for name in cli.RUN_DEFAULTS}
    assert {**run, "models": ",".join(run["models"])} == cli.RUN_DEFAULTS
    lab = inspect.signature(interactive.prepare_lab).parameters
    assert (lab["profile"].default, lab["models"].default) == (DEFAULT_PROFILE, COURSE_MODELS)


def _defaults(command: str) -> dict[str, object]:
    return {a.dest: a.default for name, a in _options() if name == f"lab3 {command}"}


def test_the_command_lines_defaults_are_the_ones_it_calls_with() -> None:
    bench = _defaults("bench")
    for field in dataclasses.fields(BenchSettings):
        expected = field.default
        if field.name == "models":
            expected = ",".join(COURSE_MODELS)
        assert bench[field.name] == expected, field.name
    lab = _defaults("lab")
    assert {k: lab[k] for k in ("data", "profile", "models")} == {
        k: cli.RUN_DEFAULTS[k] for k in ("data", "profile", "models")
    }
    assert _defaults("data summary")["data"] == DEFAULT_DATA
    assert _defaults("data summary")["profile"] == _defaults("train")["profile"] == DEFAULT_PROFILE


def test_the_ablation_budget_is_laid_over_each_profile() -> None:
    """ABLATION is no second set of defaults: one entry per profile, of TrainConfig settings."""
    assert set(ABLATION) == set(PROFILES)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(set(budget) <= fields for budget in ABLATION.values())


def test_a_profile_name_is_checked_in_one_place() -> None:
    message = f"unknown profile 'huge'; choose one of {', '.join(PROFILES)}"
    for check in (lambda: make_config("huge"), lambda: runner._check_arguments("huge", "resnet18")):
        with pytest.raises(UserError) as err:
            check()
        assert str(err.value) == message
    assert runner._check_arguments("tiny", "resnet18") == ["resnet18"]


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (" ResNet18, resnet50 ,", ["resnet18", "resnet50"]),
        (["resnet152 ", "RESNET18"], ["resnet152", "resnet18"]),
        ("", f"no models given; pass e.g. {','.join(COURSE_MODELS)}"),
        ([" ", ""], f"no models given; pass e.g. {','.join(COURSE_MODELS)}"),
        ("resnet18,resnet19", f"unknown model 'resnet19'; choose from {', '.join(MODEL_NAMES)}"),
        (
            "resnet18,ResNet18",
            "a model is listed twice in resnet18,resnet18; list each depth once",
        ),
    ],
)
def test_a_model_list_is_parsed_in_one_place(models: str | list[str], expected: object) -> None:
    readers = [
        parse_models,
        folders.parse_models,
        lambda m: runner._check_arguments(DEFAULT_PROFILE, m),
        lambda m: list(BenchSettings(models=m).models),
    ]
    if "no models given" in str(expected):
        readers.pop()  # the bench, given none, times the data pipeline alone
    for read in readers:
        if isinstance(expected, list):
            assert read(models) == expected
        else:
            with pytest.raises(UserError) as err:
                read(models)
            assert str(err.value) == expected
    assert folders.parse_models is parse_models, "the notebooks' name is the same function"


def test_the_bench_times_no_model_when_told_none() -> None:
    assert BenchSettings(models="none").models == ()
    assert BenchSettings(models=()).models == ()
    assert BenchSettings(models="resnet50").models == ("resnet50",)
