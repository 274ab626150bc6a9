"""What notebook 05 (evaluation) computes: each depth's best checkpoint evaluated, the metrics
and highest-accuracy tables, the Kaggle submissions and the most confident mistakes.

`ModelResults` holds one trained depth; the generated prose in `lab3.workbook.narrative` reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab3.config import MODEL_NAMES, TrainConfig
from lab3.data.formats import TRUTH_CSV
from lab3.data.layouts import load_layout
from lab3.data.preprocess import Pipeline, load_image
from lab3.engine.evaluate import Evaluation, LoadedCheckpoint
from lab3.errors import UserError
from lab3.formatting import pct, pretty_model_name
from lab3.submission import score, write_submission
from lab3.workbook.classical import NAME as CLASSICAL
from lab3.workbook.classical import ClassicalBaseline, fit_classical
from lab3.workbook.folders import (
    PRETRAINED_SUFFIX,
    RECORD,
    WorkbookPaths,
    pretrained_name,
    read_record,
)


@dataclass
class ModelResults:
    """One trained depth: its run folder, settings, history and evaluations per split."""

    model: str
    run_dir: Path
    config: TrainConfig
    history: pd.DataFrame
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    checkpoint: LoadedCheckpoint | None = None  # best.pt, opened once; writes the submission
    # the classical-features baseline on the same data and splits (shared by every depth)
    baseline: ClassicalBaseline | None = None

    @property
    def best_epoch(self) -> int:
        return int(self.history.loc[self.history["valid_acc"].idxmax(), "epoch"])

    @property
    def execution(self) -> dict[str, Any]:
        """What the run's settings resolved to on the machine that trained it (config.json's
        "execution"; empty for runs from before it was recorded)."""
        path = self.run_dir / "config.json"
        saved = json.loads(path.read_text()) if path.is_file() else {}
        return saved.get("execution") or {}


def execution_text(execution: Mapping[str, Any], skipped_steps: int = 0) -> dict[str, str]:
    """The recorded machine choices as the setup table shows them: "float32, no native support
    on this CPU"; fp16 adds the steps its loss scaler skipped; "not recorded" for a run that
    predates the record."""
    if not execution:
        return {"precision": "not recorded", "channels_last": "not recorded"}
    # runs recorded before fp16 existed say only whether bf16 was on
    precision = execution.get("precision") or ("bf16" if execution["bf16"] else "float32")
    text = f"{precision}, {execution['bf16_reason']}"
    if precision == "fp16":
        text += f"; {skipped_steps} step(s) skipped for an overflow"
    return {"precision": text, "channels_last": "on" if execution["channels_last"] else "off"}


def skipped_steps(history: pd.DataFrame) -> int:
    """Steps fp16's loss scaler skipped for an overflow over the run (0 in other precisions)."""
    return int(history["skipped_steps"].sum()) if "skipped_steps" in history else 0


def load_history(run: Path) -> pd.DataFrame:
    if not (run / "history.csv").is_file():
        raise UserError(
            "no history.csv: this model was not trained in this run; run 04_train for it first",
            run,
        )
    return pd.read_csv(run / "history.csv")


def evaluation_views(tta: int, labelled_test: bool) -> dict[str, int]:
    """The splits notebook 05 evaluates and the TTA views of each: the ranked split (test when
    labelled, else valid) in the config's views; valid beside a labelled test split in one."""
    return {"valid": 1, "test": tta} if labelled_test else {"valid": tta}


def planned_predictions(tta: int, labelled_test: bool) -> dict[str, int]:
    """The predictions notebook 05 makes of one trained depth (split -> TTA views): those of
    `evaluate_runs` (`evaluation_views`), and the test split in the config's views for its
    submission (`write_submissions`; where test is evaluated in those views too, the checkpoint
    predicts it once: `LoadedCheckpoint` keeps its predictions)."""
    return {**evaluation_views(tta, labelled_test), "test": tta}


