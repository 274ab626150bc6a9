"""The docs a student follows stay true: README.md, data/README.md and docs/*.md, read as a new
student uses them.

- every command shown (in code blocks, and `lab3 ...` / `make ...` in backticks) is parsed by
  the real `lab3` parser, and every make target and variable it names is in the Makefile;
- every repository path and results file it names exists;
- every figure of the README's results table, and every number the docs quote from a results
  file or from the profiles, is read back from there (`CLAIMS`: the text each one must contain);
- an explicit option equal to its default is honoured: `lab3/cli.py` never recognises a default
  by its value.

Each check reports every offence at once, with its file, so one run lists what to fix.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import math
import re
import shlex
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab3.cli import build_parser
from lab3.config import make_config
from lab3.data.synthetic import retinopathy
from lab3.formatting import pct

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "data/README.md", *(f"docs/{p.name}" for p in sorted(ROOT.glob("docs/*.md")))]
RESULTS = ROOT / "benchmarks" / "results"
# A path starting with one of these is the repository's; data/ and outputs/ are the user's.
REPO_FOLDERS = ("lab3/", "tests/", "benchmarks/", "docs/", "notebooks/", ".ci/")
REPO_FILES = (
    "Makefile",
    "pyproject.toml",
    "environment.yml",
    "constraints.txt",
    "README.md",
    "data/README.md",
)
LAB3 = ("lab3", ".venv/bin/lab3")
DEPTHS = ("resnet18", "resnet50", "resnet152")
COURSE_TRAIN = 7995  # the course's training images (DESIGN.md), what the docs' epochs assume
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
COMMANDS = ("lab3 ", "make ", ".venv/bin/")
SHELL_OPERATORS = {";", "&&", "||", "|", "(", ")", ">", "<", "&"}


def _text(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def _fenced(text: str, shell_only: bool = False) -> list[str]:
    """The code blocks' contents, dedented (a block inside a list item is indented); with
    `shell_only`, the shell blocks whole and of the others (file trees, listings) only the
    lines that start with a command."""
    blocks = re.findall(r"^([ \t]*)```(\w*)\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL)
    bodies = []
    for _, language, body in blocks:
        body = textwrap.dedent(body)
        if shell_only and language not in SHELL_LANGUAGES:
            body = "\n".join(line for line in body.splitlines() if line.startswith(COMMANDS))
        bodies.append(body)
    return bodies


def _inline(text: str) -> list[str]:
    """The `code spans` of the prose (outside code blocks)."""
    prose = re.sub(r"^([ \t]*)```.*?^\1```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.findall(r"`([^`\n]+)`", prose)


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _commands(doc: str) -> Iterator[tuple[list[str], bool]]:
    """Each simple command of the doc's code blocks and command-like code spans, as words, and
    whether it is a span of the prose (which may name a command without its arguments)."""
    text = _text(doc)
    lines = [
        (line, False)
        for block in _fenced(text, shell_only=True)
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip()
    ]
    lines += [
        (span, True) for span in _inline(text) if re.match(r"(\S+=\S+ )*(make|lab3) ", span + " ")
    ]
    for line, inline in lines:
        command: list[str] = []
        for word in [*_words(line), ";"]:
            if word in SHELL_OPERATORS:
                if command:
                    yield command, inline
                command = []
            else:
                command.append(word)


def _lab3_argv(words: list[str]) -> list[str] | None:
    """The arguments given to lab3 (directly, `python -m lab3` or torchrun's `-m lab3`)."""
    if words[0] in LAB3:
        return words[1:]
    for i in range(len(words) - 1):
        if (
            words[i] == "-m"
            and words[i + 1] == "lab3"
            and words[0].split("/")[-1]
            in (
                "python",
                "torchrun",
            )
        ):
            return words[i + 2 :]
    return None


def _parse_error(argv: list[str]) -> str | None:
    """argparse's complaint about `argv`, or None when the real parser accepts it. Flags must
    be spelled in full: argparse would take `--profil` for `--profile`, a doc should not."""
    parser = build_parser()
    for command in _parsers(parser):
        command.allow_abbrev = False
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exit_:
        if exit_.code:
            return err.getvalue().strip().splitlines()[-1]
    return None


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and all its subcommands' parsers, at every depth (`lab3 data summary`)."""
    found, todo = [], [parser]
    while todo:
        found.append(current := todo.pop())
        for action in current._actions:
            if isinstance(action.choices, dict):
                todo += list(action.choices.values())
    return found


def _makefile() -> tuple[set[str], set[str]]:
    """The Makefile's targets and variables."""
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w.-]+):(?!=)", text, re.MULTILINE))
    variables = set(re.findall(r"^(\w+)\s*[?:]?=", text, re.MULTILINE))
    return targets, variables


