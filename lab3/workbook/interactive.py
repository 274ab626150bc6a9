"""The workbook as a student steps through it in JupyterLab (`lab3 lab`, `make lab`).

The student works on copies of the notebooks inside one run folder, `outputs/lab/notebooks/`,
never on the tracked ones in `notebooks/`: what they run, edit and save stays beside the
figures, runs and submissions it made, the repository's notebooks stay free of outputs whatever
the student does, and `lab3 report --run outputs/lab` reads the notebooks exactly as they were
run (the same layout as a `lab3 run` folder, with 04 run once for every depth).

Each copy's parameters cell names the run folder and the data; an existing copy is never
overwritten, so `make lab` again reopens the student's work. Mistakes a notebook user can make
(a wrong `data_dir`, a notebook run before the one it needs) end in one sentence, not a
traceback (`short_errors`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

from lab3.config import COURSE_MODELS, DEFAULT_PROFILE
from lab3.data.layouts import DEFAULT_DATA, DEFAULT_SPLIT_MODE, Layout, load_layout
from lab3.errors import UserError
from lab3.fileio import write_json_atomic
from lab3.workbook.folders import ALL_DEPTHS, RECORD, read_record
from lab3.workbook.runner import NOTEBOOKS, TRAIN_NOTEBOOK, _check_arguments, _sources

LAB_RUN = Path("outputs") / "lab"  # the student's run folder (`lab3 lab --run` picks another)
# a parameters-cell line: name = value  # comment
_ASSIGNMENT = re.compile(r"^(?P<name>\w+) = (?P<value>.*?)(?P<comment>\s+#.*)?$")


def prepare_lab(
    data: str | Path,
    profile: str = DEFAULT_PROFILE,
    models: str | Sequence[str] = COURSE_MODELS,
    run_dir: str | Path = LAB_RUN,
    notebooks_dir: str | Path | None = None,
) -> Path:
    """The student's run folder with a copy of each notebook whose parameters point at it and
    at `data`; copies already there are kept (they hold the student's work). A folder prepared
    for other data, profile or depths is refused: its runs would be mixed with new ones."""
    names = _check_arguments(profile, models)
    sources = _sources(notebooks_dir)
    data_dir = load_layout(data).root  # a wrong folder: one line before anything is written
    run = Path(run_dir).expanduser().resolve()
    wanted = {"data": str(data_dir), "profile": profile, "models": names}
    if (run / RECORD).is_file():
        _check_same(run, read_record(run), wanted)
    else:
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / RECORD, {**wanted, "device": "auto", "interactive": True})
    folder = run / "notebooks"
    folder.mkdir(exist_ok=True)
    values = {**wanted, "models": ",".join(names), "run_dir": str(run), "data_dir": str(data_dir)}
    for name in NOTEBOOKS:
        copy = folder / f"{name}.ipynb"
        if not copy.is_file():
            nb = nbformat.read(sources[name], as_version=4)
            parameters = {**values, **({"model": ALL_DEPTHS} if name == TRAIN_NOTEBOOK else {})}
            set_parameters(nb, parameters)
            nbformat.write(nb, copy)
    return run


def _check_same(run: Path, record: dict[str, Any], wanted: dict[str, Any]) -> None:
    have = {"data": record["data"], "profile": record["profile"], "models": record["models"]}
    changed = [f"{k} {have[k]!r}, not {wanted[k]!r}" for k in wanted if have[k] != wanted[k]]
    if changed:
        raise UserError(
            f"this lab folder was prepared with {'; '.join(changed)}: choose another folder "
            "(lab3 lab --run, make lab LAB=...) or delete this one",
            run,
        )


def set_parameters(nb: nbformat.NotebookNode, values: dict[str, Any]) -> None:
    """Give the parameters cell's variables these values, keeping each line's comment; names
    the cell does not assign are left out (03 takes no split mode, for example)."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = []
    for line in cell.source.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and match["name"] in values:
            comment = match["comment"] or ""
            line = f"{match['name']} = {json.dumps(values[match['name']])}{comment}"
        lines.append(line)
    cell.source = "\n".join(lines)


def notebook_path(run: Path, name: str = NOTEBOOKS[0]) -> Path:
    return run / "notebooks" / f"{name}.ipynb"


def jupyter_command(run: Path, extra: Sequence[str] = ()) -> list[str]:
    """JupyterLab rooted where the student reaches both the tracked notebooks and the runs (the
    current folder, or the run's parent when the run lies elsewhere), opening notebook 01 of
    the run. As root (a container, a cloud box) Jupyter refuses to start without --allow-root."""
    cwd = Path.cwd().resolve()
    root = cwd if run.is_relative_to(cwd) else run.parent
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return [*command, *extra, str(notebook_path(run).relative_to(root))]


def open_layout(
    data_dir: str | Path, split_mode: str = DEFAULT_SPLIT_MODE, seed: int = 0
) -> Layout:
    """The dataset of the parameters cell, or one sentence saying which parameter to change."""
    try:
        return load_layout(data_dir, split_mode=split_mode, seed=seed)
    except UserError as err:
        detail = str(err).removeprefix(f"{Path(data_dir).expanduser()}: ")
        detail = detail.split("; pass --data", 1)[0]
        raise UserError(
            f"data_dir = {str(data_dir)!r} is not a dataset lab3 can read ({detail}); set "
            "data_dir in this notebook's parameters cell (the first code cell) to your dataset "
            f"folder, or run `make lab`, which makes the default {DEFAULT_DATA}"
        ) from None


def short_errors() -> None:
    """In a Jupyter kernel, show a `UserError` as its one sentence, not a traceback: it is a
    mistake the student fixes (a parameter, a notebook to run first), not a bug to debug."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell: Any, etype: type, value: BaseException, tb: Any, **_: Any) -> list[str]:
        lines = [f"\x1b[31m{etype.__name__}: {value}\x1b[0m"]
        shell._showtraceback(etype, value, lines)  # IPython leaves the showing to the handler
        return lines

    shell.set_custom_exc((UserError,), handler)
