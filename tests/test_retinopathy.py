"""The retinopathy edition: the synthetic five-grade default and the whole workbook on it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lab3.cli import main
from lab3.data.formats import RETINOPATHY_CLASSES
from lab3.data.layouts import load_layout
from lab3.data.synthetic.retinopathy import draw_fundus, write_retinopathy_dataset
from lab3.workbook import runner as workbook
from lab3.workbook.report import RETINOPATHY_TITLE, build_report
from lab3.workbook.results import evaluate_runs

# the leukemia edition's class and disease words ("normal" as a word, not "normalised"; the
# course's Dataset class, `LeukemiaDataset`, keeps its name)
LEUKEMIA_WORDS = re.compile(
    r"\b(blasts?|normal|hem|leuka?emia|lymphoblasts?|white blood cells?)\b", re.IGNORECASE
)


@pytest.fixture(scope="module")
def retinopathy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("retinopathy") / "data"
    write_retinopathy_dataset(out, train=60, test=20, size=64, seed=3, progress=False)
    return out


def test_synth_writes_the_retinopathy_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "retino"
    args = ["synth", "--kind", "retinopathy", "--out", str(out), "--train", "40", "--test", "10"]
    assert main([*args, "--size", "64"]) == 0
    assert "wrote 50 fundus images" in capsys.readouterr().out
    layout = load_layout(out)
    assert layout.name == "retinopathy" and layout.class_names == RETINOPATHY_CLASSES
    assert set(layout.table["label"]) == {0, 1, 2, 3, 4}
    sizes = layout.table.groupby("split").size().to_dict()
    assert sizes["test"] == 10 and sizes["train"] + sizes["valid"] == 40 and sizes["valid"] > 0
    shares = layout.table["label"].value_counts(normalize=True)
    assert shares.idxmax() == 0  # grade 0 is the majority, as in the real data
    image = Image.open(next((out / "data").glob("*.jpeg")))
    assert image.format == "JPEG" and image.size == (64, 64)
    # a second write into the same folder is refused, in one line, leaving it as it was
    assert main([*args]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_lesions_grow_with_the_grade() -> None:
    """Dark-red lesion pixels (microaneurysms, haemorrhages) increase with the grade."""

    def lesion_share(grade: int) -> float:
        shares = []
        for seed in range(12):
            pixels = draw_fundus(np.random.default_rng(seed), grade, 128).astype(int)
            red, green = pixels[..., 0], pixels[..., 1]
            shares.append(float(((red > 50) & (red < 120) & (green < 30)).mean()))
        return float(np.mean(shares))

    shares = [lesion_share(g) for g in range(5)]
    assert shares == sorted(shares) and shares[4] > 3 * shares[1] > 0


def test_the_workbook_runs_on_five_grades(retinopathy: Path, tmp_path: Path) -> None:
    run = workbook.run_workbook(
        data=retinopathy, profile="tiny", models=["resnet18"], out=tmp_path / "run"
    )
    evaluated = evaluate_runs(run, ["resnet18"], retinopathy, device="cpu")
    test = evaluated["resnet18"].evaluations["test"]
    assert test.confusion.shape == (5, 5) and test.confusion.sum() == 20
    assert "kappa_quadratic" in test.metrics
    for name in ("confusion_test.png", "confusion_test_normalised.png", "accuracy_curves.png"):
        assert (run / "figures" / name).stat().st_size > 1000
    report = build_report(run)
    page = (run / "report.html").read_text()
    assert report.is_file() and RETINOPATHY_TITLE in page
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S))
    text = re.sub(r"data:image/[^\s\"']+", " ", text)
    assert "kappa (quadratic)" in text and "quadratic weights" in text
    found = sorted({m.group(0).lower() for m in LEUKEMIA_WORDS.finditer(text)})
    assert not found, found
    assert "4 proliferative" in text  # the grades name the confusion matrix's classes
    pd.read_csv(run / "runs" / "resnet18" / "history.csv")  # trained and recorded