def test_every_command_shown_parses_and_every_make_target_exists() -> None:
    """Catches a flag, subcommand, choice or make target a student would type and be refused."""
    targets, variables = _makefile()
    wrong = []
    for doc in DOCS:
        for words, inline in _commands(doc):
            settings = [w.split("=")[0] for w in words if re.fullmatch(r"[A-Z_]+=\S*", w)]
            rest = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]
            if not rest:
                continue
            argv = _lab3_argv(rest)
            if argv is not None:
                error = _parse_error(argv) if argv and not argv[0].startswith("<") else None
                if error and not (inline and "arguments are required" in error):
                    wrong.append(f"{doc}: {shlex.join(words)}: {error}")
            elif rest[0] == "make":
                unknown = [t for t in rest[1:] if t not in targets]
                unknown += [f"variable {v}" for v in settings if v not in variables]
                if unknown:
                    wrong.append(f"{doc}: {shlex.join(words)}: no {', '.join(unknown)} in Makefile")
            elif rest[0].endswith("python") and len(rest) > 1 and rest[1].endswith(".py"):
                if not (ROOT / rest[1]).is_file():
                    wrong.append(f"{doc}: {shlex.join(words)}: no script {rest[1]}")
    assert not wrong, "\n".join(wrong)


def _expand(name: str) -> list[str]:
    """`synthetic.{json,md}` -> both names."""
    match = re.search(r"\{([^}]*)\}", name)
    if match is None:
        return [name]
    return [name[: match.start()] + part + name[match.end() :] for part in match[1].split(",")]


def _results_prefixes() -> set[str]:
    return {p.name.split("_")[0] for p in RESULTS.iterdir() if "_" in p.name}


def _named_files(doc: str) -> Iterator[tuple[str, Path]]:
    """(as written, where it must be) for each repository path and results file the doc names."""
    text = _text(doc)
    words = [w for span in _inline(text) for w in span.split()]
    words += [w for block in _fenced(text) for w in block.split()]
    prefixes = _results_prefixes()
    for word in words:
        word = word.strip("'\"(),;:")
        if "<" in word or "$" in word:
            continue
        for name in _expand(word):
            if name.startswith(REPO_FOLDERS) or name in REPO_FILES:
                yield word, ROOT / name
            elif (
                "/" not in name
                and re.fullmatch(r"[\w*.-]+\.(md|json)", name)
                and name.split("_")[0] in prefixes
            ):
                yield word, RESULTS / name


def test_every_file_and_results_file_named_exists() -> None:
    """Catches a doc pointing at a file that was renamed, removed or never written."""
    missing = [
        f"{doc}: {written}"
        for doc in DOCS
        for written, path in _named_files(doc)
        if not (any(path.parent.glob(path.name)) if "*" in path.name else path.exists())
    ]
    assert not missing, "\n".join(sorted(set(missing)))


# ----------------------------------------------------------------------- numbers quoted


def _results(stem: str) -> dict:
    return json.loads((RESULTS / f"{stem}.json").read_text())


def _notebooks(stem: str) -> dict[str, dict]:
    return {row["notebook"]: row for row in _results(stem)["notebooks"]}


def _depth_column(stem: str, column: str) -> list[float]:
    by_model = {row["model"]: row for row in _results(stem)["depths"]}
    return [by_model[m][column] for m in DEPTHS]


