"""Metrics against values counted by hand: a wrong cell of the confusion matrix, a swapped
sensitivity and specificity or a wrong interval shows here (and kills mutmut's mutants)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab3.metrics import (
    classification_metrics,
    format_metrics,
    metrics_from_predictions,
    paired_difference,
    standard_error,
)

# 10 images: 4 normal (0), 6 blasts (1); tn 3, fp 1, fn 2, tp 4
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
PREDICTED = np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1])


def test_binary_metrics_from_the_confusion_counts() -> None:
    metrics, confusion = metrics_from_predictions(LABELS, PREDICTED, 2)
    assert confusion.tolist() == [[3, 1], [2, 4]], "rows true, columns predicted"
    assert metrics["n"] == 10 and isinstance(metrics["n"], int)
    assert metrics["accuracy"] == pytest.approx(0.7)
    assert metrics["sensitivity"] == pytest.approx(4 / 6) == metrics["recall"]
    assert metrics["specificity"] == pytest.approx(3 / 4)
    assert metrics["precision"] == pytest.approx(4 / 5)
    assert metrics["balanced_accuracy"] == pytest.approx((4 / 6 + 3 / 4) / 2)
    f1_blast = 2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6)
    f1_normal = 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)
    assert metrics["f1"] == pytest.approx(f1_blast)
    assert metrics["macro_f1"] == pytest.approx((f1_blast + f1_normal) / 2)
    assert metrics["weighted_f1"] == pytest.approx(0.6 * f1_blast + 0.4 * f1_normal)
    observed, expected = 0.7, 0.4 * 0.5 + 0.6 * 0.5  # predicted shares 5/10 and 5/10
    assert metrics["kappa"] == pytest.approx((observed - expected) / (1 - expected))
    assert "roc_auc" not in metrics, "no probabilities given"
    assert "kappa_quadratic" not in metrics


def test_undefined_rates_are_nan_not_zero() -> None:
    metrics, confusion = metrics_from_predictions(np.array([1, 1]), np.array([1, 1]), 2)
    assert confusion.tolist() == [[0, 0], [0, 2]]
    assert math.isnan(metrics["specificity"]) and metrics["sensitivity"] == 1.0
    assert metrics["precision"] == 1.0
    none_predicted, _ = metrics_from_predictions(np.array([0, 1]), np.array([0, 0]), 2)
    assert math.isnan(none_predicted["precision"]) and none_predicted["sensitivity"] == 0.0
    no_blasts, _ = metrics_from_predictions(np.array([0, 0]), np.array([0, 1]), 2)
    assert math.isnan(no_blasts["sensitivity"]) and no_blasts["specificity"] == 0.5


def test_probabilities_give_the_roc_auc_of_the_blast_column() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 0, 1])
    metrics, confusion = classification_metrics(labels, probs, 2)
    # pairs (blast, normal) ranked right: (0.4 > 0.1), (0.8 > 0.1), (0.8 > 0.7); wrong (0.4 < 0.7)
    assert metrics["roc_auc"] == pytest.approx(3 / 4)
    assert confusion.tolist() == [[1, 1], [1, 1]], "argmax of the probabilities"
    one_class, _ = classification_metrics(np.array([1, 1]), probs[:2], 2)
    assert "roc_auc" not in one_class, "undefined with one class present"


def test_five_grades_use_quadratic_kappa_and_ovr_auc() -> None:
    labels = np.array([0, 1, 2, 3, 4, 4])
    predicted = np.array([0, 1, 2, 3, 4, 0])
    probs = np.eye(5)[predicted] * 0.9 + 0.02
    metrics, confusion = classification_metrics(labels, probs, 5)
    assert confusion.shape == (5, 5) and confusion[4, 0] == 1
    assert "sensitivity" not in metrics and "kappa" not in metrics
    # quadratic weights (i - j)^2 / 16: one grade-4 image called 0 costs the most
    observed = np.zeros((5, 5))
    for t, p in zip(labels, predicted, strict=True):
        observed[t, p] += 1
    weights = np.array([[(i - j) ** 2 / 16 for j in range(5)] for i in range(5)])
    expected = np.outer(observed.sum(1), observed.sum(0)) / len(labels)
    kappa = 1 - (weights * observed).sum() / (weights * expected).sum()
    assert metrics["kappa_quadratic"] == pytest.approx(kappa)
    assert 0 < metrics["roc_auc"] <= 1


def test_format_metrics_one_line_each() -> None:
    assert format_metrics({"n": 10, "accuracy": 0.7}) == "n: 10\naccuracy: 0.7000"


def test_standard_error_is_binomial() -> None:
    assert standard_error(0.9, 100) == pytest.approx(0.03)
    assert standard_error(0.5, 400) == pytest.approx(0.025)
    assert standard_error(1.0, 100) == pytest.approx(1e-7), "floored, never 0"
    assert standard_error(0.5, 0) == pytest.approx(0.5), "n floored at 1"


def test_paired_difference_interval() -> None:
    better = np.array([1, 1, 1, 0, 1, 1, 0, 1])
    worse = np.array([1, 0, 1, 0, 0, 1, 0, 1])
    mean, low, high = paired_difference(better, worse)
    diff = better - worse
    spread = diff.std(ddof=1) / math.sqrt(len(diff))
    assert mean == pytest.approx(0.25)
    assert low == pytest.approx(0.25 - 1.959964 * spread, rel=1e-5)
    assert high == pytest.approx(0.25 + 1.959964 * spread, rel=1e-5)
    _, low90, high90 = paired_difference(better, worse, confidence=0.90)
    assert low90 == pytest.approx(0.25 - 1.644854 * spread, rel=1e-5)
    assert high90 == pytest.approx(0.25 + 1.644854 * spread, rel=1e-5)
    assert all(math.isnan(v) for v in paired_difference(np.array([]), np.array([])))
    two = paired_difference(np.array([1, 1]), np.array([0, 1]))
    assert two[0] == 0.5 and math.isfinite(two[1]) and two[1] < 0.5 < two[2]
    one = paired_difference(np.array([1]), np.array([0]))
    assert one[0] == 1.0 and one[1] == -math.inf and one[2] == math.inf


def test_rates_where_the_counts_are_equal_and_absent_classes_in_macro_f1() -> None:
    """tn = fp = tp = fn = 1: every rate is 1/2 (a sum taken as a difference would give nan);
    a class in neither labels nor predictions scores 0 in the macro F1 (not 1, not left out)."""
    metrics, _ = metrics_from_predictions(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0]), 2)
    for name in ("sensitivity", "specificity", "precision", "accuracy"):
        assert metrics[name] == 0.5, name
    only_blasts, _ = metrics_from_predictions(np.array([1, 1]), np.array([1, 1]), 2)
    assert only_blasts["macro_f1"] == 0.5 and only_blasts["weighted_f1"] == 1.0
    no_blasts, _ = metrics_from_predictions(np.array([0, 0]), np.array([0, 0]), 2)
    assert no_blasts["f1"] == 0.0, "the blast F1 of a split without blasts is 0, not 1"
