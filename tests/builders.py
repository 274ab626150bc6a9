"""Datasets the tests write themselves, in the formats users bring, so no test needs ../shared.

* `write_course_dataset`: the course's Kaggle layout (``train.csv``/``valid.csv`` with
  ``Path,label``, three ``resnet_*_test.csv`` listing the same images in three different orders,
  ``test_labels.csv``) with a strong colour cue, so a few epochs of a tiny ResNet18 run separate
  the classes and label-based checks (accuracy, per-ID submissions, resume) mean something.
* `copy_cnmc_cells`: the C-NMC sample cells (real or stand-ins) as a C-NMC data folder, flat or
  in folds, each cell under as many cell numbers as asked.
* `model_results`: one trained depth's results (history and evaluations) of a chosen accuracy,
  without training, for the report's tables and prose.
* `write_format_samples`: stand-ins for ../shared/fixtures with the same file names, counts and
  formats (C-NMC BMPs of a cell on black inside the real pixel ranges, the course CSVs and an
  example submission, the retinopathy edition's headerless CSVs), used when the real samples
  are absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lab3.config import TrainConfig
from lab3.engine.evaluate import Evaluation, Predictions
from lab3.workbook.results import ModelResults

TEST_CSV_NAMES = ("resnet_18_test.csv", "resnet_50_test.csv", "resnet_152_test.csv")
# Cell colours far apart in hue: normal cells blue, blasts purple-red (label 0, label 1).
CLASS_COLOURS = ((40, 60, 150), (150, 40, 90))
CNMC_NAMES = (
    "UID_1_1_1_all.bmp", "UID_1_2_2_all.bmp", "UID_1_3_1_all.bmp", "UID_1_4_2_all.bmp",
    "UID_3_4_2_all.bmp", "UID_53_4_8_all.bmp", "UID_H10_47_2_hem.bmp", "UID_H6_10_1_hem.bmp",
    "UID_H6_1_1_hem.bmp", "UID_h3_4_1_hem.bmp", "UID_h3_5_1_hem.bmp",
)  # fmt: skip


def cell_image(
    rng: np.random.Generator, size: int, colour: tuple[int, int, int], radius: float
) -> np.ndarray:
    """A textured disk (a stand-in cell) on a black background, somewhere near the centre."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    noise = rng.normal(0, 10, (size, size, 3))
    pixels = np.clip(np.asarray(colour, dtype=float) + noise, 20, 255).astype(np.uint8)
    return np.where(disk[..., None], pixels, 0).astype(np.uint8)


def _labels(rng: np.random.Generator, n: int, blast_share: float) -> np.ndarray:
    """About `blast_share` ones, both classes always present, in random order."""
    ones = min(max(int(round(n * blast_share)), 1), n - 1)
    return rng.permutation(np.r_[np.ones(ones, np.int64), np.zeros(n - ones, np.int64)])


