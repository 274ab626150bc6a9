"""The fit loop: one epoch of training, one of evaluation, one history row and checkpoint per epoch.

In the shape of torchvision's reference script: `train_one_epoch`, `evaluate`, `fit`. Under
torchrun the same code trains one model with DistributedDataParallel (`lab3.engine.distributed`).
Every file a run writes goes through `RunFolder`, so under several processes rank 0 alone
writes. `last.pt` (every epoch) and `best.pt` (best valid accuracy) are written
atomically; `--resume` continues from `last.pt` and reproduces the history an uninterrupted run
would have written (the loader's order and augmentation depend only on seed and epoch). A run
that finishes keeps `best.pt` (weights, no optimizer state) and drops `last.pt`: the optimizer's
moments are up to twice the weights' size and only resuming needs them.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
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
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import update_bn
from tqdm import tqdm

from lab3.config import TrainConfig
from lab3.data.loader import DeviceLoader
from lab3.engine import distributed
from lab3.engine.checkpoint import load_weights, read_checkpoint, save_checkpoint
from lab3.engine.data import PreparedData, check_trainable, prepare_data
from lab3.engine.distributed import Distributed
from lab3.engine.evaluate import evaluate_loader
from lab3.engine.step import TrainStep
from lab3.errors import UserError
from lab3.fileio import write_json_atomic, write_text_atomic
from lab3.models import build_model, initial_state, load_initial_state, torchvision_name
from lab3.models.pretrained import imagenet_file_check

# Tests: end a process right after an epoch's checkpoint, as a crash would (`_inject_faults`).
KILL_HOOK = "LAB3_KILL_AFTER_EPOCH"  # SIGKILL
RAISE_HOOK = "LAB3_RAISE_AFTER_EPOCH"  # an exception (under torchrun: a failing rank)


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
        "ema": trainer.average.model.state_dict() if trainer.average is not None else None,
        "optimizer": trainer.optimizer.state_dict(),
        "lr_scheduler": trainer.schedule.state_dict(),
        "scaler": None,  # bf16 autocast needs no loss scaling
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


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BatchNorm weights and biases (1-d tensors): it only fights the norm."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD, fused: one kernel over all parameters instead of a loop over them
    (on the CPU the fused AdamW update of ResNet50/152 takes about a fifth of the loop's time;
    benchmarks/results/optimizer_step_cpu.md)."""
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True, fused=True)


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
        pairs = list(
            zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        )
        floats = [(avg, cur) for avg, cur in pairs if avg.dtype.is_floating_point]
        # one fused update, not a kernel per tensor (hundreds a step for ResNet152)
        torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1 - decay)
        for avg, cur in pairs:
            if not avg.dtype.is_floating_point:
                avg.copy_(cur)


@dataclass
class Schedule:
    """The learning rate of every step; its position is what a checkpoint's lr_scheduler holds."""

    peak_lr: float
    total: int
    warmup: int
    kind: str
    step: int = 0

    def lr(self, step: int) -> float:
        return self.peak_lr * lr_factor(step, self.total, self.warmup, self.kind)

    def advance(self, optimizer: torch.optim.Optimizer) -> None:
        """Set the rate for the coming step, then count it."""
        for group in optimizer.param_groups:
            group["lr"] = self.lr(self.step)
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "total": self.total, "kind": self.kind}


@dataclass
class Trainer:
    """What one training holds between epochs: model, optimizer, schedule, loss, data."""

    config: TrainConfig
    data: PreparedData
    model: nn.Module  # the bare model: what checkpoints hold
    train_model: nn.Module  # the model that runs training steps (DDP-wrapped, compiled)
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    criterion: nn.Module
    average: WeightAverage | None
    group: Distributed
    train_loader: DeviceLoader  # this rank's shard of the training split, augmented
    epochs: int  # planned: `epochs`, or more for a small set (`TrainConfig.planned_epochs`)
    train_step: TrainStep  # forward, loss, backward, update: the step `lab3 bench` times
    statistics_loader: DeviceLoader | None  # precise BN: training images, unaugmented
    init_valid_acc: float | None = None  # valid accuracy before training, when not from scratch
    init_weights: dict[str, Any] | None = None  # imagenet: the file, and if it is the published one

    @property
    def eval_model(self) -> nn.Module:
        return self.average.model if self.average is not None else self.model