def _readme_table() -> dict[str, dict[str, str]]:
    """The README's results table: results file -> {column: cell}."""
    lines = [line for line in _text("README.md").splitlines() if line.startswith("|")]
    start = next(i for i, line in enumerate(lines) if "results file" in line)
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(header):
            break
        stem = re.search(r"`(\w+)\.md`", cells[0])
        assert stem is not None, f"README results row without its results file: {line}"
        rows[stem[1]] = dict(zip(header, cells, strict=True))
    return rows


def test_the_readme_results_table_is_what_its_files_hold() -> None:
    """Catches a figure typed by hand that its results file does not say (or no longer says)."""
    rows = _readme_table()
    assert len(rows) >= 4
    wrong = []
    for stem, row in rows.items():
        accuracies = dict(zip(DEPTHS, _depth_column(stem, "test_acc_tta"), strict=True))
        total = _notebooks(stem)["all"]
        expected = {
            "ResNet18": pct(accuracies["resnet18"]),
            "ResNet50": pct(accuracies["resnet50"]),
            "ResNet152": pct(accuracies["resnet152"]),
            "notebooks": f"{total['seconds'] / 60:.1f} min",
            "estimate": f"{100 * total['estimate_error']:+.0f} %",
        }
        wrong += [
            f"{stem}: {column} reads {row[column]!r}, the file gives {value!r}"
            for column, value in expected.items()
            if row[column] != value
        ]
    assert not wrong, "\n".join(wrong)


def _recall(stem: str) -> str:
    return " / ".join(f"{100 * r:.0f}" for r in _depth_column(stem, "normal_recall")) + " %"


def _share_range(share: Callable[[dict[str, dict]], float]) -> str:
    values = [100 * share(_notebooks(stem)) for stem in _readme_table()]
    return f"{min(values):.0f}-{max(values):.0f} %"


def _training_share(rows: dict[str, dict]) -> float:
    training = sum(r["seconds"] for name, r in rows.items() if name.startswith("04_train"))
    return training / rows["all"]["seconds"]


def _ablation_share(rows: dict[str, dict]) -> float:
    return rows["02_preprocessing_experiments"]["seconds"] / rows["all"]["seconds"]


def _recipe_saving() -> str:
    """How much less the current quick epochs train than the recipe before 2026-12-03, at the
    same cost per epoch (the bf16 run's)."""
    old = {row["model"]: row["epochs"] for row in _results("recipe_cpu_default")["rows"]}
    stem = "workbook_cpu_bf16_amd_shares"
    now = dict(zip(DEPTHS, _depth_column(stem, "epochs"), strict=True))
    cost = dict(zip(DEPTHS, _depth_column(stem, "median_epoch_s"), strict=True))
    saving = 1 - sum(now[m] * cost[m] for m in DEPTHS) / sum(old[m] * cost[m] for m in DEPTHS)
    words = "about a third less" if 0.28 <= saving <= 0.38 else f"{saving:.0%} less"
    epochs = " / ".join(str(old[m]) for m in DEPTHS)
    return f"({epochs} epochs; the current {' / '.join(str(now[m]) for m in DEPTHS)} train {words}"


def _ablation_gain(stem: str) -> str:
    row = next(
        r for r in _results(stem)["ablation"] if r["variant"] == "tight crop" and r["views"] == 1
    )
    return (
        f"+{100 * row['gain']:.1f} (+{100 * row['gain_low']:.1f} to +{100 * row['gain_high']:.1f})"
    )


def _full_epochs(processes: int) -> str:
    """The full profile's epochs per depth on the course's training set, with N processes
    (each makes 1/N of an epoch's steps; the loop hands the floor all processes' steps)."""
    epochs = []
    for model in DEPTHS:
        config = make_config("full", model=model)
        per_process = COURSE_TRAIN // processes // config.batch_size
        epochs.append(config.planned_epochs(per_process * processes))
    return " / ".join(map(str, epochs))


def _floor_matters_below() -> str:
    """The training-set sizes under which the full profile's step floor adds epochs."""
    sizes = []
    for model in DEPTHS:
        config = make_config("full", model=model)
        sizes.append(config.min_steps * config.batch_size / config.epochs)
    return f"{round(min(sizes), -2):,.0f}-{round(max(sizes), -2):,.0f}"


