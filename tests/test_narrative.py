"""The report's prose against the numbers it is written from: constructed evaluations whose
winner, gap, standard error and majority baseline are known, and a dataset of known counts.

The expected figures are computed here from first principles (binomial standard error,
counts), not through lab3's helpers, so a wrong formula in the package shows."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from builders import assert_matches_golden, write_course_dataset
from builders import model_results as _result
from test_classical import constructed_baseline

from lab3.config import TrainConfig, make_config
from lab3.data.formats import METADATA_CSV, TRUTH_CSV
from lab3.data.layouts import load_layout
from lab3.formatting import seconds_text
from lab3.workbook import narrative
from lab3.workbook.narrative import discussion, headline, introduction, training_description
from lab3.workbook.results import ModelResults, training_setup


def _two_se(accuracy: float, n: int) -> str:
    return f"±{200 * math.sqrt(accuracy * (1 - accuracy) / n):.1f} points on {n} images"


def _points(text: str) -> list[str]:
    assert all(line.startswith("- ") for line in text.splitlines())
    return [line[2:] for line in text.splitlines()]


def test_a_lead_beyond_two_standard_errors_is_a_finding() -> None:
    """Catches a wrong winner, a gap taken against the wrong runner-up, a wrong standard error."""
    results = {m: _result(m, a) for m, a in (("resnet18", 0.80), ("resnet50", 0.95),
                                                ("resnet152", 0.90))}  # fmt: skip
    first = _points(discussion(results))[0]
    assert first == (
        "**ResNet50** reached the highest test accuracy, 95.0 % (then ResNet152 90.0 %, "
        "ResNet18 80.0 %). The lead of 5.0 points exceeds two standard errors "
        f"({_two_se(0.95, 400)})."
    )
    assert "(±2.2 points" in first  # 2 * sqrt(0.95 * 0.05 / 400) = 0.0218


def test_a_lead_inside_the_noise_is_called_a_tie() -> None:
    """2.5 points on 400 images is more than one standard error (2.0 points) but less than two
    (3.9): no depth wins.

    Catches comparing the gap with one standard error, or with none."""
    results = {"resnet18": _result("resnet18", 0.81), "resnet50": _result("resnet50", 0.785)}
    first = _points(discussion(results))[0]
    assert first.startswith("**ResNet18** reached the highest test accuracy, 81.0 %")
    assert (
        f"The lead of 2.5 points is within two standard errors ({_two_se(0.81, 400)}), so at "
        "this training budget the depths are statistically tied." in first
    )
    assert "exceeds" not in first


def test_equal_accuracies_tie_in_the_discussion_and_the_headline() -> None:
    results = {"resnet18": _result("resnet18", 0.9), "resnet50": _result("resnet50", 0.9)}
    assert _points(discussion(results))[0] == (
        "ResNet18 and ResNet50 tie for the highest test accuracy, 90.0 %."
    )
    assert headline(results) == (
        "Highest test accuracy: **90.0 %**, reached by ResNet18 and ResNet50 alike "
        "(400 test images)."
    )


def test_headline_names_the_winner_and_its_best_epoch() -> None:
    """Catches a headline that quotes another depth's accuracy or the last epoch, not the best."""
    results = {
        "resnet18": _result("resnet18", 0.82, valid=(0.6, 0.9, 0.7)),
        "resnet50": _result("resnet50", 0.91, valid=(0.7, 0.8, 0.95, 0.9)),
    }
    text = headline(results)
    assert text.startswith("Highest test accuracy: **ResNet50, 91.0 %** (best.pt from epoch 3 of 4")
    assert "400 test images" in text


