"""Kaggle submissions: `ID,label`, one row per test image, IDs exactly as the test CSV lists them.

A submission is validated before it is written (atomically), and `score` is the local stand-in for
the leaderboard when the truth is known (the synthetic set ships it as ``test_labels.csv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lab3.data.layouts import read_csv
from lab3.errors import UserError
from lab3.fileio import write_text_atomic
from lab3.metrics import metrics_from_predictions

HEADER = ["ID", "label"]


def read_test_ids(test_csv: str | Path) -> list[str]:
    test_csv = Path(test_csv)
    if not test_csv.is_file():
        raise UserError(
            "test CSV not found; pass --test-csv with one of the resnet_*_test.csv", test_csv
        )
    return read_csv(test_csv, ["Path"])["Path"].tolist()


def build_submission(
    ids: Sequence[str], predictions: dict[str, int], num_classes: int
) -> pd.DataFrame:
    """Rows in the test CSV's order; every ID must have a prediction in the class set."""
    missing = [i for i in ids if i not in predictions]
    if missing:
        raise UserError(
            f"{len(missing)} test images have no prediction (first: {missing[0]}); the test CSV "
            "does not match the data folder"
        )
    labels = np.array([predictions[i] for i in ids], dtype=np.int64)
    frame = pd.DataFrame({"ID": list(ids), "label": labels})
    validate_submission(frame, ids, num_classes)
    return frame


def validate_submission(
    frame: pd.DataFrame, ids: Sequence[str], num_classes: int, where: str | Path | None = None
) -> None:
    if list(frame.columns) != HEADER:
        raise UserError(
            f"header is {','.join(map(str, frame.columns))!r}, expected 'ID,label'", where
        )
    if frame["ID"].tolist() != list(ids):
        raise UserError("IDs differ from the test CSV's (same IDs, same order needed)", where)
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if labels.isna().any() or not labels.between(0, num_classes - 1).all():
        raise UserError(f"labels must be integers 0..{num_classes - 1}", where)


def write_submission(frame: pd.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    write_text_atomic(out, frame.to_csv(index=False))
    return out


def read_labelled_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError("file not found", path)
    frame = read_csv(path, HEADER)
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = (labels.isna() | (labels % 1 != 0) | (labels < 0)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"line {row + 2}: label {frame['label'].iloc[row]!r} is not a class number", path
        )
    frame["label"] = labels.astype(np.int64)
    return frame


def score(submission: str | Path, truth: str | Path) -> dict[str, float]:
    """Metrics of a submission against the truth (both `ID,label`)."""
    sub = read_labelled_csv(submission)
    true = read_labelled_csv(truth)
    if sorted(sub["ID"]) != sorted(true["ID"]):
        extra = set(sub["ID"]) ^ set(true["ID"])
        raise UserError(
            f"IDs do not match the truth's ({len(extra)} differ, e.g. {sorted(extra)[0]}); "
            "score a submission for this test set",
            submission,
        )
    merged = true.merge(sub, on="ID", suffixes=("_true", "_pred"))
    num_classes = int(max(merged["label_true"].max(), merged["label_pred"].max())) + 1
    num_classes = max(num_classes, 2)
    metrics, _ = metrics_from_predictions(
        merged["label_true"].to_numpy(), merged["label_pred"].to_numpy(), num_classes
    )
    return metrics
