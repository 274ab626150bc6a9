"""Notebook 05's tables and helpers from constructed results (no training, no checkpoint): the
ranking and the split it ranks, each table's rows, columns and values, the run folder's trained
depths. Fast, so mutation runs map workbook/results.py to them; the functions that load a
checkpoint (evaluate_runs, demo, write_submissions, pick_misclassified) are tested on trained
runs in test_workbook.py and test_cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import model_results

from lab3.errors import UserError
from lab3.workbook import results
from lab3.workbook.folders import RECORD


def _depths(**accuracies: float) -> dict[str, results.ModelResults]:
    return {model: model_results(model, accuracy) for model, accuracy in accuracies.items()}


def test_the_report_ranks_test_when_every_depth_has_it_else_valid() -> None:
    scored = _depths(resnet18=0.8, resnet50=0.9)
    assert results.report_split(scored) == "test"
    del scored["resnet50"].evaluations["test"]
    assert results.report_split(scored) == "valid"
    assert results.report_accuracy(scored) == {"resnet18": 0.8, "resnet50": 0.9}
    assert results.report_split({"resnet18": model_results("resnet18", 0.8)}) == "test"


def test_ranks_share_places_on_ties_and_count_those_ahead() -> None:
    tied = _depths(resnet18=0.9, resnet50=0.95, resnet152=0.9, resnet34=0.8)
    assert results.ranks(tied) == {"resnet18": 2, "resnet50": 1, "resnet152": 2, "resnet34": 4}
    assert results.winners(_depths(resnet18=0.9, resnet50=0.9)) == ["resnet18", "resnet50"]
    close = _depths(resnet18=0.9, resnet50=0.9 + 1e-12)
    assert results.ranks(close) == {"resnet18": 1, "resnet50": 1}, "closer than TIE: equal"


def test_evaluation_views_read_valid_once_beside_a_labelled_test_split() -> None:
    assert results.evaluation_views(8, labelled_test=True) == {"valid": 1, "test": 8}
    assert results.evaluation_views(8, labelled_test=False) == {"valid": 8}


def test_the_planned_predictions_add_the_submissions_test_split_in_tta_views() -> None:
    """Catches a plan of notebook 05 (what the time estimate counts) without the submission's
    test predictions, or with them in other views than the config's."""
    assert results.planned_predictions(8, labelled_test=True) == {"valid": 1, "test": 8}
    assert results.planned_predictions(8, labelled_test=False) == {"valid": 8, "test": 8}
    assert results.planned_predictions(2, labelled_test=False) == {"valid": 2, "test": 2}


def test_execution_text_says_what_the_machine_chose_and_why() -> None:
    recorded = {"precision": "float32", "bf16": False,
                "bf16_reason": "no native support on this CPU", "channels_last": True}  # fmt: skip
    assert results.execution_text(recorded) == {
        "precision": "float32, no native support on this CPU",
        "channels_last": "on",
    }
    older = {"bf16": True, "bf16_reason": "native on this CPU", "channels_last": False}
    assert results.execution_text(older) == {
        "precision": "bf16, native on this CPU",
        "channels_last": "off",
    }
    fp16 = {"precision": "fp16", "bf16": False, "channels_last": True,
            "bf16_reason": "CUDA compute capability 7.5 has no native bf16"}  # fmt: skip
    assert results.execution_text(fp16, skipped_steps=3)["precision"] == (
        "fp16, CUDA compute capability 7.5 has no native bf16; 3 step(s) skipped for an overflow"
    )
    assert results.execution_text({}) == {
        "precision": "not recorded",
        "channels_last": "not recorded",
    }
    history = pd.DataFrame({"epoch": [1, 2], "skipped_steps": [2, 1]})
    assert results.skipped_steps(history) == 3
    assert results.skipped_steps(history.drop(columns="skipped_steps")) == 0


def test_training_setup_lists_each_depths_settings_and_machine(tmp_path: Path) -> None:
    depths = _depths(resnet18=0.8, resnet50=0.9)
    run = tmp_path / "resnet50"
    run.mkdir()
    execution = {"bf16": True, "bf16_reason": "native", "channels_last": False}
    (run / "config.json").write_text(json.dumps({"execution": execution}))
    depths["resnet50"].run_dir = run
    table = results.training_setup(depths)
    assert list(table.columns) == ["ResNet18", "ResNet50"] and table.index.name == "setting"
    assert table.loc["epochs trained", "ResNet18"] == "4"
    assert table.loc["tta", "ResNet50"] == "1" and table.loc["seed", "ResNet18"] == "0"
    assert table.loc["precision", "ResNet18"] == "not recorded"
    assert table.loc["precision", "ResNet50"] == "bf16, native"
    assert table.loc["channels_last", "ResNet50"] == "off"
    assert list(table.index[:3]) == ["epochs", "min_steps", "batch_size"]


def test_highest_accuracy_table_takes_the_epoch_of_best_validation() -> None:
    depths = _depths(resnet18=0.8, resnet50=0.95)
    depths["resnet18"].history["test_acc"] = [0.6, 0.75, 0.7, 0.72]
    depths["resnet50"].history["test_acc"] = [0.6, 0.7, 0.9, 0.85]
    depths["resnet50"].history["valid_acc"] = [0.7, 0.8, 0.75, 0.74]
    depths["resnet50"].history["seconds"] = [30.0, 30.0, 30.0, 90.0]
    for depth in depths.values():
        depth.evaluations["test"].metrics["tta_views"] = 2
    table = results.highest_accuracy_table(depths)
    assert list(table.index) == ["ResNet18", "ResNet50"]
    assert list(table.columns) == [
        "rank (test acc)", "epochs", "best epoch", "best valid acc", "test acc at that epoch",
        "valid acc (best.pt)", "test acc, TTA x2", "train minutes",
    ]  # fmt: skip
    row = table.loc["ResNet50"]
    assert (row["rank (test acc)"], row["epochs"], row["best epoch"]) == (1, 4, 2)
    assert row["best valid acc"] == 0.8 and row["test acc at that epoch"] == 0.7
    assert row["test acc, TTA x2"] == 0.95 and row["train minutes"] == 3.0
    assert table.loc["ResNet18", "rank (test acc)"] == 2
    assert results.accuracy_columns(table) == [
        "best valid acc", "test acc at that epoch", "valid acc (best.pt)", "test acc, TTA x2",
    ]  # fmt: skip
    without = results.highest_accuracy_table(_depths(resnet18=0.8))
    assert "test acc at that epoch" not in without.columns