def _full_floor() -> str:
    config = make_config("full")
    return f"{config.min_steps:,} batches of {config.batch_size} images seen"


def _synthetic(path: str) -> float:
    value: object = _results("synthetic")
    for key in path.split("."):
        value = value[key]  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def _synthetic_resnet(preprocess: str, size: int) -> str:
    row = next(
        r
        for r in _results("synthetic")["difficulty"]["resnet18"]
        if r["preprocess"] == preprocess and r["image_size"] == size
    )
    p, n = row["test_accuracy"], row["test_images"]
    return f"{p:.3f} +- {math.sqrt(p * (1 - p) / n):.3f}"


def _generation_seconds() -> str:
    return f"about {5 * round(_synthetic('speed.all_cores_wall_s') / 5)} s"


def _retinopathy(column: str, digits: int, scale: float = 1.0) -> str:
    rows = {r["model"]: r for r in _results("retinopathy_quick_cpu")["results"]}
    return " / ".join(f"{scale * rows[m][column]:.{digits}f}" for m in DEPTHS)


def _retinopathy_epochs_now() -> str:
    """The current quick profile's epochs on the synthetic retinopathy default (its validation
    split is carved out of the training images)."""
    train = round(retinopathy.DEFAULT_TRAIN * 0.85)
    epochs = []
    for model in DEPTHS:
        config = make_config("quick", model=model)
        epochs.append(config.planned_epochs(train // config.batch_size))
    return " / ".join(map(str, epochs))


def _resnet50_at_five_epochs() -> str:
    """ResNet50's bf16 seeds at 5 epochs: the range of their accuracies, their lowest recall."""
    rows = [
        r
        for r in _results("recipe_cpu_resnet50_epochs")["rows"]
        if r["epochs"] == 5 and "fp32" not in r["run"]
    ]
    accuracies = [100 * r["test_acc_tta"] for r in rows]
    recall = min(100 * r["normal_recall"] for r in rows)
    seeds = {3: "three"}.get(len(rows), str(len(rows)))
    return (
        f"it scored {min(accuracies):.1f}-{max(accuracies):.1f} % over {seeds} seeds and its "
        f"normal recall fell to {recall:.0f} %"
    )


def _quick_recipe() -> str:
    """The README's one-line summary of the default data and the quick profile."""
    from lab3.data import synthetic

    configs = [make_config("quick", model=m) for m in DEPTHS]
    first = configs[0]
    assert first.preprocess == "tightcrop" and first.optimizer == "adamw"
    counts = (synthetic.DEFAULT_TRAIN, synthetic.DEFAULT_VALID, synthetic.DEFAULT_TEST)
    return (
        f"({' / '.join(f'{n:,}' for n in counts)} images; quick profile: {first.image_size} px, "
        f"tight crop, AdamW, {' / '.join(str(c.epochs) for c in configs)} epochs, "
        f"{first.tta}-view TTA)"
    )


def _slower_host() -> str:
    ratio = (
        _notebooks("workbook_cpu_fp32_amd")["all"]["seconds"]
        / _notebooks("workbook_cpu_fp32_amd_b")["all"]["seconds"]
    )
    return f"one took {ratio:.1f}x the other"


def _synthetic_pair(column: str, fmt: str, unit: str = "") -> str:
    """A column of the synthetic benchmark's tight-crop and whole-frame runs at 48 px (or the
    tight crop at 96 and 48 px for the training time), "a vs b" as the doc writes it."""
    rows = {
        (r["preprocess"], r["image_size"]): r
        for r in _results("synthetic")["difficulty"]["resnet18"]
    }
    first, second = (
        (("tightcrop", 96), ("tightcrop", 48)) if unit else (("tightcrop", 48), ("none", 48))
    )
    a, b = (format(rows[key][column], fmt) for key in (first, second))
    return f"{a}{unit} vs {b}{unit}"


def _devset_leads(stem: str, split: str, runs: tuple[str, ...] = DEPTHS) -> str:
    """The runs' balanced-accuracy leads over the classical baseline on `split`, "a / b / c"."""
    rows = {row["run"]: row for row in _results(stem)["rows"]}
    return " / ".join(rows[run][f"{split}_bal_vs_classical"].split(" (")[0] for run in runs)


@dataclass(frozen=True)
class Claim:
    """A number a doc quotes: the text it must contain, made from where the number comes from."""

    doc: str
    text: Callable[[], str]


CLAIMS = [
    Claim("README.md", lambda: f"{_recall('workbook_cpu_bf16_amd_shares')} with bf16"),
    Claim("README.md", lambda: f"{_recall('workbook_cpu_fp32_forced_amd_shares')} forced to"),
    Claim("README.md", lambda: f"{_recall('workbook_cpu_fp32_amd_b')} in the last two rows"),
    Claim("README.md", lambda: f"{_recall('workbook_cpu_fp32_amd')} in the last two rows"),
    Claim("README.md", lambda: f"training notebooks took {_share_range(_training_share)}"),
    Claim("README.md", lambda: f"notebook 02's ablation {_share_range(_ablation_share)}"),
    Claim("README.md", _recipe_saving),
    Claim("README.md", _resnet50_at_five_epochs),
    Claim("README.md", _slower_host),
    Claim("README.md", _quick_recipe),
    Claim("README.md", lambda: f"224 px, {_full_epochs(1)} epochs"),
    Claim("README.md", lambda: f"trains the same {_full_epochs(4)} epochs"),
    Claim("README.md", lambda: f"Its step floor, {_full_floor()}"),
    Claim("README.md", lambda: f"under {_floor_matters_below()} training images"),
    Claim("docs/distributed.md", lambda: f"trains {_full_epochs(1)} epochs (ResNet18 / 50 / 152)"),
    Claim("docs/distributed.md", lambda: f"trains {_full_epochs(4)} epochs (ResNet18 / 50 / 152)"),
    Claim("docs/distributed.md", lambda: f"under {_floor_matters_below()} training images"),
    Claim(
        "docs/distributed.md",
        lambda: f"keeps it at 512 ({COURSE_TRAIN // 16 // 32} steps an epoch)",
    ),
    Claim(
        "docs/distributed.md",
        lambda: f"(`--min-steps`, {make_config('full').min_steps:,} in the full profile)",
    ),
    Claim(
        "docs/synthetic.md",
        lambda: (
            f"{_ablation_gain('workbook_cpu_bf16_amd_shares').replace(' (', ' points (', 1)}"
            " in the bf16"
        ),
    ),
    Claim(
        "docs/synthetic.md",
        lambda: f"{_ablation_gain('workbook_cpu_fp32_forced_amd_shares')} in its float32",
    ),
    Claim("docs/synthetic.md", lambda: f"default set in {_generation_seconds()} on 2 cores"),
    Claim("data/README.md", lambda: f"{_generation_seconds()} on 2 CPU cores"),
    Claim(
        "docs/synthetic.md",
        lambda: (
            f"| {_synthetic('speed.all_cores_img_per_s'):.0f} "
            f"({_synthetic('speed.all_cores_wall_s'):.1f} s) |"
        ),
    ),
    Claim("docs/synthetic.md", lambda: f"| {_synthetic('speed.one_core_img_per_s.median'):.0f} |"),
    Claim("docs/synthetic.md", lambda: f"| **{_synthetic('difficulty.feature_baseline'):.3f}** |"),
    Claim(
        "docs/synthetic.md", lambda: f"| {_synthetic('difficulty.latent_ceiling_global_mid'):.3f} |"
    ),
    Claim("docs/synthetic.md", lambda: f"| {_synthetic('difficulty.latent_ceiling'):.3f} |"),
    Claim("docs/synthetic.md", lambda: f"| {_synthetic_resnet('none', 48)} |"),
    Claim(
        "docs/synthetic.md", lambda: f"normal-cell recall {_synthetic_pair('normal_recall', '.2f')}"
    ),
    Claim("docs/synthetic.md", lambda: f"({_synthetic_pair('train_seconds', '.0f', ' s')})"),
    Claim("docs/synthetic.md", lambda: f"| **{_synthetic_resnet('tightcrop', 48)}** |"),
    Claim("docs/synthetic.md", lambda: f"| {_synthetic_resnet('tightcrop', 96)} |"),
    Claim(
        "docs/beyond_the_course.md",
        lambda: f"took {_results('retinopathy_quick_cpu')['notebook_minutes']} min of notebooks",
    ),
    Claim(
        "docs/beyond_the_course.md",
        lambda: f"test accuracy {_retinopathy('test_acc', 1, 100)} %",
    ),
    Claim(
        "docs/beyond_the_course.md",
        lambda: f"quadratic kappa {_retinopathy('kappa_quadratic', 3)} for",
    ),
    Claim("docs/beyond_the_course.md", lambda: f"so {_retinopathy('epochs', 0)} epochs there"),
    Claim("docs/beyond_the_course.md", lambda: f"{_retinopathy_epochs_now()} epochs) and has not"),
    Claim(
        "README.md",
        lambda: f"took {_notebooks('workbook_devset_cpu_fp32_amd')['all']['seconds'] / 60:.1f} min",
    ),
    Claim(
        "README.md",
        lambda: (
            " / ".join(
                f"{100 * a:.1f}"
                for a in _depth_column("workbook_devset_cpu_fp32_amd", "test_acc_tta")
            )
            + " % on test"
        ),
    ),
    Claim(
        "README.md",
        lambda: f"on test by {_devset_leads('devset_cpu_fp32_workbook', 'test')} points",
    ),
    Claim(
        "README.md",
        lambda: f"on valid by {_devset_leads('devset_cpu_fp32_workbook', 'valid')}, inside",
    ),
    Claim(
        "README.md",
        lambda: (
            f"both splits ({_devset_leads('devset_cpu_fp32_longer', 'valid', ('r18_48_e33',))} "
            f"valid, {_devset_leads('devset_cpu_fp32_longer', 'test', ('r18_48_e33',))} test)"
        ),
    ),
]


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: f"{c.doc}:{CLAIMS.index(c)}")
def test_every_number_quoted_is_read_back_from_its_source(claim: Claim) -> None:
    """Catches a number in the docs that differs from the results file (or the profile) it
    comes from: the doc edited by hand, or the file re-measured without the doc."""
    expected = claim.text()
    prose = " ".join(_text(claim.doc).split())  # line breaks inside a sentence do not matter
    assert expected in prose, f"{claim.doc} should say {expected!r}"


# ------------------------------------------------------------- explicit options honoured


def _options() -> list[argparse.Action]:
    """Every option of every command (subcommands' included)."""
    return [a for p in _parsers(build_parser()) for a in p._actions if a.option_strings]


def test_an_explicit_option_equal_to_its_default_is_honoured() -> None:
    """Catches the command line telling "not given" from "given" by the value (`args.size !=
    450`): then `--size 450` with another kind's default was silently replaced. A command may
    compare an option with a constant only where the option is a choice (`--kind`)."""
    source = (ROOT / "lab3" / "cli.py").read_text()
    defaults = {a.dest: a.default for a in _options() if a.default not in (None, False)}
    choices = {a.dest for a in _options() if a.choices} | {"command", "data_command"}
    wrong = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or not isinstance(node.ops[0], ast.Eq | ast.NotEq):
            continue
        sides = [node.left, *node.comparators]
        options = [s.attr for s in sides if isinstance(s, ast.Attribute) and _is_args(s)]
        constants = [s.value for s in sides if isinstance(s, ast.Constant) and s.value is not None]
        for option in options:
            if constants and option not in choices:
                wrong.append(f"lab3/cli.py:{node.lineno}: {ast.unparse(node)}")
            elif option in defaults and defaults[option] in constants:
                wrong.append(f"lab3/cli.py:{node.lineno}: {ast.unparse(node)} (its default)")
    assert not wrong, "\n".join(wrong)


def _is_args(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id == "args"