def evaluate_runs(
    run_dir: str | Path,
    models: Sequence[str],
    data_dir: str | Path | None = None,
    device: str = "auto",
    baseline: bool = True,
) -> dict[str, ModelResults]:
    """The demo: load each depth's best checkpoint and evaluate it on valid (and test when its
    labels are known). The report's split (`report_split`) averages the TTA views the config
    asks for, as the submissions do; valid beside a labelled test split is read in one view,
    which halves this cell's time on the CPU (it ranks nothing there). With `baseline`, the
    classical-features baseline is fitted on the same data and scored on the same splits
    (`lab3.workbook.classical`), for the report to set every depth against."""
    paths = WorkbookPaths.at(run_dir)
    results = {}
    for model in models:
        run = paths.run(model)
        history = load_history(run)
        if not (run / "best.pt").is_file():
            raise UserError("no best.pt: training did not finish an epoch; re-run 04_train", run)
        config = TrainConfig.load(run / "config.json")
        data = str(data_dir) if data_dir is not None else None
        loaded = LoadedCheckpoint.open(run / "best.pt", data=data, device=device)
        labelled_test = loaded.data.layout.has_test_labels
        views = evaluation_views(config.tta, labelled_test)
        evaluations = {split: loaded.evaluate(split, tta=n) for split, n in views.items()}
        results[model] = ModelResults(model, run, config, history, evaluations, loaded)
    if baseline and results:
        config = next(iter(results.values())).config
        splits = tuple(next(iter(results.values())).evaluations)
        data = str(data_dir) if data_dir is not None else config.data
        fitted = fit_classical(data, config.split_mode, config.seed, splits, config.workers or None)
        for result in results.values():
            result.baseline = fitted
    return results


def evaluate_pretrained(
    run_dir: str | Path,
    models: Sequence[str],
    data_dir: str | Path | None = None,
    device: str = "auto",
) -> dict[str, ModelResults]:
    """Each depth trained from ImageNet weights (runs/<model>-imagenet, the workbook's
    `pretrained` parameter), evaluated as the demo evaluates the course's runs; keyed by run
    name, so its tables never read as the from-scratch depths'."""
    return evaluate_runs(run_dir, [pretrained_name(m) for m in models], data_dir, device)


def histories_by_depth(results: Mapping[str, ModelResults]) -> dict[str, pd.DataFrame]:
    """Histories keyed by depth ('resnet18-imagenet' -> 'resnet18'), to pair with scratch runs."""
    return {m.removesuffix(PRETRAINED_SUFFIX): r.history for m, r in results.items()}


def init_weights_of(result: ModelResults) -> dict[str, Any] | None:
    """What result.json records about a run's ImageNet weights file (None when not recorded)."""
    path = result.run_dir / "result.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("init_weights")


def trained_models(run_dir: str | Path) -> tuple[list[str], list[str]]:
    """The depths of a workbook run that have a best.pt, in the run's order, and those the run
    lists but has not trained yet."""
    paths = WorkbookPaths.at(run_dir)
    if (paths.root / RECORD).is_file():
        listed = read_record(paths.root)["models"]
    else:  # a run folder assembled by hand, or notebooks run one by one in JupyterLab
        found = {p.name for p in paths.runs.glob("*") if p.is_dir()}
        listed = [m for m in MODEL_NAMES if m in found]
    trained = [m for m in listed if (paths.run(m) / "best.pt").is_file()]
    return trained, [m for m in listed if m not in trained]


