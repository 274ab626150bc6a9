"""The fit loop: one epoch of training, one of evaluation, one history row and checkpoint per epoch.

In the shape of torchvision's reference script: `train_one_epoch`, `evaluate_epoch`, `fit`. To
see one training step, read `train_one_epoch`, then `TrainStep` (`step.py`); the optimizer,
learning-rate schedule and EMA are in `optim.py`. Under torchrun the same code trains one model
with DistributedDataParallel (`lab3.engine.distributed`). Every file a run writes goes through
`RunFolder` (`run_folder.py`), so under several processes rank 0 alone writes. `last.pt` (every
epoch) and `best.pt` (best valid accuracy) are written atomically; `--resume` continues from
`last.pt` and reproduces the history an uninterrupted run would have written (the loader's order
and augmentation depend only on seed and epoch). A run that finishes keeps `best.pt` (weights, no
optimizer state) and drops `last.pt`: the optimizer's moments are up to twice the weights' size
and only resuming needs them.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import update_bn
from tqdm.auto import tqdm  # the notebook widget in JupyterLab, text elsewhere

from lab3.config import TrainConfig
from lab3.data.loader import DeviceLoader
from lab3.engine import distributed
from lab3.engine.checkpoint import read_checkpoint, restore_state
from lab3.engine.data import PreparedData, check_trainable, prepare_data
from lab3.engine.distributed import Distributed
from lab3.engine.evaluate import evaluate_loader
from lab3.engine.optim import Schedule, WeightAverage, make_optimizer
from lab3.engine.plan import training_plan
from lab3.engine.run_folder import Mode, RunFolder, RunResult
from lab3.engine.step import TrainStep, grad_scaler
from lab3.errors import UserError
from lab3.models import build_model, initial_state, load_initial_state, torchvision_name
from lab3.models.pretrained import imagenet_file_check


class TrainingDiverged(UserError):
    pass


@dataclass
class Trainer:
    """What one training holds between epochs: model, optimizer, schedule, loss, data."""

    config: TrainConfig
    data: PreparedData
    model: nn.Module  # the bare model: what checkpoints hold
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    criterion: nn.Module
    ema: WeightAverage | None  # the averaged weights when `config.ema` > 0; evaluated instead
    group: Distributed
    train_loader: DeviceLoader  # this rank's shard of the training split, augmented
    epochs: int  # planned: `epochs`, or more for a small set (`TrainConfig.planned_epochs`)
    train_step: TrainStep  # forward, loss, backward, update: the step `lab3 bench` times
    statistics_loader: DeviceLoader | None  # precise BN: training images, unaugmented
    init_note: str | None = None  # what loading the initial weights did (none from scratch)
    init_valid_acc: float | None = None  # valid accuracy before training, when not from scratch
    init_weights: dict[str, Any] | None = None  # imagenet: the file, and if it is the published one

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    @property
    def train_model(self) -> nn.Module:
        """The model that runs training steps (DDP-wrapped, compiled): the step's own."""
        return self.train_step.model


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
        if trainer.ema is not None:
            trainer.ema.update(trainer.model, trainer.schedule.step - 1)
        loss_sum += loss * labels.shape[0]
        correct += (logits.argmax(1) == labels).sum()
        seen += labels.shape[0]
    totals = trainer.group.all_reduce_sum(
        torch.stack([loss_sum.double(), correct.double(), seen.double()])
    )
    loss_total, correct_total, seen_total = totals.tolist()  # the one host sync of the epoch
    seconds = time.perf_counter() - started
    result = {
        "loss": loss_total / max(seen_total, 1),
        "accuracy": correct_total / max(seen_total, 1),
        "images_per_s": seen_total / max(seconds, 1e-9),
    }
    if trainer.train_step.scaler is not None:  # fp16: every rank skips the same steps
        result["skipped_steps"] = trainer.train_step.take_skipped()
    return result


def evaluate_epoch(trainer: Trainer) -> dict[str, float]:
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