def train_one_epoch(trainer: Trainer, loader: DeviceLoader, progress: bool) -> dict[str, float]:
    """One pass over this rank's shard; loss and accuracy summed over all ranks."""
    device = trainer.data.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = torch.zeros((), device=device, dtype=torch.long)
    trainer.train_model.train()
    desc = f"{trainer.config.model} {loader.epoch}/{trainer.epochs}"
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress)
    started = time.perf_counter()
    for images, labels, _ in bar:
        trainer.schedule.advance(trainer.optimizer)
        logits, loss = trainer.train_step(images, labels)
        if trainer.average is not None:
            trainer.average.update(trainer.model, trainer.schedule.step - 1)
        loss_sum += loss * labels.shape[0]
        correct += (logits.argmax(1) == labels).sum()
        seen += labels.shape[0]
    totals = trainer.group.all_reduce_sum(
        torch.stack([loss_sum.double(), correct.double(), seen.double()])
    )
    loss_total, correct_total, seen_total = totals.tolist()  # the one host sync of the epoch
    seconds = time.perf_counter() - started
    return {
        "loss": loss_total / max(seen_total, 1),
        "accuracy": correct_total / max(seen_total, 1),
        "images_per_s": seen_total / max(seconds, 1e-9),
    }


def evaluate(trainer: Trainer) -> dict[str, float]:
    """Valid (and test, when labelled) loss and accuracy of the model a checkpoint evaluates.

    Precise BN first: BatchNorm statistics re-estimated for these weights, not a lagging average
    over the epoch's; then every rank evaluates rank 0's statistics, those its checkpoint saves.
    """
    model = trainer.eval_model
    if trainer.statistics_loader is not None:
        with trainer.config.autocast():  # the statistics of the activations evaluation sees
            update_bn(trainer.statistics_loader, model)
    trainer.group.broadcast_buffers(model)
    row: dict[str, float] = {}
    for split in ("valid", "test"):
        if split == "valid" or trainer.data.has_labels(split):
            metrics = evaluate_loader(
                model, trainer.data.loader(split), trainer.config.autocast(), group=trainer.group
            )
            row[f"{split}_loss"] = round(metrics["loss"], 6)
            row[f"{split}_acc"] = round(metrics["accuracy"], 6)
    return row


def fit(config: TrainConfig, resume: bool = False, progress: bool | None = None) -> RunResult:
    """Train `config.model` on `config.data`; returns the run folder and its history.

    Under torchrun every process calls this; they train one model together (see `distributed`).
    """
    group = distributed.from_environment(config.resolved_device().type)
    try:
        return _fit(config, resume, progress, group)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as err:
        if not group.enabled:
            raise
        raise RankFailed(
            f"rank {group.rank} of {group.world_size} failed ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:160] if str(err).strip() else ''}); "
            "last.pt holds the last finished epoch: continue with --resume"
        ) from err
    finally:
        distributed.shutdown(group)