def demo_table(results: Mapping[str, ModelResults]) -> pd.DataFrame:
    """The course demo, one row per depth: the checkpoint loaded, its validation accuracy, its
    test accuracy where the test labels are known, each with the TTA views it averaged."""
    rows = []
    for model, result in results.items():
        row: dict[str, Any] = {
            "model": pretty_model_name(model),
            "checkpoint": f"runs/{model}/best.pt",
            "best epoch": result.best_epoch,
        }
        for split, evaluation in result.evaluations.items():
            row[f"{split} acc"] = evaluation.metrics["accuracy"]
            row[f"{split} views"] = int(evaluation.metrics.get("tta_views", 1))
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def demo(run_dir: str | Path, data_dir: str | Path | None = None, device: str = "auto") -> str:
    """`lab3 demo`: load each trained depth of a run from disk, evaluate it, and return the
    demo table as text. Reads the run and writes nothing into it."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError("no such run folder; pass --run outputs/<run>", run)
    models, untrained = trained_models(run)
    if not models:
        raise UserError("no trained depth here (no runs/<model>/best.pt); run `lab3 run`", run)
    table = demo_table(evaluate_runs(run, models, data_dir, device, baseline=False))
    percent = {c: pct for c in table.columns if c.endswith(" acc")}
    lines = [
        f"{run.resolve()}: each depth's best.pt loaded from disk and evaluated",
        table.to_string(formatters=percent),
    ]
    if "test acc" not in table.columns:
        lines.append("test accuracy: unknown here, the data folder has no test labels")
    if untrained:
        lines.append(f"not trained yet in this run: {', '.join(untrained)}")
    return "\n".join(lines)


def report_split(results: Mapping[str, ModelResults]) -> str:
    """Test when every model could be scored on it, else valid."""
    return "test" if all("test" in r.evaluations for r in results.values()) else "valid"


TIE = 1e-9  # accuracies closer than this are equal (the same count of correct images)


def report_accuracy(results: Mapping[str, ModelResults]) -> dict[str, float]:
    """Each depth's accuracy on the report's split (test when scored), the one thing ranked."""
    split = report_split(results)
    return {m: float(r.evaluations[split].metrics["accuracy"]) for m, r in results.items()}


def ranks(results: Mapping[str, ModelResults]) -> dict[str, int]:
    """Each depth's rank by `report_accuracy`, highest first; equal accuracies share a rank
    ("1, 1, 3"). The table, the headline, the discussion and the misclassified figure all rank
    with this one function, so they cannot name different winners."""
    accuracy = report_accuracy(results)
    return {m: 1 + sum(other > a + TIE for other in accuracy.values()) for m, a in accuracy.items()}


def winners(results: Mapping[str, ModelResults]) -> list[str]:
    """The depths with the highest accuracy on the report's split, in the run's order."""
    return [m for m, rank in ranks(results).items() if rank == 1]


METRIC_COLUMNS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc",
    "weighted_f1": "weighted F1",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "kappa_quadratic": "kappa (quadratic)",
    "roc_auc": "ROC-AUC",
}


def metrics_table(results: Mapping[str, ModelResults]) -> pd.DataFrame:
    """One row per model and split: the metrics of its best checkpoint, with the TTA views each
    split averaged (`evaluate_runs`)."""
    rows = [
        _metrics_row(
            pretty_model_name(model), split, evaluation.metrics, len(evaluation.predictions.labels)
        )
        for model, result in results.items()
        for split, evaluation in result.evaluations.items()
    ]
    baseline = classical_of(results)
    if baseline is not None:  # its line under the depths: the number each must beat
        rows += [_metrics_row(CLASSICAL, s, m, int(m["n"])) for s, m in baseline.metrics.items()]
    # a metric no evaluation has (sensitivity of a 5-grade task, kappa of a 2-class one) is
    # left out rather than shown as a column of blanks
    frame = pd.DataFrame(rows).set_index(["model", "split"])
    optional = ["sensitivity", "specificity", "kappa (quadratic)"]
    return frame.drop(columns=[c for c in optional if frame[c].isna().all()])


def _metrics_row(name: str, split: str, metrics: Mapping[str, float], n: int) -> dict[str, Any]:
    row: dict[str, Any] = {"model": name, "split": split}
    for key, column in METRIC_COLUMNS.items():
        row[column] = metrics.get(key, np.nan)
    row["TTA views"] = int(metrics.get("tta_views", 1))
    row["images"] = int(metrics.get("n", n))
    return row


def classical_of(results: Mapping[str, ModelResults]) -> ClassicalBaseline | None:
    """The classical-features baseline the depths were evaluated beside (None when not fitted)."""
    return next((r.baseline for r in results.values() if r.baseline is not None), None)


def confusions(results: Mapping[str, ModelResults], split: str) -> dict[str, np.ndarray]:
    return {m: r.evaluations[split].confusion for m, r in results.items() if split in r.evaluations}


def class_names_of(results: Mapping[str, ModelResults]) -> list[str]:
    first = next(iter(results.values()))
    return next(iter(first.evaluations.values())).class_names


def training_setup(results: Mapping[str, ModelResults]) -> pd.DataFrame:
    """The settings each depth was trained with (from its config.json), side by side."""
    keys = [
        "epochs", "min_steps", "batch_size", "optimizer", "lr", "schedule", "weight_decay",
        "label_smoothing", "ema", "precise_bn", "image_size", "preprocess", "augment",
        "train_limit", "tta", "seed",
    ]  # fmt: skip
    frame = pd.DataFrame(
        {
            pretty_model_name(m): {
                **{k: r.config.to_dict()[k] for k in keys},
                "epochs trained": len(r.history),  # more than `epochs` where the floor decided
                **execution_text(r.execution, skipped_steps(r.history)),
            }
            for m, r in results.items()
        }
    )
    frame.index.name = "setting"
    return frame.astype(str)


def write_submissions(
    results: Mapping[str, ModelResults],
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """The Kaggle CSV of each depth (`<model>.csv`, IDs in its test CSV's order, validated), and
    its local score when the data folder holds the truth (test_labels.csv)."""
    out_dir = Path(out_dir)
    rows = []
    for model, result in results.items():
        data = str(data_dir) if data_dir is not None else result.config.data
        loaded = result.checkpoint
        if loaded is None or Path(loaded.config.data).resolve() != Path(data).resolve():
            loaded = LoadedCheckpoint.open(result.run_dir / "best.pt", data=data, device=device)
        if not loaded.data.layout.test_csvs:
            continue  # C-NMC and retinopathy folders have no Kaggle test CSVs
        frame = loaded.submission(tta=result.config.tta)
        path = write_submission(frame, out_dir / f"{model}.csv")
        row: dict[str, Any] = {
            "model": pretty_model_name(model),
            "file": f"submissions/{path.name}",
            "rows": len(frame),
            "predicted label 1": float((frame["label"] == 1).mean()),
        }
        truth = Path(data) / TRUTH_CSV
        if truth.is_file():
            scored = score(path, truth)
            row["test accuracy"] = scored["accuracy"]
            row["weighted F1"] = scored["weighted_f1"]
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "file", "rows"] if not rows else None).set_index(
        "model"
    )


def submissions_text(submissions: pd.DataFrame) -> str:
    """What the submissions table shows, or why there is none."""
    if submissions.empty:
        return (
            "This data folder has no Kaggle test CSVs (`resnet_*_test.csv`), so no submission "
            "files were written; the test split above is scored directly."
        )
    scored = "test accuracy" in submissions.columns
    return (
        f"{len(submissions)} submission files (`ID,label`, one row per test image in the order "
        "of the depth's test CSV, validated before writing)"
        + (", scored locally against `test_labels.csv`:" if scored else ":")
    )


def highest_accuracy_table(results: Mapping[str, ModelResults]) -> pd.DataFrame:
    """Per depth: its rank (`ranks`), the epoch of its best validation accuracy, and the test
    accuracy of that checkpoint (the one submitted). Test accuracy never picks the epoch."""
    rows = []
    rank = ranks(results)
    for model, result in results.items():
        history = result.history
        best = history.loc[history["valid_acc"].idxmax()]
        row: dict[str, Any] = {
            "model": pretty_model_name(model),
            f"rank ({report_split(results)} acc)": rank[model],
            "epochs": int(history["epoch"].max()),
            "best epoch": int(best["epoch"]),
            "best valid acc": float(best["valid_acc"]),
        }
        if "test_acc" in history.columns:
            row["test acc at that epoch"] = float(best["test_acc"])
        for split, evaluation in result.evaluations.items():
            views = int(evaluation.metrics.get("tta_views", 1))
            label = f"{split} acc, TTA x{views}" if views > 1 else f"{split} acc (best.pt)"
            row[label] = evaluation.metrics["accuracy"]
        row["train minutes"] = float(pd.to_numeric(history["seconds"]).sum()) / 60
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def accuracy_columns(table: pd.DataFrame) -> list[str]:
    """The columns of `highest_accuracy_table` that hold accuracies, to show as percentages; not
    the rank, whose name says which accuracy it ranks by."""
    return [c for c in table.columns if "acc" in c and not c.startswith("rank")]


def pick_misclassified(
    result: ModelResults, split: str, count: int = 12, size: int | None = None
) -> dict[str, Any]:
    """The model's most confident mistakes on `split`, as tight-cropped cells for a grid, at the
    size the model saw them (its config's) unless `size` says otherwise; the keyword arguments
    of `plots.plot_misclassified`."""
    evaluation = result.evaluations[split]
    predictions = evaluation.predictions
    predicted = predictions.predicted
    wrong = np.flatnonzero(predicted != predictions.labels)
    confidence = predictions.probs[wrong, predicted[wrong]]
    chosen = wrong[np.argsort(-confidence, kind="stable")][:count]
    config = evaluation.config
    layout = load_layout(config.data, split_mode=config.split_mode, seed=config.seed)
    show = Pipeline.for_config("tightcrop", size or config.image_size)
    paths = layout.table["path"].to_numpy()[predictions.rows[chosen]]
    return {
        "images": [show(load_image(p)) for p in paths],
        "true_labels": predictions.labels[chosen].tolist(),
        "pred_labels": predicted[chosen].tolist(),
        "probs": [predictions.probs[i] for i in chosen],
        "class_names": short_class_names(evaluation.class_names),
    }


def short_class_names(names: Sequence[str]) -> list[str]:
    """'normal (hem)' -> 'normal': short enough for titles over small image panels."""
    return [re.sub(r"\s*\(.*\)\s*$", "", n) or n for n in names]
