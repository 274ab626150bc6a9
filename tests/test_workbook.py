"""The workbook end to end (every notebook through papermill on a tiny synthetic set, then the
PDF report), its failure reporting, and the glue the notebooks call."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from builders import TINY, folder_snapshot
from PIL import Image

from lab3.cli import main
from lab3.config import TrainConfig, make_config
from lab3.data.layouts import load_layout
from lab3.engine.resume import fit_or_resume
from lab3.errors import UserError
from lab3.formatting import join_names, pct, style_table
from lab3.metrics import paired_difference
from lab3.models import build_model
from lab3.models.reference import (
    compare_with_reference,
    cost_table,
    cost_text,
    equivalence_text,
    stage_table,
)
from lab3.workbook import runner as workbook
from lab3.workbook.ablation import (
    ABLATION_CSV,
    ABLATION_VARIANTS,
    IMAGES_CSV,
    ablation_effects,
    ablation_findings,
    ablation_plan,
    ablation_table,
    augmentation_views,
    load_ablation,
    preprocessing_panels,
    run_ablation,
    slug,
    tta_label,
    with_intervals,
)
from lab3.workbook.exploration import (
    class_balance,
    course_dataloader_batch,
    image_statistics,
    load_images,
    pick_samples,
    statistics_by_class,
    subjects_per_split,
)
from lab3.workbook.folders import parse_models
from lab3.workbook.narrative import discussion, headline
from lab3.workbook.notebook_exec import check_kernel
from lab3.workbook.report import REPORT_SECTIONS, build_report, find_chromium
from lab3.workbook.results import (
    demo_table,
    evaluate_runs,
    highest_accuracy_table,
    metrics_table,
    pick_misclassified,
    report_split,
    short_class_names,
)

MODELS = ["resnet18", "resnet50", "resnet152"]
TEST_CSVS = {"resnet18": "resnet_18_test.csv", "resnet50": "resnet_50_test.csv",
             "resnet152": "resnet_152_test.csv"}  # fmt: skip
FIGURES = [
    "class_counts", "samples", "intensity", "preprocessing_steps", "augmentation_views",
    "ablation", "accuracy_curves", "loss_curves", "confusion_test", "confusion_test_normalised",
    "misclassified", "attention_depths_test",
    *(f"{kind}_{model}" for kind in ("accuracy", "loss", "lr") for model in MODELS),
    *(f"attention_{model}_test" for model in MODELS),
]  # fmt: skip


@pytest.fixture(scope="module")
def run(small_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole workbook, all three depths, on the tiny profile (1 epoch at 32 px); the data
    folder's listing and checksums are taken first (test_the_dataset_folder_is_never_written)."""
    DATA_BEFORE.update(folder_snapshot(small_synthetic))
    out = tmp_path_factory.mktemp("workbook") / "run"
    return workbook.run_workbook(data=small_synthetic, profile="tiny", models=MODELS, out=out)


DATA_BEFORE: dict[str, str] = {}


def _executed(run: Path) -> dict[str, nbformat.NotebookNode]:
    return {p.name: nbformat.read(p, as_version=4) for p in (run / "notebooks").glob("*.ipynb")}


# ------------------------------------------------------------------------- the batch run


def test_every_notebook_runs_without_an_error_cell(run: Path) -> None:
    executed = _executed(run)
    expected = [f"{n}.ipynb" for n in workbook.NOTEBOOKS if n != workbook.TRAIN_NOTEBOOK]
    expected += [f"{workbook.TRAIN_NOTEBOOK}_{m}.ipynb" for m in MODELS]
    assert sorted(executed) == sorted(expected)
    for name, nb in executed.items():
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            assert cell.execution_count is not None, f"{name}: a cell did not run"
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    record = json.loads((run / "workbook.json").read_text())
    assert [n["notebook"] for n in record["notebooks"]] == [
        s.output for s in workbook.plan(run, run, "tiny", MODELS)
    ]
    assert not (run.parent / "latest").exists(), "a custom --out gets no link beside it"


def test_parameters_are_injected_per_notebook(run: Path, small_synthetic: Path) -> None:
    nb = _executed(run)["04_train_resnet50.ipynb"]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    source = injected[0].source
    assert 'model = "resnet50"' in source
    assert f'run_dir = "{run}"' in source
    assert f'data_dir = "{small_synthetic.resolve()}"' in source
    assert 'models = "resnet18,resnet50,resnet152"' in source
    for model in MODELS:
        for name in ("best.pt", "history.csv", "config.json"):
            assert (run / "runs" / model / name).is_file()
        assert not (run / "runs" / model / "last.pt").exists(), "a finished depth keeps no last.pt"


