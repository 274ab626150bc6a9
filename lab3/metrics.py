"""Classification metrics through scikit-learn, in one flat dict per evaluation.

Weighted F1 is C-NMC 2019's official score; quadratic Cohen's kappa is the retinopathy edition's.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from sklearn import metrics as skm


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, num_classes: int
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of probabilities (N x classes) against labels; returns (metrics, confusion)."""
    return metrics_from_predictions(labels, probs.argmax(1), num_classes, probs)


def metrics_from_predictions(
    labels: np.ndarray,
    predicted: np.ndarray,
    num_classes: int,
    probs: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    classes = list(range(num_classes))
    labels = np.asarray(labels)
    predicted = np.asarray(predicted)
    confusion = skm.confusion_matrix(labels, predicted, labels=classes)
    out: dict[str, float] = {
        "n": int(len(labels)),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)),
        "weighted_f1": float(
            skm.f1_score(labels, predicted, average="weighted", labels=classes, zero_division=0)
        ),
        "macro_f1": float(
            skm.f1_score(labels, predicted, average="macro", labels=classes, zero_division=0)
        ),
    }
    if num_classes == 2:
        tn, fp, fn, tp = confusion.ravel()
        out["sensitivity"] = float(tp / (tp + fn)) if tp + fn else float("nan")
        out["specificity"] = float(tn / (tn + fp)) if tn + fp else float("nan")
        out["precision"] = float(tp / (tp + fp)) if tp + fp else float("nan")
        out["recall"] = out["sensitivity"]
        out["f1"] = float(skm.f1_score(labels, predicted, zero_division=0))
        out["kappa"] = float(skm.cohen_kappa_score(labels, predicted))
    else:
        out["kappa_quadratic"] = float(
            skm.cohen_kappa_score(labels, predicted, weights="quadratic")
        )
    if probs is not None and len(np.unique(labels)) == num_classes:
        if num_classes == 2:
            out["roc_auc"] = float(skm.roc_auc_score(labels, probs[:, 1]))
        else:
            out["roc_auc"] = float(
                skm.roc_auc_score(labels, probs, multi_class="ovr", labels=classes)
            )
    return out, confusion


def format_metrics(metrics: dict[str, float]) -> str:
    lines = []
    for name, value in metrics.items():
        lines.append(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    return "\n".join(lines)


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images."""
    return math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / max(n, 1))


def paired_difference(
    better: np.ndarray, worse: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of `better - worse` (per-image correctness, 0/1, on the same images) with its
    normal-approximation confidence interval. Pairing removes the images both get right or both
    get wrong, so the interval is far tighter than two independent accuracies' errors."""
    diff = np.asarray(better, dtype=float) - np.asarray(worse, dtype=float)
    if len(diff) == 0:
        return math.nan, math.nan, math.nan
    mean = float(diff.mean())
    spread = float(diff.std(ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return mean, mean - z * spread, mean + z * spread


def paired_balanced_difference(
    labels: np.ndarray, better: np.ndarray, worse: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """`paired_difference` for balanced accuracy: the mean over classes of each class's paired
    recall difference, with its normal-approximation interval (the classes' variances add,
    each divided by its count and by the number of classes squared). Balanced accuracy is what
    a set with uneven classes is judged by: a model that answers the majority class gains
    nothing on it."""
    labels = np.asarray(labels)
    diff = np.asarray(better, dtype=float) - np.asarray(worse, dtype=float)
    per_class = [diff[labels == c] for c in np.unique(labels)]
    if not per_class or any(len(d) < 2 for d in per_class):
        return math.nan, math.nan, math.nan
    mean = float(np.mean([d.mean() for d in per_class]))
    variance = sum(float(d.var(ddof=1)) / len(d) for d in per_class) / len(per_class) ** 2
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return mean, mean - z * math.sqrt(variance), mean + z * math.sqrt(variance)