def _fit(config: TrainConfig, resume: bool, progress: bool | None, group: Distributed) -> RunResult:
    progress = group.is_main and (sys.stderr.isatty() if progress is None else progress)
    config.world_size = group.world_size
    check_trainable(config, group.world_size)  # a data folder it cannot train on: nothing written
    # the initial weights first: a missing file or an offline download leaves no run folder
    start = None if resume else initial_state(config.model, config.init, progress)
    created = not resume and not (config.out and Path(config.out).exists())
    run = RunFolder(group.run_on_main(lambda: RunFolder.create(config, resume).path), group.is_main)
    try:
        previous = (
            group.run_on_main(lambda: read_checkpoint(run.path / "last.pt")) if resume else None
        )
        if previous is not None:
            _check_resumable(config, previous, run.path / "last.pt")
        data = _prepare_data_once_per_node(config, progress, group)
        run.save_config(config)
        trainer = _make_trainer(config, data, group, start)
        if start is not None and config.init == "imagenet":
            trainer.init_weights = imagenet_file_check(config.model)
    except UserError:
        if created and run.writes:  # nothing trained yet: leave no half-made run folder
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    train_loader = trainer.train_loader
    history: list[dict[str, Any]] = []
    start_epoch = 1
    if previous is not None:
        history, start_epoch = _restore(trainer, previous, run.path / "last.pt")
        if start_epoch > trainer.epochs:  # killed after its last checkpoint
            return run.close(trainer, history, interrupted=False)
    log = tqdm.write if progress else print
    interrupted = False
    for epoch in range(start_epoch, trainer.epochs + 1):
        train_loader.set_epoch(epoch)
        started = time.perf_counter()
        try:
            train = train_one_epoch(trainer, train_loader, progress)
        except KeyboardInterrupt:
            interrupted = True
            if group.is_main:
                log(
                    f"interrupted in epoch {epoch}; last.pt holds epoch {epoch - 1}: "
                    "continue with --resume"
                )
            break
        if not math.isfinite(train["loss"]):
            raise TrainingDiverged(
                f"the training loss became {train['loss']} in epoch {epoch}; last.pt still holds "
                f"epoch {epoch - 1}: lower --lr (now {config.lr}) and start again",
                run.path,
            )
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": round(train["loss"], 6),
            "train_acc": round(train["accuracy"], 6),
            **evaluate(trainer),
            "lr": round(trainer.schedule.lr(max(trainer.schedule.step - 1, 0)), 8),
            "seconds": round(time.perf_counter() - started, 3),
            "images_per_s": round(train["images_per_s"], 1),
        }
        history.append(row)
        run.save_epoch(trainer, history)
        group.barrier()  # no rank runs ahead while rank 0 still writes this epoch's checkpoint
        if group.is_main:
            log(format_row(config.model, trainer.epochs, row, history))
        _inject_faults(epoch, group.rank, run.path.name)
    return run.close(trainer, history, interrupted)


class RankFailed(UserError):
    """One process of a distributed run failed; the job ends, the last checkpoint stands."""

    exit_code = 1


def _check_resumable(config: TrainConfig, previous: dict[str, Any], path: Path) -> None:
    saved = TrainConfig.from_dict(previous["config"])
    if saved.model != config.model:
        raise UserError(
            f"last.pt was trained as {saved.model}, not {config.model}; pass --model {saved.model}",
            path,
        )
    if saved.world_size != config.world_size:
        raise UserError(
            f"last.pt was trained by {saved.world_size} process(es), this is {config.world_size}; "
            f"resume with the same number (torchrun --nproc_per_node ...)",
            path,
        )


def _prepare_data_once_per_node(
    config: TrainConfig, progress: bool, group: Distributed
) -> PreparedData:
    """The first process of each machine builds the image cache; the others then open it."""
    if group.local_rank != 0:
        group.barrier()
    data = prepare_data(config, progress=progress, group=group)
    if group.local_rank == 0:
        group.barrier()
    return data


