"""How long a training runs, in optimizer steps: the count `fit` plans its schedule by and the
workbook's estimate prices, so the two cannot disagree.

Each process's training loader (`PreparedData.loader("train", train=True)`) serves an equal
shard of the training images (`lab3.data.loader.shard`) in batches of `batch_size`, the last
partial batch dropped unless it is the only one; the epochs follow from all processes' batches
together (`TrainConfig.planned_epochs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab3.config import TrainConfig


@dataclass(frozen=True)
class TrainingPlan:
    """The optimizer steps of one process: `steps_per_epoch` in each of `epochs` epochs."""

    images: int  # the training images each epoch draws from (after the config's train_limit)
    steps_per_epoch: int
    epochs: int

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def steps_per_epoch(images: int, batch_size: int, world_size: int = 1) -> int:
    """Batches of one process's training loader over `images` training images."""
    per_rank = images // world_size
    if per_rank > batch_size:
        return per_rank // batch_size  # the last partial batch is dropped
    return 1 if per_rank else 0


def training_plan(config: TrainConfig, train_images: int, world_size: int = 1) -> TrainingPlan:
    """What `fit` of `config` trains on a training split of `train_images` images (the config's
    `train_limit` applies) with `world_size` processes."""
    images = min(config.train_limit or train_images, train_images)
    steps = steps_per_epoch(images, config.batch_size, world_size)
    return TrainingPlan(images, steps, config.planned_epochs(steps * world_size))
