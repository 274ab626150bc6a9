"""The classical baseline every report sets the networks against: a linear classifier on
hand-measured cell features, the kind of model a haematology image-analysis paper would have
fitted before deep learning.

Synthetic data prove the pipeline, real cells judge the recipe: on real cells a ResNet trained
from scratch for a few minutes can lose to sixteen measurements and a logistic regression, and a
report that compares it only with the majority class would not say so. The baseline is fitted on
the training split and scored on the same images as the networks, so each depth's lead over it is
a paired difference (`lab3.metrics.paired_balanced_difference`), far tighter than two independent
accuracies' errors.

The classifier: the features (`lab3.data.features.FEATURE_NAMES`) standardised on the training
split, then L2-regularised logistic regression (C = 1, scikit-learn's default); no tuning, so no
split is used twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lab3.data.features import FEATURE_NAMES, feature_matrix
from lab3.data.layouts import load_layout
from lab3.engine.evaluate import Predictions
from lab3.metrics import classification_metrics, paired_balanced_difference

NAME = "classical features"
DESCRIPTION = (
    f"logistic regression on {len(FEATURE_NAMES)} hand-measured cell features (size, outline, "
    "colour, texture at three scales, dark and bright spots), fitted on the training split"
)


@dataclass(frozen=True)
class ClassicalBaseline:
    """The baseline's predictions and metrics per evaluated split, and what fitting it took."""

    predictions: dict[str, Predictions]
    metrics: dict[str, dict[str, float]]
    seconds: float


def fit_classical(
    data: str, split_mode: str, seed: int, splits: tuple[str, ...], workers: int | None = None
) -> ClassicalBaseline:
    """Fit on the training split of `data` (as the networks' layout splits it) and predict each
    labelled split of `splits`. Measured once per process and dataset (`_fit`)."""
    return _fit(str(data), split_mode, seed, tuple(splits), workers)


@lru_cache(maxsize=4)
def _fit(
    data: str, split_mode: str, seed: int, splits: tuple[str, ...], workers: int | None
) -> ClassicalBaseline:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    layout = load_layout(data, split_mode=split_mode, seed=seed)
    table = layout.table
    labelled = [s for s in splits if (table.loc[table["split"] == s, "label"] >= 0).all()]
    wanted = table.index[table["split"].isin(["train", *labelled])].to_numpy()
    x = feature_matrix(table.loc[wanted, "path"].tolist(), workers)
    y = table.loc[wanted, "label"].to_numpy()
    split_of = table.loc[wanted, "split"].to_numpy()
    predictions, metrics = {}, {}
    train = split_of == "train"
    if len(np.unique(y[train])) < 2:  # nothing to separate (a set lab3 refuses to train on)
        return ClassicalBaseline(predictions, metrics, time.perf_counter() - start)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(x[train], y[train])
    for split in labelled:
        chosen = split_of == split
        probs = np.zeros((int(chosen.sum()), layout.num_classes))
        probs[:, model.classes_] = model.predict_proba(x[chosen])  # a grade train lacks: 0
        predictions[split] = Predictions(probs, y[chosen], wanted[chosen])
        metrics[split] = classification_metrics(y[chosen], probs, layout.num_classes)[0]
    return ClassicalBaseline(predictions, metrics, time.perf_counter() - start)


def paired_lead(network: Predictions, baseline: Predictions) -> tuple[float, float, float]:
    """The network's balanced accuracy minus the baseline's on the images both predicted, with
    its 95 % interval (paired: the images both get right or both get wrong cancel)."""
    position = {int(row): i for i, row in enumerate(baseline.rows)}
    shared = [i for i, row in enumerate(network.rows) if int(row) in position]
    if not shared:
        return np.nan, np.nan, np.nan
    mine = np.asarray(shared)
    theirs = np.asarray([position[int(network.rows[i])] for i in shared])
    labels = network.labels[mine]
    return paired_balanced_difference(
        labels,
        network.predicted[mine] == labels,
        baseline.predicted[theirs] == labels,
    )