def test_figures_exist_are_real_images_and_show_inline(run: Path) -> None:
    for name in FIGURES:
        path = run / "figures" / f"{name}.png"
        assert path.is_file(), f"missing figure {name}"
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        assert min(pixels.shape) > 100 and pixels.std() > 1.0, f"{name} looks blank"
    # The inline backend is forced even though the tests run with MPLBACKEND=Agg.
    evaluation = _executed(run)["05_evaluation_and_report.ipynb"]
    inline = [
        o
        for c in evaluation.cells
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(inline) >= 5


def test_the_three_submissions_validate(run: Path, small_synthetic: Path) -> None:
    truth = pd.read_csv(small_synthetic / "test_labels.csv")
    for model in MODELS:
        frame = pd.read_csv(run / "submissions" / f"{model}.csv", dtype={"ID": str})
        ids = pd.read_csv(small_synthetic / TEST_CSVS[model], dtype=str)["Path"].tolist()
        assert frame.columns.tolist() == ["ID", "label"]
        assert frame["ID"].tolist() == ids
        assert set(frame["label"]) <= {0, 1}
        assert sorted(frame["ID"]) == sorted(truth["ID"])


def test_report_pdf_has_the_five_sections_in_order_and_figures(run: Path) -> None:
    if find_chromium() is None:
        pytest.skip("chromium is not installed, so no PDF is rendered (.ci/run installs it)")
    from pypdf import PdfReader

    pdf = build_report(run)
    assert pdf == run / "report.pdf" and pdf.read_bytes()[:5] == b"%PDF-"
    reader = PdfReader(pdf)
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    positions = [text.find(heading) for _tag, heading in REPORT_SECTIONS]
    assert all(p >= 0 for p in positions), dict(zip(REPORT_SECTIONS, positions, strict=True))
    assert positions == sorted(positions)
    for phrase in (
        "Highest test accuracy", "strict=True", "Caveat", "ResNet152", "What the networks look at",
    ):  # fmt: skip
        assert phrase in text, phrase
    assert "injected" not in text.lower() and "run_dir =" not in text
    images = sum(len(page.images) for page in reader.pages)
    assert images >= 10, f"only {images} images embedded in the PDF"


# ------------------------------------------------------------------------- failures


def _broken_notebooks(tmp_path: Path) -> Path:
    """A copy of the notebooks in which 01 raises right after its parameters."""
    folder = tmp_path / "notebooks"
    shutil.copytree(workbook.NOTEBOOKS_DIR, folder)
    path = folder / "01_data_exploration.ipynb"
    nb = nbformat.read(path, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(
        index + 1, nbformat.v4.new_code_cell('raise RuntimeError("boom from the test")')
    )
    nbformat.write(nb, path)
    return folder


def test_a_failing_notebook_is_named_with_its_cell_and_kept(
    small_synthetic: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "failing"
    with pytest.raises(UserError) as caught:
        workbook.run_workbook(
            data=small_synthetic,
            profile="tiny",
            models=["resnet18"],
            out=out,
            notebooks_dir=_broken_notebooks(tmp_path),
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "01_data_exploration.ipynb" in message
    # markdown, parameters, papermill's injected cell, then the raising one
    assert "cell 4 (In [3]: raise RuntimeError" in message
    assert "RuntimeError: boom from the test" in message
    partial = out / "notebooks" / "01_data_exploration.ipynb"
    assert str(partial) in message and partial.is_file()
    outputs = [o for c in nbformat.read(partial, as_version=4).cells for o in c.get("outputs", [])]
    assert any(o.output_type == "error" and o.ename == "RuntimeError" for o in outputs)
    assert not (out / "notebooks" / "02_preprocessing_experiments.ipynb").exists()
    assert json.loads((out / "workbook.json").read_text())["failed"] == "01_data_exploration.ipynb"
    assert not (out.parent / "latest").exists(), "a failed run must not become 'latest'"


def test_bad_arguments_fail_before_any_kernel_starts(small_synthetic: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such data folder"):
        workbook.run_workbook(data=tmp_path / "nowhere", profile="tiny", out=tmp_path / "a")
    with pytest.raises(UserError, match="unknown profile"):
        workbook.run_workbook(data=small_synthetic, profile="huge", out=tmp_path / "b")
    with pytest.raises(UserError, match="unknown model 'resnet19'"):
        workbook.run_workbook(data=small_synthetic, models=["resnet19"], out=tmp_path / "c")
    with pytest.raises(UserError, match="listed twice"):
        workbook.run_workbook(data=small_synthetic, models="resnet18,resnet18", out=tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "report.pdf").write_text("an earlier run")
    with pytest.raises(UserError, match="never overwritten"):
        workbook.run_workbook(data=small_synthetic, profile="tiny", out=taken)
    assert (taken / "report.pdf").read_text() == "an earlier run"


def test_cli_run_reports_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab3 run: error:") and "\n" not in err


def test_missing_kernel_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no Jupyter kernel named 'no-such-kernel-lab3'"):
        check_kernel("no-such-kernel-lab3")
    check_kernel("python3")  # the project's own


def test_run_folders_are_fresh_and_latest_moves_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = workbook.new_run_folder(None), workbook.new_run_folder(None)
    assert first != second and first.parent == second.parent == (tmp_path / "outputs").resolve()
    assert workbook.point_latest(first) == first.parent / "latest"
    assert workbook.point_latest(second) == second.parent / "latest"
    assert os.readlink(second.parent / "latest") == second.name
    assert not [p for p in second.parent.iterdir() if p.name.startswith(".latest")]


def test_plan_runs_training_once_per_model() -> None:
    steps = workbook.plan(Path("/d"), Path("/r"), "quick", ["resnet18", "resnet152"])
    assert [s.output for s in steps] == [
        "01_data_exploration.ipynb",
        "02_preprocessing_experiments.ipynb",
        "03_resnet_definitions.ipynb",
        "04_train_resnet18.ipynb",
        "04_train_resnet152.ipynb",
        "05_evaluation_and_report.ipynb",
    ]
    assert steps[4].parameters["model"] == "resnet152"
    assert "model" not in steps[0].parameters
    assert steps[0].parameters == {
        "data_dir": "/d", "run_dir": "/r", "profile": "quick",
        "models": "resnet18,resnet152", "device": "auto", "split_mode": "stratified",
    }  # fmt: skip
    by_subject = workbook.plan(Path("/d"), Path("/r"), "quick", ["resnet18"], split_mode="subject")
    modes = {s.source: s.parameters.get("split_mode") for s in by_subject}
    assert modes == {**dict.fromkeys(workbook.NOTEBOOKS, "subject"), "03_resnet_definitions": None}


# ------------------------------------------------------------------------------ notebook glue


def test_data_exploration_helpers(small_synthetic: Path) -> None:
    layout = load_layout(small_synthetic)
    balance = class_balance(layout)
    assert balance.loc["train", "images"] == 48
    assert balance.loc["train", list(layout.class_names)].sum() == pytest.approx(1.0)
    subjects = subjects_per_split(layout)  # from the synthetic metadata.csv
    assert (
        subjects is not None
        and subjects.loc["train", "also in train"] == subjects.loc["train", "subjects"]
    )
    samples = pick_samples(layout, "train", per_class=3)
    assert samples["label"].tolist() == [0, 0, 0, 1, 1, 1]
    stats = image_statistics(layout, per_group=4)
    assert stats["black_fraction"].between(0, 1).all() and (stats["width"] == 160).all()
    assert len(stats) == 4 * stats.groupby(["split", "label"]).ngroups
    by_class = statistics_by_class(layout, stats)
    assert list(by_class.index) == list(layout.class_names)
    images, labels, size = course_dataloader_batch(small_synthetic, "tightcrop", 32, 8)
    assert tuple(images.shape) == (8, 3, 32, 32) and len(labels) == 8 and size == 48


def test_preprocessing_views(small_synthetic: Path) -> None:
    layout = load_layout(small_synthetic)
    image = load_images(layout.split("train")["path"][:1])[0]
    panels, titles = preprocessing_panels([image, image], 40)
    assert len(panels) == len(titles) == 12
    assert panels[1].shape == (40, 40, 3) and panels[5].shape == (40, 40, 3)
    assert panels[4].ndim == 2  # grey
    views, names = augmentation_views(image, 40, count=5)
    assert len(views) == 6 and names[0] == "input"
    assert all(v.shape == (40, 40, 3) and v.dtype == np.uint8 for v in views)
    assert not all(np.array_equal(views[0], v) for v in views[1:])


def test_fit_or_resume_reuses_a_finished_run_and_refuses_other_settings(
    small_synthetic: Path, tmp_path: Path
) -> None:
    config = make_config("tiny", model="resnet18", data=str(small_synthetic),
                         out=str(tmp_path / "r"), train_limit=32, device="cpu")  # fmt: skip
    first = fit_or_resume(config)
    stamp = (tmp_path / "r" / "best.pt").stat().st_mtime_ns
    again = fit_or_resume(config)
    assert (tmp_path / "r" / "best.pt").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first.history.reset_index(drop=True), again.history)
    other = make_config("tiny", model="resnet18", data=str(small_synthetic),
                        out=str(tmp_path / "r"), train_limit=32, image_size=40)  # fmt: skip
    with pytest.raises(UserError, match="image_size 32 -> 40"):
        fit_or_resume(other)


def test_ablation_of_the_run_is_complete_and_reusable(
    run: Path, small_synthetic: Path, tmp_path: Path
) -> None:
    table = pd.read_csv(run / "ablation" / ABLATION_CSV)
    assert table["variant"].tolist() == [v for v in ABLATION_VARIANTS for _ in (1, 8)]
    assert table["views"].tolist() == [1, 8] * 3
    assert table["valid_acc"].between(0, 1).all()
    copy = tmp_path / "ablation"
    shutil.copytree(run / "ablation", copy)
    checkpoint = copy / "tightcrop-equalize" / "best.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = run_ablation(small_synthetic, copy, profile="tiny", device="cpu", tta=(1,))
    assert checkpoint.stat().st_mtime_ns == stamp, "a finished variant must be reused"
    assert again["valid_acc"].tolist() == table.loc[table["views"] == 1, "valid_acc"].tolist()
    wide = ablation_table(table)
    assert list(wide.index) == list(ABLATION_VARIANTS)
    per_image = pd.read_csv(run / "ablation" / IMAGES_CSV)
    recomputed = _ablation_from(per_image)  # the intervals follow from the runs' own answers
    for column in ("valid_acc", "gain", "gain_low", "gain_high", "tta_gain_low", "tta_gain_high"):
        assert table[column].to_numpy() == pytest.approx(recomputed[column].to_numpy())


def test_the_ablation_trains_the_configs_of_its_plan(run: Path, small_synthetic: Path) -> None:
    """Catches notebook 02 training other settings than the plan the time estimate counts
    (`ablation_plan`): each variant's saved config is its planned one."""
    plan = ablation_plan("tiny", data_dir=small_synthetic, out_dir=run / "ablation")
    keys = ("model", "preprocess", "epochs", "min_steps", "train_limit", "batch_size", "tta")
    for config in plan.configs.values():
        saved = TrainConfig.load(Path(config.out) / "config.json").to_dict()
        assert {k: saved[k] for k in keys} == {k: config.to_dict()[k] for k in keys}


def test_paired_interval_from_per_image_correctness() -> None:
    """Catches an interval not computed from the paired images: 30 images where the better
    variant alone is right on 6 and the worse alone on 1 give +5/30 with the paired standard
    error of the differences; identical answers give a zero-width interval at zero."""
    better = np.array([1] * 6 + [0] * 1 + [1] * 15 + [0] * 8)
    worse = np.array([0] * 6 + [1] * 1 + [1] * 15 + [0] * 8)
    diff = better - worse
    mean, low, high = paired_difference(better, worse)
    half = 1.959964 * diff.std(ddof=1) / np.sqrt(30)
    assert mean == pytest.approx(5 / 30)
    assert (low, high) == pytest.approx((5 / 30 - half, 5 / 30 + half))
    assert paired_difference(better, better) == (0.0, 0.0, 0.0)


def _ablation_from(per_image: pd.DataFrame) -> pd.DataFrame:
    table = per_image.groupby(["variant", "views"], sort=False)["correct"].mean()
    table = table.rename("valid_acc").reset_index()
    table["tta"] = table["views"].map(tta_label)
    table["valid_images"] = per_image["image"].nunique()
    return with_intervals(table, per_image)


def test_ablation_prose_calls_only_intervals_clear_of_zero_findings() -> None:
    """Catches a narrative that reads a difference inside the noise as a finding: tight crop
    beats plain resize on 40 of 300 images (never worse: a finding), 8-view TTA changes 2."""
    n = 300
    rng = np.random.default_rng(0)
    base = (rng.random(n) < 0.7).astype(int)
    crop = base.copy()
    crop[np.flatnonzero(base == 0)[:40]] = 1
    frames = []
    for variant, correct in (("plain resize", base), ("tight crop", crop)):
        tta = correct.copy()
        tta[np.flatnonzero(correct == 0)[:2]] = 1
        for views, values in ((1, correct), (8, tta)):
            frames.append(pd.DataFrame({"variant": variant, "views": views,
                                        "image": np.arange(n), "correct": values}))  # fmt: skip
    table = _ablation_from(pd.concat(frames, ignore_index=True))
    effects = ablation_effects(table).set_index("effect")
    assert effects.loc["tight crop vs plain resize", "real"]
    assert effects.loc["tight crop vs plain resize", "points"] == pytest.approx(100 * 40 / n)
    assert not effects.loc["8-view TTA on tight crop", "real"]
    text = ablation_findings(table)
    assert "outside the noise: tight crop vs plain resize +13.3 points" in text
    assert "inside the noise (the interval includes zero, so not a finding): 8-view TTA" in text
    assert "Did not learn" not in text  # no balanced accuracy recorded: nothing to judge
    table["classes"] = 2
    table["balanced_acc"] = np.where(table["variant"] == "plain resize", 0.5, 0.8)
    assert (
        "Did not learn in this budget: plain resize (balanced accuracy at chance: it "
        "answers nearly one class)" in ablation_findings(table)
    )
    table["balanced_acc"] = 0.56  # just past chance + the margin: learned something
    assert "Did not learn" not in ablation_findings(table)
    table["valid_acc"] = 0.7
    assert ablation_findings(table).startswith("Every variant reached the same")


def test_model_tables_and_the_reference_check() -> None:
    stages = stage_table(MODELS)
    assert stages["weighted layers"].tolist() == [18, 50, 152]
    assert stages.loc["ResNet152", ["layer1", "layer2", "layer3", "layer4"]].tolist() == [
        3,
        8,
        36,
        3,
    ]
    costs = cost_table(["resnet18"], 64)
    assert costs.loc["ResNet18", "GMACs @ 224 px"] == pytest.approx(1.82, abs=0.01)
    assert "ResNet18 has 11.18 M parameters" in cost_text(costs)
    # The notebook's check, against torchvision's ResNet18 (not lab3's against itself) ...
    torch.manual_seed(0)
    checks = compare_with_reference(
        build_model("resnet18"), torchvision.models.resnet18(num_classes=2), [(3, 64, 64)]
    )
    assert checks["equal"].all() and "the models are the published architectures" in (
        equivalence_text(checks)
    )
    # ... and it tells a reference with the same tensors but other wiring apart.
    rewired = torchvision.models.resnet18(num_classes=2)
    rewired.maxpool = torch.nn.Identity()
    checks = compare_with_reference(build_model("resnet18"), rewired, [(3, 64, 64)])
    assert not checks["equal"].any() and "but they differ" in equivalence_text(checks)
    with pytest.raises(RuntimeError, match="state_dict"):
        compare_with_reference(build_model("resnet18"), build_model("resnet34"))


def test_evaluation_tables_and_discussion_from_the_run(
    run: Path, small_synthetic: Path, tmp_path: Path
) -> None:
    results = evaluate_runs(run, ["resnet18", "resnet50"], small_synthetic, "cpu")
    assert report_split(results) == "test"
    metrics = metrics_table(results)
    assert list(metrics.index) == [
        (m, s) for m in ("ResNet18", "ResNet50", "classical features") for s in ("valid", "test")
    ]
    # the ranked test split averages the tiny profile's 2 views; valid beside it takes one
    assert metrics["TTA views"].tolist() == [1, 2] * 2 + [1, 1]
    best = highest_accuracy_table(results)
    assert {"best epoch", "best valid acc", "valid acc (best.pt)", "test acc, TTA x2"} <= set(
        best.columns
    )
    demo = demo_table(results)
    assert demo[["valid views", "test views"]].values.tolist() == [[1, 2]] * 2
    # without test labels valid is the ranked split, and it averages the views
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(small_synthetic, unlabelled, ignore=shutil.ignore_patterns("test_labels.csv"))
    alone = evaluate_runs(run, ["resnet18"], unlabelled, "cpu")["resnet18"].evaluations
    assert list(alone) == ["valid"] and alone["valid"].metrics["tta_views"] == 2
    predictions = results["resnet18"].evaluations["test"].predictions
    wrong = np.flatnonzero(predictions.predicted != predictions.labels)
    picked = pick_misclassified(results["resnet18"], "test", count=3)
    assert len(picked["images"]) == len(picked["true_labels"]) == min(3, len(wrong))
    assert all(t != p for t, p in zip(picked["true_labels"], picked["pred_labels"], strict=True))
    confidence = [float(p[q]) for p, q in zip(picked["probs"], picked["pred_labels"], strict=True)]
    assert confidence == sorted(confidence, reverse=True)
    assert picked["class_names"] == ["normal", "blast"]
    text = discussion(results, load_ablation(run), load_layout(small_synthetic))
    assert text.startswith("- ") and "ResNet50" in text and "Caveat" in text
    assert "A classical baseline, logistic regression on 16 hand-measured" in text
    assert "synthetic stand-in dataset" in text and "test subjects also have cells" in text
    assert "Highest test accuracy: **" in headline(results)
    html = style_table(best, percent=["best valid acc"]).to_html()
    assert " %" in html


def test_missing_training_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run 04_train for it first"):
        evaluate_runs(tmp_path, ["resnet18"])


def test_small_helpers() -> None:
    assert parse_models(" resnet18, resnet50 ,") == ["resnet18", "resnet50"]
    with pytest.raises(UserError):
        parse_models("")
    assert pct(0.9312) == "93.1 %" and pct(float("nan")) == "n/a"
    assert slug("tightcrop,equalize") == "tightcrop-equalize"
    assert join_names(["a", "b", "c"]) == "a, b and c"
    assert short_class_names(["normal (hem)", "blast (all)"]) == ["normal", "blast"]


def test_benchmark_results_scripts_read_the_finished_run(
    run: Path, small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/workbook_results.py and recipe_results.py on a real finished run: each depth's
    submission scored (the scripts share `depth_row`), written with the provenance header. The
    workbook's are the submissions the run wrote, in the precision it ran in, never predicted
    again here (another precision can move an image); recipe_results predicts them again, and
    on the same machine gets the same scores."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import recipe_results
    import workbook_results

    for module in (workbook_results, recipe_results):
        monkeypatch.setattr(module, "RESULTS", tmp_path)
    predict = recipe_results.predict_submission

    def predicted_again(*args, **kwargs):
        raise AssertionError("workbook_results predicted the test split again")

    monkeypatch.setattr(recipe_results, "predict_submission", predicted_again)
    assert workbook_results.main(["--run", str(run), "--name", "w", "--command", "make run"]) == 0
    monkeypatch.setattr(recipe_results, "predict_submission", predict)
    depths = json.loads((tmp_path / "w.json").read_text())["depths"]
    assert [d["model"] for d in depths] == list(MODELS)
    assert all(0 <= d["test_acc_tta"] <= 1 and d["test_images"] > 0 for d in depths)
    arguments = ["--data", str(small_synthetic), "--runs", str(run / "runs"), "--name", "r"]
    assert recipe_results.main(arguments) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [(r["run"], r["model"], r["seed"]) for r in rows] == [(m, m, 0) for m in MODELS]
    assert [r["test_acc_tta"] for r in rows] == [d["test_acc_tta"] for d in depths]


def test_the_dataset_folder_is_never_written(
    run: Path, small_synthetic: Path, tmp_path: Path
) -> None:
    """The workbook, `lab3 evaluate/predict/explain/report` and a training leave the data folder
    byte for byte as it was, with no file or folder added or removed (Kaggle mounts the course
    data read-only; permission bits prove nothing for root, so the contents are compared)."""
    best = run / "runs" / "resnet18" / "best.pt"
    image = next((small_synthetic / "new_dataset" / "test").iterdir())
    commands = [
        ["evaluate", "--checkpoint", str(best), "--split", "valid"],
        ["predict", "--checkpoint", str(best), "--out", str(tmp_path / "s.csv")],
        ["explain", "--run", str(run), "--model", "resnet18", "--n", "2"],
        ["explain", "--checkpoint", str(best), "--images", str(image), "--out",
         str(tmp_path / "e.png")],
        ["train", "--model", "resnet18", "--data", str(small_synthetic),
         "--out", str(tmp_path / "t"), *TINY],
        ["report", "--run", str(run)],
    ]  # fmt: skip
    for command in commands:
        assert main(command) == 0, command
    assert DATA_BEFORE, "the workbook fixture took no snapshot"
    assert folder_snapshot(small_synthetic) == DATA_BEFORE