def write_course_dataset(
    root: Path,
    train: int = 64,
    valid: int = 32,
    test: int = 24,
    size: int = 32,
    seed: int = 0,
    doubled: bool = False,
    blast_share: float = 0.68,
) -> Path:
    """The course layout with `size`-px BMPs whose colour gives the class away.

    The three test CSVs list the test images in three different shuffled orders (as the
    course's do), none of them the sorted order, so a submission that follows the wrong order
    or assigns labels in sorted-ID order is wrong for some rows. `doubled` puts the images
    under ``new_dataset/new_dataset/`` as unzipping the course archive does.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    image_base = root / "new_dataset" if doubled else root
    ids: dict[str, list[str]] = {}
    labels: dict[str, np.ndarray] = {}
    for split, n in (("train", train), ("valid", valid), ("test", test)):
        labels[split] = _labels(rng, n, blast_share)
        ids[split] = [f"./new_dataset/{split}/{i}.bmp" for i in range(n)]
        for rel, label in zip(ids[split], labels[split], strict=True):
            path = image_base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            radius = size * rng.uniform(0.2, 0.35)
            image = cell_image(rng, size, CLASS_COLOURS[label], radius)
            Image.fromarray(image).save(path, format="BMP")
    for split in ("train", "valid"):
        frame = pd.DataFrame({"Path": ids[split], "label": labels[split]})
        frame.to_csv(root / f"{split}.csv", index=False)
    for name, order in zip(TEST_CSV_NAMES, shuffled_orders(rng, test, 3), strict=True):
        pd.DataFrame({"Path": [ids["test"][i] for i in order]}).to_csv(root / name, index=False)
    truth = pd.DataFrame({"ID": ids["test"], "label": labels["test"]})
    truth.to_csv(root / "test_labels.csv", index=False)
    return root


def shuffled_orders(rng: np.random.Generator, n: int, count: int) -> list[np.ndarray]:
    """`count` distinct permutations of range(n), none of them the identity or ID-sorted."""
    id_sorted = sorted(range(n), key=lambda i: f"{i}.bmp")
    forbidden = {tuple(range(n)), tuple(id_sorted)}
    orders: list[np.ndarray] = []
    while len(orders) < count:
        order = rng.permutation(n)
        if tuple(order) not in forbidden:
            forbidden.add(tuple(order))
            orders.append(order)
    return orders


def copy_cnmc_cells(samples: Path, root: Path, copies: int = 1, folds: bool = False) -> Path:
    """The C-NMC cells of `samples` (``UID_*.bmp``) written to `root`: flat, or under
    ``fold_0/all|hem/`` as C-NMC distributes them; copy k of a cell has k x 10 added to its cell
    number (copy 0 keeps the original name)."""
    for source in sorted(samples.glob("UID_*.bmp")):
        subject, image, cell, cls = source.stem.removeprefix("UID_").split("_")
        folder = root / "fold_0" / cls if folds else root
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            name = f"UID_{subject}_{image}_{int(cell) + 10 * copy}_{cls}.bmp"
            (folder / name).write_bytes(source.read_bytes())
    return root


def write_format_samples(root: Path, seed: int = 0) -> Path:
    """Stand-ins for ../shared/fixtures: same names, counts and formats, made-up content."""
    rng = np.random.default_rng(seed)
    cnmc = root / "cnmc"
    cnmc.mkdir(parents=True)
    for name in CNMC_NAMES:
        # About a fifth of the 450 px frame, with the real cells' stain colour and texture.
        image = cell_image(rng, 450, (75, 33, 82), radius=rng.uniform(105, 120))
        Image.fromarray(image).save(cnmc / name, format="BMP")
    ta = root / "ta_csv"
    ta.mkdir()
    for split, n in (("train", 7995), ("valid", 1599)):
        frame = pd.DataFrame(
            {"Path": [f"./new_dataset/{split}/{i}.bmp" for i in range(n)],
             "label": _labels(rng, n, 0.68)}
        )  # fmt: skip
        frame.to_csv(ta / f"{split}.csv", index=False)
    test_ids = [f"./new_dataset/test/{i}.bmp" for i in range(1067)]
    orders = shuffled_orders(rng, 1067, 3)
    for name, order in zip(TEST_CSV_NAMES, orders, strict=True):
        pd.DataFrame({"Path": [test_ids[i] for i in order]}).to_csv(ta / name, index=False)
    submission = {"ID": [test_ids[i] for i in orders[0]], "label": _labels(rng, 1067, 0.68)}
    pd.DataFrame(submission).to_csv(ta / "example_submission.csv", index=False)
    retinopathy = root / "retinopathy_csv"
    retinopathy.mkdir()
    for prefix, n in (("train", 28100), ("test", 7026)):
        names = [f"{prefix}{i}_{'left' if i % 2 else 'right'}" for i in range(n)]
        (retinopathy / f"{prefix}_img.csv").write_text("\n".join(names) + "\n")
        grades = rng.permutation(np.arange(n) % 5)
        (retinopathy / f"{prefix}_label.csv").write_text("\n".join(map(str, grades)) + "\n")
    return root


GOLDEN = Path(__file__).parent / "golden"


def assert_matches_golden(name: str, sections: dict[str, str]) -> None:
    """Compare generated prose with its reviewed copy, tests/golden/<name>.md, one `## ` section
    per case. After a deliberate change of wording, rewrite the copies with
    `LAB3_UPDATE_GOLDEN=1 pytest tests/test_narrative.py tests/test_explain.py`, read the diff
    and commit it."""
    text = "".join(f"## {case}\n\n{body}\n\n" for case, body in sections.items())
    path = GOLDEN / f"{name}.md"
    if os.environ.get("LAB3_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"the prose differs from {path.name}"


CELL_CLASSES = ["normal (hem)", "blast (all)"]
SPLITS = ("valid", "test")  # the splits a constructed depth is evaluated on


def constructed_evaluation(accuracy: float, n: int, blast_share: float, split: str) -> Evaluation:
    """n images, round(n * blast_share) of them blasts; the first errors fall on normal cells."""
    ones = round(n * blast_share)
    labels = np.r_[np.zeros(n - ones), np.ones(ones)].astype(np.int64)
    predicted = labels.copy()
    wrong = round((1 - accuracy) * n)
    predicted[:wrong] = 1 - predicted[:wrong]
    metrics = {"accuracy": float((predicted == labels).mean()), "n": n}
    predictions = Predictions(np.eye(2)[predicted], labels, np.arange(n))
    return Evaluation(Path("best.pt"), split, TrainConfig(), CELL_CLASSES, predictions, metrics)


def model_results(
    model: str,
    accuracy: float,
    n: int = 400,
    blast_share: float = 0.68,
    seconds: float = 10.0,
    valid: tuple[float, ...] = (0.7, 0.8, 0.75, 0.74),
    train: float | None = None,
    tta: int = 1,
) -> ModelResults:
    """One depth's results: test accuracy `accuracy` on n images, a history of len(valid)
    epochs whose validation accuracy is `valid` and training accuracy ends at `train`, its
    config averaging `tta` views."""
    epochs = np.arange(1, len(valid) + 1)
    history = pd.DataFrame(
        {
            "epoch": epochs,
            "train_acc": [*valid[:-1], valid[-1] if train is None else train],
            "valid_acc": valid,
            "seconds": seconds,
        }
    )
    evaluations = {s: constructed_evaluation(accuracy, n, blast_share, s) for s in SPLITS}
    config = TrainConfig(model=model, tta=tta)
    return ModelResults(model, Path(model), config, history, evaluations)


# The tiny recipe of the command-line training tests, and the history columns they compare.
TINY = ["--profile", "tiny", "--image-size", "32", "--train-limit", "32", "--device", "cpu"]
METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "valid_loss",
    "valid_acc",
    "test_loss",
    "test_acc",
    "lr",
]


def train_in_subprocess(
    data: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`lab3 train` of ResNet18 in a child process (which a fault hook may kill)."""
    command = [
        sys.executable,
        "-m",
        "lab3",
        "train",
        "--model",
        "resnet18",
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY,
        *extra,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600
    )


def tensors_equal(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def folder_snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root`, relative, with a file's SHA-256 ("dir" for a
    folder): equal snapshots mean nothing was added, removed or changed."""
    import hashlib

    def digest(path: Path) -> str:
        return "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()

    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*"))}
