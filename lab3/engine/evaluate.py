"""Prediction (with dihedral test-time augmentation) and evaluation of a trained model."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from lab3.config import TrainConfig
from lab3.data.layouts import Layout
from lab3.data.loader import DeviceLoader
from lab3.data.preprocess import dihedral_views
from lab3.engine.checkpoint import model_from_state, read_checkpoint
from lab3.engine.data import PreparedData, prepare_data
from lab3.engine.distributed import Distributed
from lab3.errors import UserError
from lab3.metrics import classification_metrics
from lab3.submission import build_submission, read_test_ids


@dataclass
class Predictions:
    probs: np.ndarray  # N x classes, averaged over the TTA views
    labels: np.ndarray  # -1 where unknown
    rows: np.ndarray  # rows of the layout table, aligned with probs

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DeviceLoader,
    tta: int = 1,
    autocast: contextlib.AbstractContextManager | None = None,
    group: Distributed | None = None,
) -> Predictions:
    """Class probabilities for every image of the loader, averaged over `tta` dihedral views.

    Under torchrun each rank predicts its shard and `group` gathers the shards, so every rank
    holds the predictions of the whole split, in row order, as one process would.
    """
    if not 1 <= tta <= 8:
        raise UserError(f"tta must be between 1 and 8 dihedral views, not {tta}")
    model.eval()
    autocast = autocast or contextlib.nullcontext()
    probs, labels, rows = [], [], []
    for images, batch_labels, batch_rows in loader:
        total = None
        for view in dihedral_views(images, tta):
            with autocast:
                p = torch.softmax(model(view).float(), dim=1)
            total = p if total is None else total + p
        assert total is not None
        probs.append((total / tta).cpu())
        labels.append(batch_labels.cpu())
        rows.append(batch_rows)
    if group is not None and group.enabled:
        shards = group.gather((probs, labels, rows))
        probs, labels, rows = (sum((shard[i] for shard in shards), []) for i in range(3))
    order = np.argsort(np.concatenate(rows)) if rows else np.array([], dtype=np.int64)
    return Predictions(
        probs=torch.cat(probs).numpy()[order] if probs else np.zeros((0, 0)),
        labels=torch.cat(labels).numpy()[order] if labels else np.zeros(0, dtype=np.int64),
        rows=np.concatenate(rows)[order] if rows else np.zeros(0, dtype=np.int64),
    )


def evaluate_loader(
    model: nn.Module,
    loader: DeviceLoader,
    autocast: contextlib.AbstractContextManager | None = None,
    tta: int = 1,
    group: Distributed | None = None,
) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing) and accuracy on a labelled split."""
    result = predict(model, loader, tta, autocast, group)
    if len(result.labels) == 0:
        return {"loss": float("nan"), "accuracy": float("nan")}
    picked = result.probs[np.arange(len(result.labels)), result.labels]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return {"loss": loss, "accuracy": float((result.predicted == result.labels).mean())}


@dataclass
class Evaluation:
    """What `lab3 evaluate` shows: the metrics of one checkpoint on one split."""

    checkpoint: Path
    split: str
    config: TrainConfig
    class_names: list[str]
    predictions: Predictions
    metrics: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray | None = None