@pytest.mark.parametrize(
    ("accuracies", "blast_share", "expected"),
    [
        ((0.95, 0.90), 0.68, "Every depth beats the majority-class baseline (68.0 %) by more "
                             "than the"),
        ((0.90, 0.70), 0.68, "The majority-class baseline is 68.0 %; ResNet18 clearly beat it, "
                             "ResNet50 not by more than the sampling error."),
        ((0.69, 0.685), 0.32, "Always predicting the majority class would score 68.0 % on this "
                              "split: no depth is clearly above that baseline"),
    ],
    ids=["all-above", "one-above", "none-above"],
)  # fmt: skip
def test_the_majority_baseline_is_the_split_own(
    accuracies: tuple[float, float], blast_share: float, expected: str
) -> None:
    """The baseline is the majority share of the evaluated split's labels (272 of 400 = 68 %:
    blasts, or normal cells in the last case), and a depth beats it only by more than two
    standard errors.

    Catches a baseline from another split or of a fixed class, and a comparison without the
    noise."""
    results = {
        m: _result(m, a, blast_share=blast_share)
        for m, a in zip(("resnet18", "resnet50"), accuracies, strict=True)
    }
    assert any(p.startswith(expected) for p in _points(discussion(results)))


def test_depth_cost_and_curve_shapes_come_from_the_histories() -> None:
    """Catches a cost ratio or a best epoch read from the wrong model or the wrong column."""
    results = {
        "resnet18": _result("resnet18", 0.9, seconds=10.0, valid=(0.7, 0.9, 0.8, 0.85)),
        "resnet50": _result("resnet50", 0.85, seconds=30.0, valid=(0.7, 0.75, 0.8, 0.85),
                            train=0.95),
    }  # fmt: skip
    points = _points(discussion(results))
    assert (
        "Depth is not free: an epoch of ResNet50 took 3.0x as long as one of ResNet18 "
        "(30 s vs 10 s)." in points
    )
    resnet18 = next(p for p in points if p.startswith("ResNet18: "))
    assert "peaked at epoch 2 of 4" in resnet18 and "no over-fitting" in resnet18
    resnet50 = next(p for p in points if p.startswith("ResNet50: "))
    assert "still at its best in the last epoch" in resnet50
    assert "training accuracy ends 10.0 points above validation: over-fitting" in resnet50


def test_introduction_counts_the_dataset(tmp_path: Path) -> None:
    """Counts and the majority share come from the data folder; here normal cells are the
    majority (48 of 64), so a baseline that assumes blasts are shows.

    Catches counts from the wrong split and a majority class read as the minority."""
    root = write_course_dataset(tmp_path / "data", train=64, valid=32, test=24, size=16,
                                blast_share=0.25)  # fmt: skip
    text = introduction(load_layout(root), ["resnet18", "resnet50"], "quick")
    assert "**course** dataset layout found at `data/`" in text
    assert "64 training, 32 validation and 24 test images in 2 classes" in text
    assert "75.0 % of the training images are normal (hem), so always answering" in text
    assert "trains ResNet18 and ResNet50 from scratch with the **quick** profile" in text


def test_training_description_follows_the_config() -> None:
    """Every number of the recipe is the config's, and optional parts appear only when used.

    Catches prose written from a profile's defaults instead of the run's config."""
    config = make_config("full", model="resnet50", lr=0.123, batch_size=48, weight_decay=7e-4,
                         label_smoothing=0.05, ema=0.998, image_size=96, train_limit=500,
                         preprocess="tightcrop,equalize", augment="dihedral")  # fmt: skip
    text = training_description(config)
    for phrase in (
        "SGD with Nesterov momentum 0.9, peak learning rate 0.123 with a one-cycle schedule",
        "batch size 48, weight decay 0.0007 (not on BatchNorm parameters)",
        "label smoothing 0.05, evaluating an exponential moving average of the weights (0.998)",
        "Images are 96x96 px after the host preprocessing `tightcrop,equalize`, normalised with "
        "the training split's own mean and std and augmented with `dihedral`; only 500 training "
        "images are used (full profile)",
    ):
        assert phrase in text, phrase
    plain = make_config("quick", optimizer="adamw", schedule="cosine", warmup_epochs=2, ema=0,
                        train_limit=0)  # fmt: skip
    text = training_description(plain)
    assert "AdamW, peak learning rate" in text and "2 warm-up epochs and cosine decay" in text
    assert "moving average" not in text and "training images are used" not in text


