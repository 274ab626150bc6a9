"""What notebook 04 does: train each depth it is given in turn, watched live in JupyterLab.

`lab3 run` executes the notebook once per depth (papermill passes one `model`); a student in
JupyterLab runs it once with the default `model = "all"` and gets every depth of `models`.
Each depth trains through `fit_or_resume`, so running the notebook again reuses the depths that
finished and continues the one that was interrupted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lab3.config import TrainConfig, make_config
from lab3.engine.resume import finished_result, fit_or_resume
from lab3.engine.run_folder import RunResult
from lab3.errors import UserError
from lab3.formatting import pretty_model_name
from lab3.workbook import live
from lab3.workbook.folders import WorkbookPaths


def configs(
    profile: str,
    depths: Sequence[str],
    paths: WorkbookPaths,
    pretrained: bool = False,
    **settings: Any,
) -> dict[str, TrainConfig]:
    """Each depth's settings, its run folder `runs/<model>` (`runs/<model>-imagenet` when
    `pretrained`: from ImageNet weights, outside the course's rules)."""
    out = paths.pretrained_run if pretrained else paths.run
    extra = {"init": "imagenet"} if pretrained else {}
    return {m: make_config(profile, model=m, out=str(out(m)), **extra, **settings) for m in depths}


def settings_table(configs: Mapping[str, TrainConfig]) -> pd.DataFrame:
    """The settings of every depth side by side, one column per depth."""
    return pd.DataFrame({m: c.to_dict() for m, c in configs.items()}).astype(str)


def train_depths(configs: Mapping[str, TrainConfig], nproc: int = 1) -> dict[str, RunResult]:
    """Train (or reuse, or continue) each depth in turn. In JupyterLab each epoch shows a
    progress bar and each depth's curves redraw after every epoch (`live`); under `lab3 run`
    one line per epoch. Several processes (`nproc` > 1) print their lines only."""
    watched = live.interactive()
    results = {}
    for model, config in configs.items():
        on_epoch = live.LiveCurves(model) if watched and nproc == 1 else None
        results[model] = fit_or_resume(
            config, progress=True if watched else None, nproc=nproc, on_epoch=on_epoch
        )
        if results[model].interrupted:  # Kernel > Interrupt: stop here, not at the next depth
            raise UserError(
                f"{pretty_model_name(model)}: training interrupted; run this cell again to "
                "continue from its last finished epoch"
            )
    return results


def summary_text(results: Mapping[str, RunResult]) -> str:
    """One line per depth: its best validation accuracy, when, and how long it trained."""
    lines = []
    for model, result in results.items():
        history = result.history
        lines.append(
            f"- {pretty_model_name(model)}: best validation accuracy "
            f"**{result.best_valid_acc:.1%}** at epoch {result.best_epoch} of {len(history)}; "
            f"{history['seconds'].sum() / 60:.1f} min of training at "
            f"{history['images_per_s'].median():.0f} images/s."
        )
    return "\n".join(lines)


def pretrained_text(scratch: Mapping[str, RunResult], imagenet: Mapping[str, RunResult]) -> str:
    """Each depth from ImageNet weights beside its from-scratch run (outside the course's rules)."""
    return "\n".join(
        f"- {pretty_model_name(m)} from ImageNet weights: best validation accuracy "
        f"**{imagenet[m].best_valid_acc:.1%}** (from scratch {scratch[m].best_valid_acc:.1%})."
        for m in imagenet
    )


def finished_depths(run_dir: str | Path, models: Sequence[str]) -> tuple[list[str], list[str]]:
    """The depths of `models` whose training finished in this run, and those still to train
    (not started, or interrupted): notebook 05 reports on the first and names the second."""
    paths = WorkbookPaths.at(run_dir)
    done = [m for m in models if finished_result(paths.run(m)) is not None]
    if not done:
        raise UserError(
            f"no depth of models ({', '.join(models)}) has finished training in run_dir "
            f"{paths.root}: run notebook 04_train first (Run All Cells trains each depth in "
            "turn), then this notebook again"
        )
    return done, [m for m in models if m not in done]


def missing_text(missing: Sequence[str]) -> str:
    """One sentence naming the depths this report leaves out and how to train them; empty when
    every depth finished."""
    if not missing:
        return ""
    names = ", ".join(pretty_model_name(m) for m in missing)
    verb, pronoun = ("has", "it") if len(missing) == 1 else ("have", "them")
    return (
        f"{names} {verb} not finished training, so the report below leaves {pronoun} out: "
        "run notebook 04_train (Run All Cells trains every depth of `models` and continues an "
        "interrupted one), then this notebook again."
    )
