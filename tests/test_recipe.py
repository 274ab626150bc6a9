"""The training recipe: budgets that follow the data, BatchNorm statistics matching the weights."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from lab3.config import PROFILES, make_config
from lab3.data.dataset import LeukemiaDataset
from lab3.data.formats import TEST_CSVS
from lab3.data.layouts import load_layout
from lab3.engine.data import prepare_data
from lab3.engine.evaluate import LoadedCheckpoint, Predictions
from lab3.engine.loop import fit
from lab3.errors import UserError
from lab3.workbook.narrative import training_description


def test_budget_follows_the_dataset_size() -> None:
    """Catches a fixed epoch count (a small set starved of steps) and a budget that stops growing
    with the data: steps = max(epochs * steps_per_epoch, min_steps)."""
    config = make_config("quick", model="resnet50", epochs=5, min_steps=300)
    for steps_per_epoch in (1, 4, 37, 60, 250, 1000):
        epochs = config.planned_epochs(steps_per_epoch)
        budget = epochs * steps_per_epoch
        wanted = max(5 * steps_per_epoch, 300)
        assert wanted <= budget < wanted + steps_per_epoch  # at most one epoch of rounding up
    assert config.planned_epochs(4) == 75  # 150 images at batch 32: the floor decides
    assert config.planned_epochs(250) == 5  # a large set: the epochs decide, budget grows
    assert config.planned_epochs(1000) * 1000 == 4 * config.planned_epochs(250) * 250


def test_every_profile_depth_has_a_floor() -> None:
    """Catches a profile depth left without a step floor (the 20-step ResNet50 of old)."""
    for name in ("quick", "full"):
        for model in ("resnet18", "resnet50", "resnet152"):
            assert make_config(name, model=model).min_steps > 0, (name, model)
    assert isinstance(PROFILES["quick"]["min_steps"], dict)


def test_a_small_set_trains_the_floor_in_epochs(small_synthetic: Path, tmp_path: Path) -> None:
    """Catches fit ignoring the floor: 32 images at batch 16 are 2 steps an epoch, so a floor of
    6 steps makes 3 epochs of history from a nominal 1."""
    config = make_config(
        "tiny", data=str(small_synthetic), out=str(tmp_path / "run"), train_limit=32,
        min_steps=6, device="cpu",
    )  # fmt: skip
    result = fit(config, progress=False)
    assert result.history["epoch"].tolist() == [1, 2, 3]


def test_precise_bn_statistics_are_the_ones_evaluated(
    small_synthetic: Path, tmp_path: Path
) -> None:
    """Catches best.pt keeping the lagging running averages of training: its BatchNorm buffers
    must equal a fresh re-estimate over the same training images, and `lab3 evaluate` of best.pt
    must reproduce the validation accuracy the history recorded for that epoch."""
    config = make_config(
        "tiny", data=str(small_synthetic), out=str(tmp_path / "run"), epochs=2,
        train_limit=32, precise_bn=24, image_size=32, tta=1, device="cpu",
    )  # fmt: skip
    result = fit(config, progress=False)
    best = LoadedCheckpoint.open(result.run_dir / "best.pt", device="cpu")
    fresh = copy.deepcopy(best.model)
    with config.autocast():
        update_bn(prepare_data(config, progress=False).statistics_loader(), fresh)
    saved, recomputed = best.model.state_dict(), fresh.state_dict()
    for name, value in saved.items():
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(value, recomputed[name], rtol=1e-4, atol=1e-5)
    history = pd.read_csv(result.run_dir / "history.csv").set_index("epoch")
    evaluated = best.evaluate("valid", tta=1).metrics["accuracy"]
    assert evaluated == history.loc[result.best_epoch, "valid_acc"]


def test_without_precise_bn_the_running_averages_differ(
    small_synthetic: Path, tmp_path: Path
) -> None:
    """The control for the test above: with `precise_bn=0` the buffers are training's running
    averages, which a re-estimate does change (so the comparison above can fail)."""
    config = make_config(
        "tiny", data=str(small_synthetic), out=str(tmp_path / "run"), epochs=1,
        train_limit=32, precise_bn=0, image_size=32, device="cpu",
    )  # fmt: skip
    result = fit(config, progress=False)
    best = LoadedCheckpoint.open(result.run_dir / "best.pt", device="cpu")
    fresh = copy.deepcopy(best.model)
    update_bn(prepare_data(dataclasses.replace(config, precise_bn=24), progress=False)
              .statistics_loader(), fresh)  # fmt: skip
    name = "bn1.running_mean"
    assert not torch.allclose(best.model.state_dict()[name], fresh.state_dict()[name])


DEPTHS = ("resnet18", "resnet50", "resnet152")


def test_dataset_offers_each_depths_test_order(fixtures: Path) -> None:
    """Catches a test split in one fixed order: on the course's real CSVs, the Dataset for a
    depth lists the test images exactly as that depth's CSV does (and the three orders differ)."""
    root = fixtures / "ta_csv"
    layout = load_layout(root, check_files=False)
    orders = []
    for model in DEPTHS:
        csv = pd.read_csv(root / TEST_CSVS[model])["Path"].tolist()
        dataset = LeukemiaDataset(root, "test", layout=layout, model=model)
        assert layout.split("test", model)["id"].tolist() == csv
        assert dataset.img_name == layout.split("test", model)["path"].tolist()
        orders.append(csv)
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(orders[2])
    assert orders[0] != orders[1] != orders[2] != orders[0]
    with pytest.raises(UserError, match="no test CSV for resnet34"):
        layout.split("test", "resnet34")


def test_each_submission_follows_its_depths_csv(fixtures: Path) -> None:
    """Catches a submission written in one order for every depth, or predictions paired with the
    wrong IDs: on the real CSVs, each depth's submission lists its own CSV's IDs in order, and
    each ID carries the prediction made for that image."""
    root = fixtures / "ta_csv"
    layout = load_layout(root, check_files=False)
    test = layout.table[layout.table["split"] == "test"]
    truth = {i: int(i.rsplit("/", 1)[1].split(".")[0]) % 2 for i in test["id"]}
    probs = np.eye(2)[[truth[i] for i in test["id"]]]
    rows = test.index.to_numpy()
    predictions = Predictions(probs, np.full(len(rows), -1), rows)
    for model in DEPTHS:
        config = make_config("quick", model=model, data=str(root), tta=1)
        data = SimpleNamespace(layout=layout)
        loaded = LoadedCheckpoint(root, config, {"arch": model}, nn.Identity(), data)  # type: ignore[arg-type]
        loaded._predictions["test", 1] = predictions
        frame = loaded.submission()
        assert frame["ID"].tolist() == pd.read_csv(root / TEST_CSVS[model])["Path"].tolist()
        assert frame["label"].tolist() == [truth[i] for i in frame["ID"]]


def test_report_describes_the_budget_and_precise_bn() -> None:
    """Catches a report that hides the step floor or precise BN (or claims them when off)."""
    text = training_description(make_config("quick", model="resnet50"))
    assert (
        "(the table below; 6 for ResNet50), or more where those give fewer than its floor "
        "of optimizer steps (180 for ResNet50)" in text
    )
    assert "re-estimated over 256 training images (precise BN)" in text
    plain = training_description(make_config("tiny"))
    assert "optimizer steps" not in plain and "precise BN" not in plain