def test_training_setup_shows_the_epochs_each_depth_trained() -> None:
    """Catches a setup table that shows the profile's epochs where a small set's step floor made
    a depth train more: the epochs trained come from each depth's own history."""
    results = {"resnet18": _result("resnet18", 0.9, valid=(0.7,) * 75),
               "resnet50": _result("resnet50", 0.9, valid=(0.7, 0.8))}  # fmt: skip
    table = training_setup(results)
    assert table.loc["epochs trained"].tolist() == ["75", "2"]
    assert table.loc["epochs"].tolist() == [str(TrainConfig.epochs)] * 2
    assert "min_steps" in table.index and "precise_bn" in table.index


# ---------------------------------------------------------------------------------------------
# The report ranks what it measured: the table, the headline, the discussion and notebook 05's
# misclassified figure name the same winner, the depth of highest test accuracy.


def _named_in_headline(text: str) -> list[str]:
    names = {"ResNet18": "resnet18", "ResNet50": "resnet50", "ResNet152": "resnet152"}
    head = text.split("(")[0]  # the winner or the tied depths come before the first bracket
    return [model for name, model in names.items() if f"{name}," in head or f"{name} " in head]


@pytest.mark.parametrize(
    ("accuracies", "expected"),
    [
        ({"resnet18": 0.80, "resnet50": 0.85, "resnet152": 0.90}, ["resnet152"]),  # deepest wins
        ({"resnet18": 0.90, "resnet50": 0.85, "resnet152": 0.80}, ["resnet18"]),
        ({"resnet18": 0.80, "resnet50": 0.90, "resnet152": 0.85}, ["resnet50"]),
        ({"resnet18": 0.85, "resnet50": 0.90, "resnet152": 0.90}, ["resnet50", "resnet152"]),
        ({"resnet18": 0.90, "resnet50": 0.85, "resnet152": 0.90}, ["resnet18", "resnet152"]),
        ({"resnet18": 0.90, "resnet50": 0.90, "resnet152": 0.90}, ["resnet18", "resnet50",
                                                                   "resnet152"]),
    ],
)  # fmt: skip
def test_table_headline_and_discussion_name_the_depth_of_highest_test_accuracy(
    accuracies: dict[str, float], expected: list[str]
) -> None:
    from lab3.workbook.results import accuracy_columns, highest_accuracy_table, ranks, winners

    results = {m: _result(m, a) for m, a in accuracies.items()}
    # the best validation epoch disagrees with the test ranking: the test split ranks
    results["resnet18"].history["valid_acc"] = [0.99, 0.6, 0.6, 0.6]
    assert winners(results) == expected
    table = highest_accuracy_table(results)
    column = "rank (test acc)"
    assert table.columns[0] == column
    best = max(accuracies.values())
    expected_ranks = {m: 1 + sum(b > a for b in accuracies.values()) for m, a in accuracies.items()}
    assert ranks(results) == expected_ranks
    assert table[column].tolist() == [expected_ranks[m] for m in accuracies]
    assert table.index[table[column] == 1].tolist() == [
        {"resnet18": "ResNet18", "resnet50": "ResNet50", "resnet152": "ResNet152"}[m]
        for m in expected
    ]
    assert table.loc[table[column] == 1, "test acc (best.pt)"].tolist() == [best] * len(expected)
    # the rank is a count, not a percentage (the report once showed "200.0 %")
    assert column not in accuracy_columns(table)
    assert {"best valid acc", "test acc (best.pt)"} <= set(accuracy_columns(table))

    text = headline(results)
    assert _named_in_headline(text) == expected, text
    assert f"**{pct_text(best)}" in text or f", {pct_text(best)}**" in text
    first = _points(discussion(results))[0]
    named = first.split(" reached")[0].split(" tie for")[0]
    for model in accuracies:
        pretty = {"resnet18": "ResNet18", "resnet50": "ResNet50", "resnet152": "ResNet152"}[model]
        assert (pretty in named) == (model in expected), first
    assert ("tie for the highest" in first) == (len(expected) > 1)