# Called by the main process after each epoch with the history so far (notebook 04's live curves).
EpochCallback = Callable[[list[dict[str, Any]], int], None]


def fit(
    config: TrainConfig,
    resume: bool = False,
    progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    """Train `config.model` on `config.data`; returns the run folder and its history.

    Under torchrun every process calls this; they train one model together (see `distributed`).
    `on_epoch(history, planned_epochs)` runs on the main process after each epoch's checkpoint.
    """
    group = distributed.from_environment(config.resolved_device().type)
    try:
        return _fit(config, resume, progress, group, on_epoch)
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


# Called on every process after each epoch's checkpoint with (epoch, rank, run folder). Empty
# in use; the tests add to it to end a process there as a crash would (tests/faults.py).
AFTER_CHECKPOINT: list[Callable[[int, int, Path], None]] = []


def _fit(
    config: TrainConfig,
    resume: bool,
    progress: bool | None,
    group: Distributed,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    progress = group.is_main and (sys.stderr.isatty() if progress is None else progress)
    config = replace(config, world_size=group.world_size)  # the caller's config stays as given
    check_trainable(config, group.world_size)  # a data folder it cannot train on: nothing written
    mode = Mode.RESUME if resume else Mode.NEW
    path = group.run_on_main(lambda: RunFolder.plan(config, mode)[0].path)
    # the initial weights first: a missing file or an offline download leaves no run folder
    start = None if resume else initial_state(config.model, config.init, progress)
    created = not resume and not path.exists()
    run = RunFolder(path, group.is_main)
    try:
        if not resume:
            group.run_on_main(run.create)
        previous = group.run_on_main(lambda: read_checkpoint(path / "last.pt")) if resume else None
        data = _prepare_data_once_per_node(config, progress, group)
        run.save_config(config)
        trainer = _make_trainer(config, data, group, start)
        _measure_start(trainer)
    except UserError:
        if created and run.writes:  # nothing trained yet: leave no half-made run folder
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    history: list[dict[str, Any]] = []
    start_epoch = 1
    if previous is not None:
        history, start_epoch = restore_state(trainer, previous, path / "last.pt")
    interrupted = False
    for epoch in range(start_epoch, trainer.epochs + 1):  # none left: killed after the last one
        row = _train_epoch(trainer, epoch, progress, run.path)
        if row is None:
            interrupted = True
            break
        history.append(row)
        run.save_epoch(trainer, history)
        group.barrier()  # no rank runs ahead while rank 0 still writes this epoch's checkpoint
        if group.is_main:
            _log(progress)(format_row(config.model, trainer.epochs, row, history))
            if on_epoch is not None:
                on_epoch(history, trainer.epochs)
        for hook in AFTER_CHECKPOINT:
            hook(epoch, group.rank, run.path)
    return run.close(trainer, history, interrupted)


def _log(progress: bool) -> Callable[[str], None]:
    """Where epoch lines go: above the progress bars when they show, else plain stdout."""
    return tqdm.write if progress else print


def _train_epoch(trainer: Trainer, epoch: int, progress: bool, path: Path) -> dict[str, Any] | None:
    """One epoch's training and evaluation as a history row; None when Ctrl-C ended it."""
    trainer.train_loader.set_epoch(epoch)
    started = time.perf_counter()
    try:
        train = train_one_epoch(trainer, trainer.train_loader, progress)
    except KeyboardInterrupt:
        if trainer.group.is_main:
            _log(progress)(
                f"interrupted in epoch {epoch}; last.pt holds epoch {epoch - 1}: "
                "continue with --resume"
            )
        return None
    if not math.isfinite(train["loss"]):
        raise TrainingDiverged(
            f"the training loss became {train['loss']} in epoch {epoch}; last.pt still holds "
            f"epoch {epoch - 1}: lower --lr (now {trainer.config.lr}) and start again",
            path,
        )
    row: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": round(train["loss"], 6),
        "train_acc": round(train["accuracy"], 6),
        **evaluate_epoch(trainer),
        "lr": round(trainer.schedule.lr(max(trainer.schedule.step - 1, 0)), 8),
        "seconds": round(time.perf_counter() - started, 3),
        "images_per_s": round(train["images_per_s"], 1),
    }
    if "skipped_steps" in train:  # fp16 only: steps the loss scaler skipped for an overflow
        row["skipped_steps"] = train["skipped_steps"]
    return row


class RankFailed(UserError):
    """One process of a distributed run failed; the job ends, the last checkpoint stands."""

    exit_code = 1


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
    torch.manual_seed(config.seed)
    model, note = _build_model(config, data, start)
    model, train_model, eager = _training_model(model, config, group, data.device)
    train_loader = data.loader("train", train=True)
    # the count the workbook's estimate prices too (the floor counts all processes' batches)
    plan = training_plan(config, len(data.rows("train")), group.world_size)
    schedule = Schedule(
        peak_lr=distributed.scaled_lr(config.lr, group.world_size, config.optimizer),
        total=plan.steps,
        warmup=int(config.warmup_epochs * plan.steps_per_epoch),
        kind=config.schedule,
    )
    criterion = _criterion(config, data)
    optimizer = make_optimizer(model, config)
    step = TrainStep(
        train_model,
        optimizer,
        criterion,
        config.autocast(),
        eager=eager if train_model is not eager else None,
        scaler=grad_scaler(config),
    )
    return Trainer(
        config=config,
        data=data,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        criterion=criterion,
        ema=WeightAverage(model, config.ema) if config.ema > 0 else None,
        group=group,
        train_loader=train_loader,
        epochs=plan.epochs,
        train_step=step,
        statistics_loader=data.statistics_loader(),
        init_note=note,
    )


def _build_model(
    config: TrainConfig, data: PreparedData, start: dict[str, torch.Tensor] | None
) -> tuple[nn.Module, str | None]:
    """The bare model on the device, in the run's memory layout, with `start`'s weights; and
    what loading them did."""
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
    note = None if start is None else load_initial_state(model, start, config.init)
    model = model.to(data.device)
    if config.use_channels_last():
        model.to(memory_format=torch.channels_last)
    return model, note


def _training_model(
    model: nn.Module, config: TrainConfig, group: Distributed, device: torch.device
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(bare model, the model training steps run, its eager form): SyncBatchNorm and DDP under
    several processes, then torch.compile where the config asks for it."""
    if config.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA GPUs (SyncBatchNorm runs only there); drop it")
    train_model = model
    if group.enabled:
        if config.sync_bn:
            model = train_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = DistributedDataParallel(
            model, device_ids=[group.local_rank] if device.type == "cuda" else None
        )
    eager = train_model
    if config.use_compile():
        train_model = torch.compile(train_model)
    return model, train_model, eager


def _criterion(config: TrainConfig, data: PreparedData) -> nn.Module:
    return nn.CrossEntropyLoss(
        weight=class_weights(data).to(data.device) if config.class_balance == "weights" else None,
        label_smoothing=config.label_smoothing,
    )


def _measure_start(trainer: Trainer) -> None:
    """Where initial weights stand on this task before any step (none from scratch), and for
    ImageNet's, which file they came from."""
    if trainer.init_note is None:
        return
    trainer.init_valid_acc = acc = evaluate_epoch(trainer)["valid_acc"]
    if trainer.group.is_main:
        print(f"{trainer.config.model}: {trainer.init_note}; valid acc before training {acc:.2%}")
    if trainer.config.init == "imagenet":
        trainer.init_weights = imagenet_file_check(trainer.config.model)


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
    if row.get("skipped_steps"):
        text += f"  {row['skipped_steps']} step(s) skipped (fp16 overflow)"
    left = (epochs - int(row["epoch"])) * sum(r["seconds"] for r in history) / len(history)
    return text + (f"  ETA {int(left // 60)}m{int(left % 60):02d}s" if left > 0 else "  done")
