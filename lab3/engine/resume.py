"""Train into a run folder, or continue/reuse what is already there (notebooks 02 and 04).

What happens to a folder is `RunFolder.plan`'s decision (the one rule set `lab3 train` and
`lab3 train --resume` follow too): a finished run is read back, an interrupted one resumed from
last.pt, one killed before its first checkpoint started again, and a folder holding a run with
other settings refused, so re-running a notebook never loses work.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from lab3.config import TrainConfig
from lab3.engine.loop import EpochCallback, fit
from lab3.engine.run_folder import Action, Mode, RunFolder, RunResult, best_of
from lab3.errors import UserError


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
    # the saved config records the processes that trained (set by `fit` from torchrun's group)
    folder, action = RunFolder.plan(replace(config, world_size=nproc), Mode.AUTO)
    if action is Action.FINISHED:
        return folder.result()
    if action is Action.RESTART:
        folder.discard_unstarted()
    return train(resume=action is Action.RESUME)


def finished_result(run: Path, epochs: int | None = None) -> dict[str, Any] | None:
    """The result.json of a run that trained all its planned epochs, else None."""
    return RunFolder(run, writes=False).finished_result(epochs)


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
    history = RunFolder(Path(config.out)).read_history()
    best_epoch, best_acc = best_of(history)
    return RunResult(Path(config.out), pd.DataFrame(history), best_epoch, best_acc)


def _relay(command: list[str]) -> tuple[int, list[str]]:
    """Run `command`, printing its stdout as it comes; returns the exit code and stderr's lines."""
    with tempfile.TemporaryFile("w+") as errors:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="", flush=True)
        errors.seek(0)
        return child.returncode, errors.read().splitlines()