def test_demo_and_metrics_tables_hold_each_split() -> None:
    depths = _depths(resnet18=0.8, resnet50=0.95)
    depths["resnet50"].evaluations["test"].metrics.update(tta_views=8, kappa_quadratic=0.5, n=399)
    demo = results.demo_table(depths)
    assert list(demo.columns) == [
        "checkpoint", "best epoch", "valid acc", "valid views", "test acc", "test views",
    ]  # fmt: skip
    assert demo.loc["ResNet50", "checkpoint"] == "runs/resnet50/best.pt"
    assert demo.loc["ResNet50", "test views"] == 8 and demo.loc["ResNet18", "test views"] == 1
    assert demo.loc["ResNet50", "test acc"] == 0.95 and demo.loc["ResNet18", "best epoch"] == 2
    metrics = results.metrics_table(depths)
    assert list(metrics.index) == [("ResNet18", "valid"), ("ResNet18", "test"),
                                   ("ResNet50", "valid"), ("ResNet50", "test")]  # fmt: skip
    assert list(metrics.columns) == [
        "accuracy", "balanced acc", "weighted F1", "kappa (quadratic)", "ROC-AUC", "TTA views",
        "images",
    ], "sensitivity and specificity no evaluation has are left out"  # fmt: skip
    row = metrics.loc[("ResNet50", "test")]
    assert (row["accuracy"], row["kappa (quadratic)"], row["TTA views"], row["images"]) == (
        0.95, 0.5, 8, 399)  # fmt: skip
    assert metrics.loc[("ResNet18", "test"), "TTA views"] == 1, "no views recorded: one"
    assert metrics["balanced acc"].dtype == float, "a metric no evaluation has is NaN"
    assert np.isnan(metrics.loc[("ResNet18", "test"), "kappa (quadratic)"])
    del depths["resnet18"].evaluations["test"].metrics["n"]
    assert results.metrics_table(depths).loc[("ResNet18", "test"), "images"] == 400


def test_confusions_class_names_and_histories() -> None:
    depths = _depths(resnet18=0.8, resnet50=0.95)
    del depths["resnet50"].evaluations["test"]
    confusions = results.confusions(depths, "test")
    assert list(confusions) == ["resnet18"]
    assert confusions["resnet18"] is depths["resnet18"].evaluations["test"].confusion
    assert results.class_names_of(depths) == ["normal (hem)", "blast (all)"]
    assert results.short_class_names(["normal (hem)", "blast (all)", "grade 2", "(x)"]) == [
        "normal", "blast", "grade 2", "(x)"]  # fmt: skip
    pretrained = {"resnet18-imagenet": depths["resnet18"], "resnet50": depths["resnet50"]}
    assert list(results.histories_by_depth(pretrained)) == ["resnet18", "resnet50"]


def test_submissions_text_counts_the_files_and_says_when_scored() -> None:
    none = pd.DataFrame(columns=["model", "file", "rows"]).set_index("model")
    assert results.submissions_text(none).startswith(
        "This data folder has no Kaggle test CSVs (`resnet_*_test.csv`), so no submission files "
        "were written; the test split above is scored directly."
    )
    table = pd.DataFrame({"model": ["ResNet18", "ResNet50"], "rows": [5, 5]}).set_index("model")
    text = (
        "2 submission files (`ID,label`, one row per test image in the order of the depth's "
        "test CSV, validated before writing)"
    )
    assert results.submissions_text(table) == text + ":"
    table["test accuracy"] = [0.9, 0.8]
    assert results.submissions_text(table) == text + ", scored locally against `test_labels.csv`:"


def test_trained_models_follow_the_record_or_the_folders(tmp_path: Path) -> None:
    def train(model: str) -> None:
        (tmp_path / "runs" / model).mkdir(parents=True)
        (tmp_path / "runs" / model / "best.pt").write_bytes(b"")

    train("resnet50")
    (tmp_path / "runs" / "resnet152").mkdir()  # started, no best.pt yet
    (tmp_path / "runs" / "notes.txt").write_text("")
    assert results.trained_models(tmp_path) == (["resnet50"], ["resnet152"])
    train("resnet18")
    assert results.trained_models(tmp_path) == (["resnet18", "resnet50"], ["resnet152"])
    record = {"data": "data", "profile": "quick", "models": ["resnet152", "resnet50", "resnet34"]}
    (tmp_path / RECORD).write_text(json.dumps(record))
    assert results.trained_models(tmp_path) == (["resnet50"], ["resnet152", "resnet34"])


def test_load_history_names_a_depth_not_trained(tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        results.load_history(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}: no history.csv: this model was not trained in this run; run 04_train for "
        "it first"
    )
    pd.DataFrame({"epoch": [1], "valid_acc": [0.5]}).to_csv(tmp_path / "history.csv", index=False)
    assert results.load_history(tmp_path).to_dict("list") == {"epoch": [1], "valid_acc": [0.5]}