def pct_text(value: float) -> str:
    return f"{100 * value:.1f} %"


def test_the_notebook_picks_its_winner_with_the_shared_ranking() -> None:
    """Notebook 05's misclassified figure shows the depth the report calls best: it ranks with
    `results.winners`, not a max(...) of its own."""
    import json

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "05_evaluation_and_report.ipynb"
    code = "\n".join(
        "".join(cell["source"])
        for cell in json.loads(notebook.read_text())["cells"]
        if cell["cell_type"] == "code"
    )
    assert "winner = results.winners(evaluated)[0]" in code
    assert "max(evaluated" not in code and "sorted(evaluated" not in code


def _with_kappa(result: ModelResults, kappa: float) -> ModelResults:
    for evaluation in result.evaluations.values():
        evaluation.metrics["kappa_quadratic"] = kappa
    return result


def _imagenet_run(tmp_path: Path, model: str, accuracy: float, published: bool | None):
    """A run from ImageNet weights; `published` None: result.json does not say."""
    name = f"{model}-imagenet"
    run = tmp_path / name
    run.mkdir()
    weights = {"file": f"{model}-weights.pth"}
    if published is not None:
        weights["published"] = published
    (run / "result.json").write_text(json.dumps({"init_weights": weights}))
    return dataclasses.replace(_result(name, accuracy), run_dir=run)


