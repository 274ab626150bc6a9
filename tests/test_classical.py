"""The classical-features baseline every report sets the networks against: fitted on the training
split, scored on the networks' own images, compared with them pairwise in balanced accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from builders import model_results

from lab3.data.features import FEATURE_NAMES, cell_features
from lab3.data.layouts import load_layout
from lab3.engine.evaluate import Predictions
from lab3.metrics import paired_balanced_difference
from lab3.workbook.classical import NAME as CLASSICAL_NAME
from lab3.workbook.classical import ClassicalBaseline, fit_classical, paired_lead
from lab3.workbook.results import metrics_table


def constructed_baseline(
    accuracy: float, n: int = 400, blast_share: float = 0.68
) -> ClassicalBaseline:
    """A baseline on `model_results`' images whose mistakes fall on the last images (blasts),
    where a constructed depth's fall on the first (normal cells)."""
    ones = round(n * blast_share)
    labels = np.r_[np.zeros(n - ones), np.ones(ones)].astype(np.int64)
    predicted = labels.copy()
    wrong = round((1 - accuracy) * n)
    predicted[n - wrong :] = 1 - predicted[n - wrong :]
    predictions = Predictions(np.eye(2)[predicted], labels, np.arange(n))
    metrics = {
        "n": n,
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(np.mean([(predicted == labels)[labels == c].mean()
                                            for c in (0, 1)])),
    }  # fmt: skip
    return ClassicalBaseline({"test": predictions}, {"test": metrics}, 1.0)


def test_paired_balanced_difference_averages_the_classes_recall_differences() -> None:
    labels = np.array([0] * 4 + [1] * 8)
    better = np.array([1, 1, 1, 1] + [1] * 8)
    worse = np.array([0, 0, 1, 1] + [1] * 8)
    mean, lo, hi = paired_balanced_difference(labels, better, worse)
    assert mean == pytest.approx(0.25)  # normal recall 100 % vs 50 %, blast recall equal
    # class 0's differences (1, 1, 0, 0): variance 1/3 over 4 images, divided by 2 classes squared
    half_width = 1.959964 * math.sqrt((1 / 3) / 4 / 4)
    assert (lo, hi) == pytest.approx((0.25 - half_width, 0.25 + half_width), abs=1e-5)
    assert math.isnan(paired_balanced_difference(labels[:5], better[:5], worse[:5])[0])


def test_paired_lead_pairs_the_images_by_their_layout_row() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0])
    network = Predictions(np.eye(2)[labels], labels, np.array([10, 11, 12, 13, 14, 15]))
    shuffled = np.array([3, 5, 0, 1, 2, 4])  # the baseline lists the same rows in another order
    wrong = labels[shuffled].copy()
    wrong[labels[shuffled] == 0] = 1  # every normal cell wrong, every blast right
    baseline = Predictions(np.eye(2)[wrong], labels[shuffled], np.arange(10, 16)[shuffled])
    mean, lo, hi = paired_lead(network, baseline)
    assert mean == pytest.approx(0.5) and lo == pytest.approx(hi)  # no spread: a sure lead


def test_the_features_are_named_and_finite_on_a_black_frame_and_on_a_smear() -> None:
    frame = np.zeros((120, 120, 3), np.uint8)
    frame[30:90, 35:85] = (90, 40, 110)
    smear = np.full((120, 120, 3), (225, 200, 190), np.uint8)
    smear[30:90, 35:85] = (90, 40, 110)
    for image in (frame, smear):
        features = cell_features(image)
        assert features.shape == (len(FEATURE_NAMES),) and np.isfinite(features).all()
        assert features[0] == 60 * 50, "the area is the cell's, not the frame's"
    assert not cell_features(np.zeros((20, 20, 3), np.uint8)).any(), "no cell: zeros"


def test_the_baseline_is_fitted_on_train_and_scored_on_each_labelled_split(
    learnable: Path,
) -> None:
    baseline = fit_classical(str(learnable), "stratified", 0, ("valid", "test"), workers=1)
    table = load_layout(learnable).table
    for split in ("valid", "test"):
        predictions = baseline.predictions[split]
        rows = table.index[table["split"] == split].to_numpy()
        assert sorted(predictions.rows) == sorted(rows)
        assert (predictions.labels == table.loc[predictions.rows, "label"].to_numpy()).all()
        majority = np.bincount(predictions.labels).max() / len(predictions.labels)
        assert baseline.metrics[split]["accuracy"] > majority, "the colour cue is learned"
        assert baseline.metrics[split]["n"] == len(rows)


def test_the_metrics_table_has_the_baselines_line_under_the_depths() -> None:
    results = {m: model_results(m, a) for m, a in (("resnet18", 0.8), ("resnet50", 0.9))}
    assert CLASSICAL_NAME not in metrics_table(results).index.get_level_values("model")
    results["resnet18"].baseline = constructed_baseline(0.85)
    table = metrics_table(results)
    assert table.index[-1] == (CLASSICAL_NAME, "test")
    assert table.loc[(CLASSICAL_NAME, "test"), "accuracy"] == pytest.approx(0.85)
    assert table.loc[(CLASSICAL_NAME, "test"), "images"] == 400
