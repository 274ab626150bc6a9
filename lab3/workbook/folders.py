"""The layout of one workbook run folder, its record, and the notebooks' models parameter.

Kept apart from `lab3.workbook.runner` (which executes notebooks) so that what reads a run
folder, the notebooks, `results` and `ablation`, does not import the notebook machinery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab3.config import parse_models  # the notebooks call it here: folders.parse_models(models)
from lab3.errors import UserError

RECORD = "workbook.json"  # the run's parameters and finished notebooks
# a depth trained from ImageNet weights (the `pretrained` parameter) runs in runs/<model>-imagenet
PRETRAINED_SUFFIX = "-imagenet"
ALL_DEPTHS = "all"  # notebook 04's `model` in JupyterLab: every depth of `models` in turn


@dataclass(frozen=True)
class WorkbookPaths:
    """The folders of one workbook run; every notebook writes only below `root`."""

    root: Path

    @classmethod
    def at(cls, run_dir: str | Path) -> WorkbookPaths:
        """The layout of the run folder `run_dir` (absolute; nothing is created)."""
        return cls(Path(run_dir).expanduser().resolve())

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions"

    @property
    def ablation(self) -> Path:
        return self.root / "ablation"

    def run(self, model: str) -> Path:
        return self.runs / model

    def pretrained_run(self, model: str) -> Path:
        """Where `model` trained from ImageNet weights goes, beside its from-scratch run."""
        return self.runs / pretrained_name(model)


def pretrained_name(model: str) -> str:
    """The run name of `model` trained from ImageNet weights: 'resnet18' -> 'resnet18-imagenet'."""
    return f"{model}{PRETRAINED_SUFFIX}"


def workbook_paths(run_dir: str | Path) -> WorkbookPaths:
    """The run folder's layout, created where missing (a notebook may run on its own)."""
    paths = WorkbookPaths.at(run_dir)
    for folder in (paths.figures, paths.runs, paths.submissions):
        folder.mkdir(parents=True, exist_ok=True)
    return paths


def depths_to_train(models: str | Sequence[str], model: str) -> list[str]:
    """Notebook 04's depths: the one `lab3 run` passes as `model`, or with `model = "all"` (its
    default in JupyterLab) every depth of `models` in turn, so no code is edited between them."""
    return parse_models(models) if model.strip().lower() == ALL_DEPTHS else parse_models(model)


def read_record(run: Path) -> dict[str, Any]:
    """A run's workbook.json: its parameters and the notebooks that finished."""
    path = run / RECORD
    if not path.is_file():
        raise UserError(
            f"no {RECORD}: not a run folder of `lab3 run`; pass one such as outputs/<run>", run
        )
    try:
        record = json.loads(path.read_text())
        record["data"], record["profile"], record["models"] = (
            str(record["data"]),
            str(record["profile"]),
            list(record["models"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"unreadable run record ({type(err).__name__}); start a new run instead", path
        ) from None
    record.setdefault("device", "auto")
    record.setdefault("notebooks", [])
    return record
