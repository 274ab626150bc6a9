"""A training's length in optimizer steps (`lab3.engine.plan`): the batches each training loader
serves, the epochs `fit` trains, and the steps the workbook's estimate prices, all one count."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from lab3.config import PROFILES, make_config
from lab3.data.layouts import load_layout
from lab3.engine.data import PreparedData
from lab3.engine.distributed import Distributed
from lab3.engine.loop import fit
from lab3.engine.plan import training_plan
from lab3.engine.step import TrainStep
from lab3.workbook.estimate import count_work


def training_loader(config, images: int, rank: int, world_size: int):
    """The training loader `fit` would make on one of `world_size` processes, over a training
    split of `images` blank images."""
    data = PreparedData(
        config,
        layout=SimpleNamespace(table=pd.DataFrame({"split": ["train"] * images})),
        pipeline=None,
        cache=SimpleNamespace(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        images=np.zeros((images, 8, 8, 3), dtype=np.uint8),
        labels=np.arange(images) % 2,
        device=torch.device("cpu"),
        group=Distributed(rank=rank, world_size=world_size),
    )
    return data.loader("train", train=True)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_the_plan_counts_the_batches_every_training_loader_serves(world_size: int) -> None:
    """Catches a plan that counts other steps than the loaders serve: the last partial batch
    kept where it is dropped (or dropped where it is the only one), unequal shards, a train
    limit ignored, or a loader whose length is not what it yields."""
    batch = 4
    for images in range(1, 2 * batch * world_size + 3):
        for limit in (0, 5):
            config = make_config("tiny", batch_size=batch, train_limit=limit, device="cpu")
            plan = training_plan(config, images, world_size)
            for rank in range(world_size):
                loader = training_loader(config, images, rank, world_size)
                served = sum(1 for _ in loader)
                assert len(loader) == served == plan.steps_per_epoch, (images, limit, rank)


def test_the_estimate_counts_the_steps_and_epochs_fit_trains(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches the estimate and the fit loop disagreeing on a training's length: a real fit's
    epochs (its history) and optimizer steps (the engine's steps taken) are those the estimate
    of notebook 04 prices. 48 images at batch 20 are 2 steps an epoch (the last 8 images wait),
    so a floor of 7 steps makes 4 epochs of 8 steps; counting the partial batch would make 3
    epochs of 9."""
    monkeypatch.setitem(PROFILES, "tiny", {**PROFILES["tiny"], "batch_size": 20, "min_steps": 7})
    taken: list[int] = []
    real_step = TrainStep.__call__

    def counted(step, images, labels):
        taken.append(len(labels))
        return real_step(step, images, labels)

    monkeypatch.setattr(TrainStep, "__call__", counted)
    config = make_config("tiny", data=str(small_synthetic), out=str(tmp_path / "r"), device="cpu")
    history = fit(config, progress=False).history
    plan = training_plan(config, 48)
    assert len(history) == plan.epochs == 4
    assert len(taken) == plan.steps == 8 and set(taken) == {20}
    work = count_work(load_layout(small_synthetic), "tiny", ["resnet18"], device="cpu")
    train = work["04_train_resnet18"]
    assert train.steps == {"resnet18": len(taken)}
    n_valid, n_test = 16, 12  # each epoch evaluates valid and the labelled test split
    assert train.images == {"resnet18": len(history) * (n_valid + n_test)}


def test_several_processes_plan_their_shards_and_the_floor_counts_all_of_them() -> None:
    """Catches a plan that counts one process's steps as the whole epoch's: 1200 images at
    batch 32 on 2 processes are 18 steps each an epoch, 36 together, so a floor of 220 steps
    takes 7 epochs (one process alone: 37 steps, 6 epochs)."""
    config = make_config("quick", model="resnet18", device="cpu")
    two, one = training_plan(config, 1200, 2), training_plan(config, 1200)
    assert (two.steps_per_epoch, two.epochs, two.images) == (18, 7, 1200)
    assert (one.steps_per_epoch, one.epochs) == (37, 6)
