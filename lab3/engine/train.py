"""The fit loop: one epoch of training, one of evaluation, one history row and checkpoint per epoch.

Every file a run writes goes through `RunFolder`, so under several processes one rank alone can
do the writing. `last.pt` (every epoch) and `best.pt` (best valid accuracy) are written
atomically; `--resume` continues from `last.pt` and reproduces the history an uninterrupted run
would have written (the loader's order and augmentation depend only on seed and epoch). A run
that finishes keeps `best.pt` (weights, no optimizer state) and drops `last.pt`: the optimizer's
moments are up to twice the weights' size and only resuming needs them.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from lab3.config import TrainConfig
from lab3.engine.checkpoint import load_weights, read_checkpoint, save_checkpoint
from lab3.engine.data import PreparedData, prepare_data
from lab3.engine.evaluate import evaluate_loader
from lab3.errors import UserError
from lab3.fileio import write_json_atomic, write_text_atomic
from lab3.models import build_model

# Tests: SIGKILL this process right after that epoch's checkpoint ("2"), or only in the run
# folder of that name ("resnet50:2"; a workbook kernel trains several runs).
KILL_HOOK = "LAB3_KILL_AFTER_EPOCH"


class TrainingDiverged(UserError):
    pass


@dataclass
class RunResult:
    run_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_valid_acc: float
    interrupted: bool = False


class RunFolder:
    """The one place a run's files are written (history, checkpoints, config)."""

    def __init__(self, path: Path):
        self.path = path

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

    def write_history(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        frame = pd.DataFrame(rows)
        write_text_atomic(self.path / "history.csv", frame.to_csv(index=False))
        write_json_atomic(self.path / "history.json", rows)
        return frame

    def save(self, name: str, state: dict[str, Any]) -> None:
        save_checkpoint(self.path / name, state)

    def finish(self) -> None:
        """A finished run drops what only resuming needs: last.pt, and the temporaries a write
        killed half-way leaves (`.<name>.*.tmp`). Called after result.json is written, so a kill
        in between leaves a run that reads as finished (`fit_or_resume` then tidies it)."""
        for path in [self.path / "last.pt", *self.path.glob(".*.tmp")]:
            path.unlink(missing_ok=True)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BatchNorm weights and biases (1-d tensors): it only fights the norm."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Learning-rate multiplier at `step` of `total`: one-cycle, or warm-up then cosine."""
    if kind == "onecycle":
        peak = max(1, int(0.25 * total))
        if step < peak:
            return 0.04 + 0.96 * (1 - math.cos(math.pi * step / peak)) / 2
        progress = (step - peak) / max(1, total - peak)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * progress)) / 2
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return (1 + math.cos(math.pi * min(progress, 1.0))) / 2