@dataclass
class LoadedCheckpoint:
    """A checkpoint opened once against a dataset: its model on the device, the prepared data,
    and the predictions made so far, so evaluating several splits and writing the submission
    read the weights and predict each split only once."""

    path: Path
    config: TrainConfig
    state: dict
    model: nn.Module
    data: PreparedData
    _predictions: dict[tuple[str, int], Predictions] = field(default_factory=dict, repr=False)

    @classmethod
    def open(
        cls,
        checkpoint: str | Path,
        data: str | None = None,
        device: str = "auto",
        progress: bool = False,
        layouts: dict[tuple, Layout] | None = None,
    ) -> LoadedCheckpoint:
        """`layouts`: data folders parsed for other checkpoints, by (data, split mode, seed);
        one this checkpoint shares is not read again, and its own is added."""
        state = read_checkpoint(checkpoint)
        config = TrainConfig.from_dict({**state["config"], "device": device})
        if data is not None:
            config.data = str(data)
        key = (str(config.data), config.split_mode, config.seed)
        layout = None if layouts is None else layouts.get(key)
        prepared = prepare_data(config, progress=progress, layout=layout)
        if layouts is not None:
            layouts[key] = prepared.layout
        if state["num_classes"] != prepared.layout.num_classes:
            raise UserError(
                f"checkpoint has {state['num_classes']} classes, the data in {config.data} has "
                f"{prepared.layout.num_classes}; evaluate it on the dataset it was trained for",
                checkpoint,
            )
        model = model_from_state(state, checkpoint).to(prepared.device)
        if config.use_channels_last():  # as training evaluated it: same layout, same numbers
            model.to(memory_format=torch.channels_last)
        return cls(Path(checkpoint), config, state, model, prepared)

    def predict(self, split: str, tta: int | None = None) -> Predictions:
        views = tta if tta is not None else self.config.tta
        if (split, views) not in self._predictions:
            loader = self.data.loader(split)
            self._predictions[split, views] = predict(
                self.model, loader, views, self.config.autocast()
            )
        return self._predictions[split, views]

    def evaluate(self, split: str = "valid", tta: int | None = None) -> Evaluation:
        """The lab's demo: predict a labelled split and compute the metrics."""
        if not self.data.has_labels(split):
            raise UserError(
                f"the {split} split of {self.config.data} has no labels to evaluate against; "
                "use --split valid (or provide test_labels.csv)",
                self.path,
            )
        views = tta if tta is not None else self.config.tta
        result = self.predict(split, views)
        metrics, confusion = classification_metrics(
            result.labels, result.probs, num_classes=self.data.layout.num_classes
        )
        metrics["tta_views"] = views
        class_names = list(self.state["class_names"])
        return Evaluation(self.path, split, self.config, class_names, result, metrics, confusion)

    def submission(
        self, test_csv: str | Path | None = None, tta: int | None = None
    ) -> pd.DataFrame:
        """The Kaggle CSV: `ID,label` in the test CSV's order, validated."""
        layout = self.data.layout
        csv = (
            Path(test_csv)
            if test_csv
            else default_test_csv(layout.test_csvs, self.state["arch"], self.config.data)
        )
        ids = read_test_ids(csv)
        result = self.predict("test", tta)
        known = layout.table["id"].to_numpy()[result.rows]
        predictions = dict(zip(known.tolist(), result.predicted.tolist(), strict=True))
        unknown = [i for i in ids if i not in predictions]
        if unknown:
            raise UserError(
                f"{len(unknown)} IDs (first: {unknown[0]}) are not test images of "
                f"{self.config.data}; pass the test CSV of that dataset",
                csv,
            )
        return build_submission(ids, predictions, layout.num_classes)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "valid",
    tta: int | None = None,
    device: str = "auto",
    progress: bool = False,
) -> Evaluation:
    """The lab's demo: load trained weights, predict a split, compute the metrics."""
    return LoadedCheckpoint.open(checkpoint, data, device, progress).evaluate(split, tta)


def default_test_csv(test_csvs: dict[str, Path], arch: str, data: str) -> Path:
    """The test CSV named for the checkpoint's depth, else the first present (with a notice for a
    model the course names no test CSV for, such as a torchvision network)."""
    if arch in test_csvs:
        return test_csvs[arch]
    if test_csvs:
        first = next(iter(test_csvs.values()))
        print(
            f"notice: {arch} has no test CSV of its own; its submission follows {first.name}",
            file=sys.stderr,
        )
        return first
    raise UserError("no resnet_*_test.csv in the data folder; pass --test-csv FILE", data)


def predict_submission(
    checkpoint: str | Path,
    data: str | None = None,
    test_csv: str | Path | None = None,
    tta: int | None = None,
    device: str = "auto",
    progress: bool = False,
) -> pd.DataFrame:
    """The Kaggle CSV for one checkpoint: `ID,label` in the test CSV's order, validated."""
    return LoadedCheckpoint.open(checkpoint, data, device, progress).submission(test_csv, tta)