def test_the_report_prose_reads_as_reviewed(tmp_path: Path, monkeypatch) -> None:
    """Every generated sentence of the report for constructed runs, compared whole with its
    reviewed copy (tests/golden/narrative.md): a changed word, number or branch shows as a diff.
    The cases reach each branch and sit between the thresholds a wrong constant would move
    (a lead between two and three standard errors, a depth just above the baseline)."""
    monkeypatch.setattr(narrative, "ablation_verdict", lambda frame: f"({len(frame)} variants)")
    cells = load_layout(write_course_dataset(tmp_path / "cells", train=40, valid=20, test=20,
                                             size=16))  # fmt: skip
    grades = SimpleNamespace(name="retinopathy", root=tmp_path / "grades")
    grades.root.mkdir()
    clear = {
        "resnet18": _result("resnet18", 0.80, seconds=10, train=0.95),
        "resnet50": _result("resnet50", 0.95, seconds=25, valid=(0.6, 0.7, 0.8, 0.9), tta=2),
        "resnet152": _result("resnet152", 0.92, seconds=61, train=0.54),
    }
    tie = {m: _result(m, a, tta=2) for m, a in (("resnet18", 0.70), ("resnet34", 0.72),
           ("resnet50", 0.9), ("resnet101", 0.69), ("resnet152", 0.9))}  # fmt: skip
    unlearned = {
        "resnet18": _result("resnet18", 0.68, seconds=0.5),
        "resnet50": _result("resnet50", 0.69, valid=(0.69,), seconds=1.5),
        "resnet152": _result("resnet152", 0.70, valid=(0.7, 0.7)),
    }
    graded = {m: _with_kappa(_result(m, a), k) for m, a, k in (("resnet18", 0.9, 0.74),
              ("resnet50", 0.92, 0.61))}  # fmt: skip
    one = {"resnet50": _result("resnet50", 0.9, valid=(0.7, 1))}
    sections = {
        "lab, cells": narrative.lab_description(cells),
        "lab, grades": narrative.lab_description(grades),
        "evaluation, 2 classes": narrative.evaluation_description(2),
        "evaluation, 5 classes": narrative.evaluation_description(5),
        "introduction": introduction(cells, list(clear), "quick"),
        "recipe, quick ResNet18": training_description(make_config("quick", model="resnet18")),
        "recipe, full ResNet152": training_description(make_config("full", model="resnet152")),
        "recipe, quick, the size measured": training_description(dataclasses.replace(
            make_config("quick"), image_size_reason="the cells measure 230 px a side")),
        "clear winner": headline(clear) + "\n\n" + discussion(clear, pd.DataFrame([1, 2]), cells),
        "tie": headline(tie) + "\n\n" + discussion(tie),
        "nothing learned": discussion(unlearned),
        "one depth, two epochs, one view": headline(one) + "\n\n" + discussion(one),
        "grades": discussion(graded, layout=grades),
        "ImageNet weights, stand-ins": narrative.pretrained_text(clear, {
            "resnet18-imagenet": _imagenet_run(tmp_path, "resnet18", 0.97, published=None),
            "resnet50-imagenet": _imagenet_run(tmp_path, "resnet50", 0.93, published=True),
        }),
    }  # fmt: skip
    (grades.root / METADATA_CSV).write_text("path,label,split,subject\n")
    sections["grades, synthetic"] = narrative.caveat_paragraph(grades)
    subjects = pd.DataFrame({"split": ["train"] * 3 + ["valid", "test", "test"],
                             "subject": ["a", "b", "c", "b", "a", "d"]})  # fmt: skip
    leaky = SimpleNamespace(name="course", root=grades.root, table=subjects)
    (grades.root / TRUTH_CSV).write_text("ID,label\n")
    sections["cells, subjects and synthetic"] = narrative.caveat_paragraph(leaky)
    apart = subjects.assign(subject=["a", "a", "b", "c", "d", "d"])  # each subject in one split
    by_subject = SimpleNamespace(name="cnmc", root=grades.root, table=apart)
    sections["cells, split by subject"] = narrative.caveat_paragraph(by_subject)
    for case, accuracy, depths in (("beaten", 0.7, clear), ("mixed", 0.86, clear),
                                   ("the networks lose", 0.85, unlearned)):  # fmt: skip
        with_baseline = {m: dataclasses.replace(r) for m, r in depths.items()}
        next(iter(with_baseline.values())).baseline = constructed_baseline(accuracy)
        sections[f"classical baseline, {case}"] = narrative.classical_paragraph(with_baseline)
    published = _imagenet_run(tmp_path, "resnet152", 0.99, published=True)
    sections["ImageNet weights, published"] = narrative.pretrained_text(
        clear, {"resnet34-imagenet": published, "resnet152-imagenet": published}
    )
    assert_matches_golden("narrative", sections)


def test_curve_gaps_at_their_thresholds_are_not_findings() -> None:
    """Training exactly 5 points above validation is not over-fitting, exactly 2 below is not
    yet 'below' (float-exact values: 0.05 - 0 and 0 - 0.02)."""
    above = narrative.curve_paragraph(
        "resnet18", _result("resnet18", 0.9, valid=(0, 0), train=0.05), "test"
    )
    below = narrative.curve_paragraph(
        "resnet18", _result("resnet18", 0.9, valid=(0, 0.02), train=0), "test"
    )
    assert above.endswith("training and validation accuracy end close together: no over-fitting.")
    assert below.endswith("training and validation accuracy end close together: no over-fitting.")


def test_epoch_seconds_read_whole_from_ten_and_to_a_tenth_below() -> None:
    assert [seconds_text(s) for s in (45.3, 10, 9.75, 0.5)] == ["45 s", "10 s", "9.8 s", "0.5 s"]


def test_only_lab3_synths_folder_is_called_the_synthetic_stand_in(tmp_path: Path) -> None:
    """Catches a real set with a metadata file (subjects) and test labels, such as blood-smear
    lymphocytes, described in the report as the synthetic stand-in."""
    from types import SimpleNamespace

    (tmp_path / "test_labels.csv").write_text("ID,label\n./new_dataset/test/0.jpg,1\n")
    real = SimpleNamespace(root=tmp_path)
    (tmp_path / "metadata.csv").write_text("path,subject,label\n./new_dataset/train/0.jpg,P1,1\n")
    assert not narrative._synthetic_cells(real)
    (tmp_path / "metadata.csv").write_text("path,label,split,subject\n./a.bmp,1,train,A1\n")
    assert narrative._synthetic_cells(real)


