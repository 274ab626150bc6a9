"""A run's folder and its life: the one place that decides what happens to it and writes to it.

`RunFolder.plan` applies one rule set for `lab3 train`, `lab3 train --resume`, `fit_or_resume`
(the notebooks, `lab3 run --resume`): a new run needs an empty folder; a folder that holds a run
is continued or read back only with the settings it was trained with (`RUNTIME_FIELDS` aside),
a finished run is never trained again, an interrupted one continues from last.pt, and one killed
before its first checkpoint starts again. Files: `config.json` when a run starts (never
rewritten); per epoch `history.csv` (for people) and `history.json` (what is read back),
`last.pt` and, at a new best valid accuracy, `best.pt`; `result.json` when it ends. A finished
run keeps `best.pt` and drops `last.pt`, which only resuming needs. Under torchrun rank 0 alone
writes (`writes`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lab3.config import TrainConfig
from lab3.engine.checkpoint import checkpoint_state, evaluation_state, save_checkpoint
from lab3.errors import UserError
from lab3.fileio import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from lab3.engine.loop import Trainer

# Settings that do not change what a run learns: a run may be continued with other values.
RUNTIME_FIELDS = frozenset({"out", "device", "workers", "amp", "channels_last", "compile"})


class Action(Enum):
    """What opening a run folder leads to."""

    NEW = "new"  # train from the first epoch
    RESUME = "resume"  # continue from last.pt
    FINISHED = "finished"  # read the finished run back; nothing is trained
    RESTART = "restart"  # killed before its first checkpoint: leftovers removed, then NEW


class Mode(Enum):
    """What the caller asks for: `lab3 train`, `lab3 train --resume`, or whichever fits."""

    NEW = "new"
    RESUME = "resume"
    AUTO = "auto"  # notebooks and `lab3 run --resume`: never lose work, never fail on own output


@dataclass
class RunResult:
    run_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_valid_acc: float
    interrupted: bool = False


class RunFolder:
    """A run's folder: `plan` decides what to do with it; under torchrun only rank 0 writes."""

    def __init__(self, path: Path, writes: bool = True):
        self.path = path
        self.writes = writes

    @classmethod
    def plan(cls, config: TrainConfig, mode: Mode) -> tuple[RunFolder, Action]:
        """The run folder for `config` and what to do with it, or one line saying why not.

        Writes nothing. `config.world_size` must be the number of processes that will train.
        """
        folder = cls(_path_for(config))
        return folder, folder._decide(config, mode)

    def _decide(self, config: TrainConfig, mode: Mode) -> Action:
        path = self.path
        if mode is Mode.NEW or not (path / "config.json").is_file():
            if mode is Mode.RESUME:
                raise _nothing_to_resume(path)
            if path.exists() and any(path.iterdir()):
                raise UserError(
                    "run folder already exists; pass --resume to continue it or choose another "
                    "--out",
                    path,
                )
            return Action.NEW
        finished = self.finished_result(config.epochs) is not None
        resumable = not finished and (path / "last.pt").is_file()
        if mode is Mode.RESUME and finished:
            raise UserError(
                "this run finished, so there is nothing to resume; to train longer, start a new "
                "run",
                path,
            )
        if mode is Mode.RESUME and not resumable:
            raise _nothing_to_resume(path)
        _refuse_other_settings(TrainConfig.load(path / "config.json"), config, path)
        if finished:
            return Action.FINISHED
        return Action.RESUME if resumable else Action.RESTART

    def create(self) -> Path:
        """The folder of a new run (`Action.NEW`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def save_config(self, config: TrainConfig) -> None:
        """The settings a run starts with, written once: a resumed run keeps them."""
        if self.writes and not (self.path / "config.json").is_file():
            config.save(self.path / "config.json")

    def save_epoch(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """history.csv/.json, last.pt, and best.pt when this epoch has the best valid accuracy."""
        if not self.writes:
            return
        self.write_history(history)
        state = checkpoint_state(trainer, history)
        if history[-1]["valid_acc"] > best_of(history[:-1])[1]:
            # Written before last.pt: a kill in between repeats this epoch, and so this save.
            save_checkpoint(self.path / "best.pt", evaluation_state(state))
        save_checkpoint(self.path / "last.pt", state)

    def write_history(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        frame = pd.DataFrame(rows)
        write_text_atomic(self.path / "history.csv", frame.to_csv(index=False))
        write_json_atomic(self.path / "history.json", rows)
        return frame

    def read_history(self) -> list[dict[str, Any]]:
        """The epochs written so far (history.json: exact values and types)."""
        return json.loads((self.path / "history.json").read_text())

    def finished_result(self, epochs: int | None = None) -> dict[str, Any] | None:
        """The result.json of a run that trained all its planned epochs, else None (an
        interrupted or unstarted run). `epochs`: the plan where result.json does not record it."""
        result_file = self.path / "result.json"
        if not (result_file.is_file() and (self.path / "history.csv").is_file()):
            return None
        result = json.loads(result_file.read_text())
        planned = result.get("epochs_planned", epochs)  # budgets may add epochs
        if result.get("interrupted") or planned is None or result.get("epochs_done", 0) < planned:
            return None
        return result

    def result(self) -> RunResult:
        """A finished run, read back (tidying a leftover last.pt: a kill while it closed)."""
        if self.writes:
            self.finish()
        history = self.read_history()
        best_epoch, best_acc = best_of(history)
        return RunResult(self.path, pd.DataFrame(history), best_epoch, best_acc)

    def close(
        self, trainer: Trainer, history: list[dict[str, Any]], interrupted: bool
    ) -> RunResult:
        """Record how the run ended; a finished run drops what only resuming needs.

        result.json is written first, so a kill in between leaves a run that reads as finished
        (`result` then tidies it), never one that reads as unstarted.
        """
        best_epoch, best_acc = best_of(history)
        if self.writes:
            write_json_atomic(
                self.path / "result.json",
                {
                    "model": trainer.config.model,
                    "init": trainer.config.init,
                    # valid accuracy of the initial weights (none from scratch): a fine-tuned
                    # checkpoint starts where its run ended
                    "init_valid_acc": trainer.init_valid_acc,
                    # imagenet: the cached file and whether it is torchvision's published one
                    "init_weights": trainer.init_weights,
                    "best_epoch": best_epoch,
                    "best_valid_acc": best_acc,
                    "epochs_done": len(history),
                    "epochs_planned": trainer.epochs,
                    "interrupted": interrupted,
                    "world_size": trainer.group.world_size,
                },
            )
            if not interrupted:
                self.finish()
        return RunResult(self.path, pd.DataFrame(history), best_epoch, best_acc, interrupted)

    def finish(self) -> None:
        """A finished run drops what only resuming needs: last.pt, and the temporaries a write
        killed half-way leaves (`.<name>.*.tmp`)."""
        for path in [self.path / "last.pt", *self.path.glob(".*.tmp")]:
            path.unlink(missing_ok=True)

    def discard_unstarted(self) -> None:
        """Remove what a run killed before its first checkpoint wrote (its settings, a first
        history row, half-written files), so it can start again; anything else (a best.pt) is
        left for `plan` to refuse rather than deleted."""
        for name in ("config.json", "history.csv", "history.json"):
            (self.path / name).unlink(missing_ok=True)
        self.finish()


def _path_for(config: TrainConfig) -> Path:
    if config.out:
        return Path(config.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("outputs") / "runs" / f"{config.model}-{stamp}"


def _refuse_other_settings(saved: TrainConfig, wanted: TrainConfig, path: Path) -> None:
    """A run continues, or is read back, only with the settings it was trained with."""
    if saved.model != wanted.model:
        raise UserError(
            f"this run was trained as {saved.model}, not {wanted.model}; "
            f"pass --model {saved.model}",
            path,
        )
    if saved.world_size != wanted.world_size:
        raise UserError(
            f"this run was trained by {saved.world_size} process(es), this is "
            f"{wanted.world_size}; resume with the same number (--nproc, torchrun "
            "--nproc_per_node)",
            path,
        )
    changed = differences(saved, wanted)
    if changed:
        raise UserError(
            f"this run folder holds a run with other settings ({'; '.join(changed[:3])}); "
            "continue it with its own (lab3 train --resume --config <run>/config.json) or use "
            "another folder",
            path,
        )


def differences(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    """The settings that change what a run learns and differ, as "name old -> new"."""
    old, new = saved.to_dict(), wanted.to_dict()
    out = []
    for key, value in new.items():
        if key in RUNTIME_FIELDS:
            continue
        if key == "data":
            same = _same_folder(old.get(key), value)
        else:
            same = old.get(key) == value
        if not same:
            out.append(f"{key} {old.get(key)!r} -> {value!r}")
    return out


def _same_folder(a: Any, b: Any) -> bool:
    return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()


def _nothing_to_resume(path: Path) -> UserError:
    return UserError("nothing to resume: no last.pt here; drop --resume to start a run", path)


def best_of(history: list[dict[str, Any]]) -> tuple[int, float]:
    """(epoch, valid accuracy) of the first epoch with the best valid accuracy; (0, -1) if none."""
    best_epoch, best_acc = 0, -1.0
    for row in history:
        if row["valid_acc"] > best_acc:
            best_epoch, best_acc = int(row["epoch"]), float(row["valid_acc"])
    return best_epoch, best_acc
