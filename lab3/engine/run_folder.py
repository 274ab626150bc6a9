"""A run's folder: the one place its files are written (under torchrun, by rank 0 alone).

`config.json` when it starts; per epoch `history.csv`/`.json`, `last.pt` and, at a new best
valid accuracy, `best.pt`; `result.json` when it ends. A finished run keeps `best.pt` and drops
`last.pt`, which only resuming needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from lab3.config import TrainConfig
from lab3.engine.checkpoint import save_checkpoint
from lab3.errors import UserError
from lab3.fileio import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from lab3.engine.loop import Trainer


@dataclass
class RunResult:
    run_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_valid_acc: float
    interrupted: bool = False


class RunFolder:
    """The one place a run's files are written; under torchrun only rank 0 writes (`writes`)."""

    def __init__(self, path: Path, writes: bool = True):
        self.path = path
        self.writes = writes

    @classmethod
    def create(cls, config: TrainConfig, resume: bool) -> RunFolder:
        if config.out:
            path = Path(config.out)
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path("outputs") / "runs" / f"{config.model}-{stamp}"
        if resume:
            if (path / "result.json").is_file() and not (path / "last.pt").is_file():
                raise UserError(
                    "this run finished, so there is nothing to resume; to train longer, "
                    "start a new run",
                    path,
                )
            if not (path / "last.pt").is_file():
                raise UserError(
                    "nothing to resume: no last.pt here; drop --resume to start a run", path
                )
        elif path.exists() and any(path.iterdir()):
            raise UserError(
                "run folder already exists; pass --resume to continue it or choose another --out",
                path,
            )
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def save_config(self, config: TrainConfig) -> None:
        if self.writes:
            config.save(self.path / "config.json")

    def save_epoch(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """history.csv/.json, last.pt, and best.pt when this epoch has the best valid accuracy."""
        if not self.writes:
            return
        self.write_history(history)
        state = checkpoint_state(trainer, history)
        if history[-1]["valid_acc"] > best_of(history[:-1])[1]:
            # best.pt is for evaluation: the weights and what rebuilds the model, no optimizer.
            # Written before last.pt: a kill in between repeats this epoch, and so this save.
            save_checkpoint(
                self.path / "best.pt", {k: v for k, v in state.items() if k != "optimizer"}
            )
        save_checkpoint(self.path / "last.pt", state)

    def write_history(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        frame = pd.DataFrame(rows)
        write_text_atomic(self.path / "history.csv", frame.to_csv(index=False))
        write_json_atomic(self.path / "history.json", rows)
        return frame

    def close(
        self, trainer: Trainer, history: list[dict[str, Any]], interrupted: bool
    ) -> RunResult:
        """Record how the run ended; a finished run drops what only resuming needs.

        result.json is written first, so a kill in between leaves a run that reads as finished
        (`fit_or_resume` then tidies it), never one that reads as unstarted.
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


def best_of(history: list[dict[str, Any]]) -> tuple[int, float]:
    """(epoch, valid accuracy) of the first epoch with the best valid accuracy; (0, -1) if none."""
    best_epoch, best_acc = 0, -1.0
    for row in history:
        if row["valid_acc"] > best_acc:
            best_epoch, best_acc = int(row["epoch"]), float(row["valid_acc"])
    return best_epoch, best_acc


def checkpoint_state(trainer: Trainer, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything `--resume` needs, as tensors and plain values (loads with weights_only)."""
    data = trainer.data
    return {
        "model": trainer.model.state_dict(),
        "ema": trainer.ema.model.state_dict() if trainer.ema is not None else None,
        "optimizer": trainer.optimizer.state_dict(),
        "lr_scheduler": trainer.schedule.state_dict(),
        # fp16's loss scale and its growth counter, so a resumed run scales as an unbroken one
        "scaler": None if (scaler := trainer.train_step.scaler) is None else scaler.state_dict(),
        "epoch": int(history[-1]["epoch"]),
        "config": trainer.config.to_dict(),
        "history": history,
        "rng": {"torch": torch.get_rng_state()},
        "arch": trainer.config.model,
        "num_classes": data.layout.num_classes,
        "in_channels": data.pipeline.channels,
        "class_names": list(data.layout.class_names),
        "world_size": trainer.group.world_size,
        "init_valid_acc": trainer.init_valid_acc,
        "init_weights": trainer.init_weights,
    }
