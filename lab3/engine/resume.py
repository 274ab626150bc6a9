"""Train into a run folder, or continue/reuse what is already there (notebooks 02 and 04).

A finished run is read back, an interrupted one resumed from last.pt, one killed before its
first checkpoint started again, and a folder holding a run with other settings is refused, so
re-running a notebook never loses work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from lab3.config import TrainConfig
from lab3.engine.loop import EpochCallback, fit
from lab3.engine.run_folder import RunFolder, RunResult, best_of
from lab3.errors import UserError

# Settings that do not change what a run learns: a run folder may be continued with other values.
RUNTIME_FIELDS = frozenset({"out", "device", "workers", "amp", "channels_last", "compile"})


def _differences(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    out = []
    for key, value in wanted.to_dict().items():
        old = saved.to_dict().get(key)
        if key in RUNTIME_FIELDS:
            continue
        if key == "data":
            same = Path(str(old)).expanduser().resolve() == Path(str(value)).expanduser().resolve()
        else:
            same = old == value
        if not same:
            out.append(f"{key} {old!r} -> {value!r}")
    return out


def fit_or_resume(
    config: TrainConfig,
    progress: bool | None = None,
    nproc: int = 1,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    """Train into `config.out`, or continue/reuse what is already there.

    A finished run is read back without touching it, an interrupted one continues from last.pt,
    and one killed before its first checkpoint starts again, so re-running a notebook (or
    `lab3 run --resume`) never loses work and never fails on its own output. `nproc` > 1
    trains with that many processes on this machine (torchrun, see `launch`); `on_epoch` (see
    `fit`) is called in this process only, so not with `nproc` > 1.
    """

    def train(resume: bool = False) -> RunResult:
        if nproc > 1:
            return launch(config, nproc, resume)
        return fit(config, resume=resume, progress=progress, on_epoch=on_epoch)

    if not config.out:
        return train()
    run = Path(config.out)
    saved_config = run / "config.json"
    if not saved_config.is_file():
        return train()
    # the saved config records the processes that trained (set by `fit` from torchrun's group)
    changed = _differences(TrainConfig.load(saved_config), replace(config, world_size=nproc))
    if changed:
        raise UserError(
            f"this run folder holds a run with other settings ({'; '.join(changed[:3])}); "
            "delete it or use another run_dir",
            run,
        )
    finished = _finished(run, config)
    if finished is not None:
        return finished
    if (run / "last.pt").is_file():
        return train(resume=True)
    _discard_unstarted(run)
    return train()


def finished_result(run: Path, epochs: int | None = None) -> dict[str, Any] | None:
    """The result.json of a run that trained all its planned epochs, else None (an interrupted
    or unstarted run). `epochs`: the plan where result.json does not record it."""
    result_file = run / "result.json"
    if not (result_file.is_file() and (run / "history.csv").is_file()):
        return None
    result = json.loads(result_file.read_text())
    planned = result.get("epochs_planned", epochs)  # budgets may add epochs
    if result.get("interrupted") or planned is None or result.get("epochs_done", 0) < planned:
        return None
    return result


def _finished(run: Path, config: TrainConfig) -> RunResult | None:
    """The run's result when it trained all its epochs (tidying a leftover last.pt), else None."""
    result = finished_result(run, config.epochs)
    if result is None:
        return None
    RunFolder(run).finish()  # a kill between result.json and the clean-up
    history = pd.read_csv(run / "history.csv")
    return RunResult(run, history, int(result["best_epoch"]), float(result["best_valid_acc"]))


def _discard_unstarted(run: Path) -> None:
    """Remove what a run killed before its first checkpoint wrote (its settings, a first history
    row, half-written files), so it can start again; anything else (a best.pt) is left for fit
    to refuse rather than deleted."""
    for name in ("config.json", "history.csv", "history.json"):
        (run / name).unlink(missing_ok=True)
    RunFolder(run).finish()


def launch(config: TrainConfig, nproc: int, resume: bool = False) -> RunResult:
    """Train with `nproc` processes of `lab3 train` under torchrun on this machine.

    The config travels as a JSON file (`lab3 train --config`); the processes' output is relayed
    line by line as it comes (rank 0 prints the epoch lines), so a notebook shows progress.
    """
    if not config.out:
        raise UserError("training with several processes needs a run folder (config.out)")
    with tempfile.TemporaryDirectory(prefix="lab3-launch-") as folder:
        settings = Path(folder) / "config.json"
        config.save(settings)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node", str(nproc), "-m", "lab3", "train"]
        command += ["--config", str(settings), *(["--resume"] if resume else [])]
        returncode, errors = _relay(command)
    if returncode != 0:
        failure = next((line for line in reversed(errors) if "lab3 train: error" in line), None)
        raise UserError(
            f"training with {nproc} processes failed ({failure or 'see the output above'}); "
            "running it again continues from last.pt",
            config.out,
        )
    run = Path(config.out)
    history = json.loads((run / "history.json").read_text())
    best_epoch, best_acc = best_of(history)
    return RunResult(run, pd.DataFrame(history), best_epoch, best_acc)


def _relay(command: list[str]) -> tuple[int, list[str]]:
    """Run `command`, printing its stdout as it comes; returns the exit code and stderr's lines."""
    with tempfile.TemporaryFile("w+") as errors:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="", flush=True)
        errors.seek(0)
        return child.returncode, errors.read().splitlines()