class WeightAverage:
    """Exponential moving average of weights and BN buffers, evaluated instead of the raw model."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short runs: do not lag behind
        for avg, cur in zip(
            self.model.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur, 1 - decay)
            else:
                avg.copy_(cur)


def fit(config: TrainConfig, resume: bool = False, progress: bool | None = None) -> RunResult:
    """Train `config.model` on `config.data`; returns the run folder and its history."""
    progress = sys.stderr.isatty() if progress is None else progress
    run = RunFolder.create(config, resume)
    previous = read_checkpoint(run.path / "last.pt") if resume else None
    if previous is not None:
        saved = TrainConfig.from_dict(previous["config"])
        if saved.model != config.model:
            raise UserError(
                f"last.pt was trained as {saved.model}, not {config.model}; "
                f"pass --model {saved.model}",
                run.path / "last.pt",
            )
    data = prepare_data(config, progress=progress)
    config.save(run.path / "config.json")
    device = data.device

    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        num_classes=data.layout.num_classes,
        in_channels=data.pipeline.channels,
        zero_init_residual=config.zero_init_residual,
    )
    model.to(device)
    if config.use_channels_last():
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    average = WeightAverage(model, config.ema) if config.ema > 0 else None

    train_loader = data.loader("train", train=True)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(config.warmup_epochs * steps_per_epoch)
    history: list[dict[str, Any]] = []
    start_epoch, step = 1, 0
    best_acc, best_epoch = -1.0, 0
    if previous is not None:
        load_weights(model, previous, run.path / "last.pt")
        optimizer.load_state_dict(previous["optimizer"])
        if average is not None and previous.get("ema") is not None:
            average.model.load_state_dict(previous["ema"])
        history = [dict(r) for r in previous["history"]]
        start_epoch = int(previous["epoch"]) + 1
        step = int(previous["lr_scheduler"]["step"])
        best_acc = max((r["valid_acc"] for r in history), default=-1.0)
        best_epoch = next((r["epoch"] for r in history if r["valid_acc"] == best_acc), 0)
        torch.set_rng_state(previous["rng"]["torch"])

    train_model: nn.Module = torch.compile(model) if config.use_compile() else model
    eval_model = average.model if average is not None else model
    criterion = nn.CrossEntropyLoss(
        weight=class_weights(data).to(device) if config.class_balance == "weights" else None,
        label_smoothing=config.label_smoothing,
    )
    autocast = config.autocast()
    log = tqdm.write if progress else print

    interrupted = False
    frame = pd.DataFrame(history)
    for epoch in range(start_epoch, config.epochs + 1):
        train_loader.set_epoch(epoch)
        started = time.perf_counter()
        try:
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            train_model.train()
            bar = tqdm(
                train_loader,
                desc=f"{config.model} {epoch}/{config.epochs}",
                leave=False,
                disable=not progress,
            )
            for images, labels, _ in bar:
                factor = lr_factor(step, total_steps, warmup_steps, config.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * factor
                with autocast:
                    logits = train_model(images)
                    loss = criterion(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if average is not None:
                    average.update(model, step)
                step += 1
                loss_sum += loss.detach() * labels.shape[0]
                correct += (logits.detach().argmax(1) == labels).sum()
                seen += labels.shape[0]
            train_seconds = time.perf_counter() - started
            train_loss = loss_sum.item() / max(seen, 1)
        except KeyboardInterrupt:
            interrupted = True
            log(
                f"interrupted in epoch {epoch}; last.pt holds epoch {epoch - 1}: "
                "continue with --resume"
            )
            break
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"the training loss became {train_loss} in epoch {epoch}; last.pt still holds "
                f"epoch {epoch - 1}: lower --lr (now {config.lr}) and start again",
                run.path,
            )
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "train_acc": round(correct.item() / max(seen, 1), 6),
        }
        for split in ("valid", "test"):
            if split == "valid" or data.has_labels("test"):
                metrics = evaluate_loader(eval_model, data.loader(split), autocast)
                row[f"{split}_loss"] = round(metrics["loss"], 6)
                row[f"{split}_acc"] = round(metrics["accuracy"], 6)
        row["lr"] = round(
            config.lr * lr_factor(max(step - 1, 0), total_steps, warmup_steps, config.schedule), 8
        )
        row["seconds"] = round(time.perf_counter() - started, 3)
        row["images_per_s"] = round(seen / max(train_seconds, 1e-9), 1)
        history.append(row)
        frame = run.write_history(history)
        state = {
            "model": model.state_dict(),
            "ema": average.model.state_dict() if average is not None else None,
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": {"step": step, "total": total_steps, "kind": config.schedule},
            "scaler": None,  # bf16 autocast needs no loss scaling
            "epoch": epoch,
            "config": config.to_dict(),
            "history": history,
            "rng": {"torch": torch.get_rng_state()},
            "arch": config.model,
            "num_classes": data.layout.num_classes,
            "in_channels": data.pipeline.channels,
            "class_names": list(data.layout.class_names),
        }
        if row["valid_acc"] > best_acc:
            best_acc, best_epoch = row["valid_acc"], epoch
            # best.pt is for evaluation: the weights and what rebuilds the model, no optimizer.
            # Saved before last.pt: a kill in between repeats this epoch, and so this save.
            run.save("best.pt", {k: v for k, v in state.items() if k != "optimizer"})
        run.save("last.pt", state)
        log(format_row(config.model, config.epochs, row, history))
        if os.environ.get(KILL_HOOK) in (str(epoch), f"{run.path.name}:{epoch}"):
            os.kill(os.getpid(), signal.SIGKILL)
    write_json_atomic(
        run.path / "result.json",
        {
            "model": config.model,
            "best_epoch": best_epoch,
            "best_valid_acc": best_acc,
            "epochs_done": len(history),
            "interrupted": interrupted,
        },
    )
    if not interrupted:
        run.finish()
    return RunResult(run.path, frame, best_epoch, best_acc, interrupted)


def class_weights(data: PreparedData) -> torch.Tensor:
    labels = torch.as_tensor(data.labels[data.rows("train")])
    counts = torch.bincount(labels, minlength=data.layout.num_classes).float().clamp(min=1)
    return counts.sum() / (len(counts) * counts)


def format_row(model: str, epochs: int, row: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """One epoch as one line (what `lab3 run` shows while notebook 04 trains), ending with the
    time this depth still needs at its mean epoch time so far."""
    text = (
        f"{model} epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.2%}  valid loss {row['valid_loss']:.4f} acc {row['valid_acc']:.2%}"
    )
    if "test_acc" in row:
        text += f"  test acc {row['test_acc']:.2%}"
    text += f"  lr {row['lr']:.4g}  {row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s"
    left = (epochs - int(row["epoch"])) * sum(r["seconds"] for r in history) / len(history)
    return text + (f"  ETA {int(left // 60)}m{int(left % 60):02d}s" if left > 0 else "  done")