@pytest.mark.parametrize(
    ("leads", "expected"),
    [
        ({"resnet18": (0.05, 0.01, 0.09), "resnet50": (0.03, 0.001, 0.06)},
         "Every depth beats the baseline beyond the sampling error."),
        ({"resnet18": (0.02, 0.0, 0.04), "resnet50": (-0.02, -0.04, 0.0)},
         "No depth beats the baseline: ResNet18 and ResNet50 are within the sampling error of it "
         "(ResNet18's balanced accuracy is the highest)."),
        ({"resnet18": (0.07, -0.01, 0.15), "resnet50": (0.06, 0.02, 0.10),
          "resnet101": (-0.05, -0.08, -0.02), "resnet152": (-0.04, -0.07, -0.01)},
         "ResNet50 beats it beyond the sampling error; ResNet18 is within the sampling error of "
         "it; ResNet101 and ResNet152 lose to it beyond the sampling error (ResNet18's balanced "
         "accuracy is the highest)."),
        ({"resnet18": (-0.01, -0.03, 0.01), "resnet50": (-0.05, -0.08, -0.02)},
         "No depth beats the baseline: ResNet18 is within the sampling error of it; ResNet50 "
         "loses to it beyond the sampling error (the baseline's balanced accuracy is higher than "
         "every depth's)."),
        ({"resnet18": (0.0, -0.02, 0.02), "resnet50": (-0.01, -0.03, 0.01)},
         "No depth beats the baseline: ResNet18 and ResNet50 are within the sampling error of it "
         "(ResNet18's balanced accuracy is the highest)."),
    ],
    ids=["all-beat", "interval-touching-0", "beat-tied-lose", "best-below-0", "best-at-0"],
)  # fmt: skip
def test_the_classical_verdict_sorts_depths_by_their_intervals(
    leads: dict[str, tuple[float, float, float]], expected: str
) -> None:
    """(mean, low, high) leads over the classical baseline: a depth beats it only when its
    interval's low end is above 0, loses only when the high end is below 0 (an interval that
    touches 0 is a tie); the highest mean, not the highest low end, is named best, and the
    baseline is called higher only when even that mean is below 0.

    Catches < and <= swapped at the interval's edges, a wrong verb for one or several depths,
    the best depth picked by name or by its interval, and a mean of exactly 0 called a loss."""
    assert narrative._classical_verdict(leads) == expected


def test_a_split_by_subject_without_training_subjects_has_no_caveat(tmp_path: Path) -> None:
    """Training images without subject names leave no "train" row in the subjects table; the
    valid and test subjects share none with it, so the split is by subject, with nothing to add.

    Catches dropping the missing "train" row with an error, and an empty caveat list joined in
    ("never saw; .")."""
    table = pd.DataFrame({"split": ["train", "train", "valid", "test"],
                          "subject": ["", "", "a", "b"]})  # fmt: skip
    layout = SimpleNamespace(name="cnmc", root=tmp_path, table=table)
    assert narrative.caveat_paragraph(layout) == (
        "Split by subject: each patient's cells sit in one split only, so the accuracies are "
        "those of patients the networks never saw."
    )


def test_only_the_metadata_header_decides_the_synthetic_stand_in(tmp_path: Path) -> None:
    """Catches reading a metadata file's rows to find its columns: a real set's file may hold
    rows that do not parse (here a ragged second row), and only its header matters."""
    (tmp_path / TRUTH_CSV).write_text("ID,label\n")
    (tmp_path / METADATA_CSV).write_text("path,label,split,subject\n./a.bmp,1,train,A1\n"
                                         "./b.bmp,0,test,B1,x,y\n")  # fmt: skip
    assert narrative._synthetic_cells(SimpleNamespace(root=tmp_path))