def _make_trainer(
    config: TrainConfig,
    data: PreparedData,
    group: Distributed,
    start: dict[str, torch.Tensor] | None = None,
) -> Trainer:
    """The model (from `start`'s weights when given, the head sized for the data), optimizer,
    schedule, loss and loaders of one training."""
    device = data.device
    torch.manual_seed(config.seed)
    extra = {"imagenet_input": config.init == "imagenet"} if torchvision_name(config.model) else {}
    if config.init == "imagenet" and data.pipeline.channels != 3:
        raise UserError("ImageNet weights take colour images; drop 'grey' from --preprocess")
    model = build_model(
        config.model,
        num_classes=data.layout.num_classes,
        in_channels=data.pipeline.channels,
        zero_init_residual=config.zero_init_residual,
        **extra,
    )
    note = None
    if start is not None:
        note = load_initial_state(model, start, config.init)
    model = model.to(device)
    if config.use_channels_last():
        model.to(memory_format=torch.channels_last)
    train_model: nn.Module = model
    if config.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA GPUs (SyncBatchNorm runs only there); drop it")
    if group.enabled:
        if config.sync_bn:
            model = train_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = DistributedDataParallel(
            model, device_ids=[group.local_rank] if device.type == "cuda" else None
        )
    eager = train_model
    if config.use_compile():
        train_model = torch.compile(train_model)
    train_loader = data.loader("train", train=True)
    steps_per_epoch = len(train_loader)
    epochs = config.planned_epochs(steps_per_epoch)
    schedule = Schedule(
        peak_lr=distributed.scaled_lr(config.lr, group.world_size, config.optimizer),
        total=steps_per_epoch * epochs,
        warmup=int(config.warmup_epochs * steps_per_epoch),
        kind=config.schedule,
    )
    criterion = nn.CrossEntropyLoss(
        weight=class_weights(data).to(device) if config.class_balance == "weights" else None,
        label_smoothing=config.label_smoothing,
    )
    optimizer = make_optimizer(model, config)
    trainer = Trainer(
        config=config,
        data=data,
        model=model,
        train_model=train_model,
        optimizer=optimizer,
        schedule=schedule,
        criterion=criterion,
        average=WeightAverage(model, config.ema) if config.ema > 0 else None,
        group=group,
        train_loader=train_loader,
        epochs=epochs,
        train_step=TrainStep(
            train_model,
            optimizer,
            criterion,
            config.autocast(),
            eager=eager if train_model is not eager else None,
        ),
        statistics_loader=data.statistics_loader(),
    )
    if note is not None:
        # where the initial weights stand on this task before any step
        trainer.init_valid_acc = evaluate(trainer)["valid_acc"]
        if group.is_main:
            print(f"{config.model}: {note}; valid acc before training {trainer.init_valid_acc:.2%}")
    return trainer


def _restore(
    trainer: Trainer, previous: dict[str, Any], path: Path
) -> tuple[list[dict[str, Any]], int]:
    """Weights, optimizer, EMA, schedule position and RNG from last.pt; the history so far."""
    load_weights(trainer.model, previous, path)
    trainer.optimizer.load_state_dict(previous["optimizer"])
    if trainer.average is not None and previous.get("ema") is not None:
        trainer.average.model.load_state_dict(previous["ema"])
    trainer.schedule.step = int(previous["lr_scheduler"]["step"])
    trainer.init_valid_acc = previous.get("init_valid_acc")
    trainer.init_weights = previous.get("init_weights")
    torch.set_rng_state(previous["rng"]["torch"])
    return [dict(r) for r in previous["history"]], int(previous["epoch"]) + 1


def _inject_faults(epoch: int, rank: int, run_name: str) -> None:
    """Tests only: end this process right after `epoch`'s checkpoint, as a crash would.

    LAB3_KILL_AFTER_EPOCH (SIGKILL) or LAB3_RAISE_AFTER_EPOCH (an exception) hold ``EPOCH``,
    ``RUN:EPOCH`` (only in the run folder of that name: a workbook trains several runs in one
    kernel) and optionally ``@RANK`` (rank 0 when no rank is named).
    """
    for hook in (KILL_HOOK, RAISE_HOOK):
        when, _, rank_text = os.environ.get(hook, "").partition("@")
        if when in (str(epoch), f"{run_name}:{epoch}") and int(rank_text or 0) == rank:
            if hook == KILL_HOOK:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"{hook} asked this rank to fail after epoch {epoch}")


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
