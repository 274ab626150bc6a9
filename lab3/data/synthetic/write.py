"""Writing the synthetic dataset in the course layout: who is who, the images, the CSVs.

The folder is built beside `out` and renamed into place, so an interrupted run leaves nothing
half-written; the CSVs follow the course's (headers, path forms, three test orders).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from lab3.data.formats import METADATA_CSV, SPLIT_CSVS, SPLITS, TEST_CSVS, TRUTH_CSV
from lab3.data.layouts import DEFAULT_DATA
from lab3.data.synthetic.render import (
    BLAST_FRACTION,
    DEFAULT_SIZE,
    N_SUBJECTS,
    SubjectStyle,
    image_rng,
    make_subjects,
    render_cell,
)
from lab3.errors import UserError

DEFAULT_TRAIN = 1200
DEFAULT_VALID = 300
DEFAULT_TEST = 200
DEFAULT_OUT = Path(DEFAULT_DATA)
MIN_SIZE = 32  # smaller frames lose the cell's cues, and ResNet's five halvings leave nothing
TEST_CSV_NAMES = tuple(TEST_CSVS.values())


def assign_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Labels for one split: exactly round(68 %) blasts in random order, as in the course CSVs."""
    labels = np.zeros(n, dtype=np.int64)
    labels[: int(round(BLAST_FRACTION * n))] = 1
    return rng.permutation(labels)


def plan_dataset(
    train: int = DEFAULT_TRAIN,
    valid: int = DEFAULT_VALID,
    test: int = DEFAULT_TEST,
    seed: int = 0,
    n_subjects: int = N_SUBJECTS,
) -> pd.DataFrame:
    """Who is who, without rendering: path, label, split, subject, index per image.

    Subjects have unequal cell counts (Dirichlet weights) and appear in every split, like the
    course's per-image random split; `subject` allows a subject-disjoint split downstream.
    """
    subjects = make_subjects(seed, n_subjects)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x91A7]))
    pools = {}
    for label in (0, 1):
        names = [s.subject for s in subjects if s.label == label]
        pools[label] = (names, rng.dirichlet(np.full(len(names), 3.0)))
    frames = []
    for split, n in zip(SPLITS, (train, valid, test), strict=True):
        labels = assign_labels(rng, n)
        who = np.empty(n, dtype=object)
        for label in (0, 1):
            names, weights = pools[label]
            sel = labels == label
            who[sel] = rng.choice(names, size=int(sel.sum()), p=weights)
        frames.append(
            pd.DataFrame(
                {
                    "path": [f"./new_dataset/{split}/{i}.bmp" for i in range(n)],
                    "label": labels,
                    "split": split,
                    "subject": who.astype(str),
                    "index": np.arange(n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _render_task(task: tuple[int, str, int, int, SubjectStyle, int, str]) -> None:
    seed, split, index, label, style, size, dest = task
    img = render_cell(image_rng(seed, split, index), label, style, size)
    Image.fromarray(img).save(dest, format="BMP")


def holds_dataset(folder: Path) -> bool:
    """Whether `folder` holds a dataset in the course layout (what `synth` writes)."""
    return (folder / SPLIT_CSVS["train"]).is_file()


def _check_out(out: Path, force: bool = False) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError("exists and is not a folder; choose another --out folder", out)
    if holds_dataset(out):
        if not force:
            raise UserError(
                "already holds a dataset; pass --force to replace it or choose another --out", out
            )
        return
    if any(out.iterdir()):
        raise UserError(
            "already exists and is not empty; delete it or choose another --out folder", out
        )


def check_request(train: int, valid: int, test: int, size: int) -> None:
    """Refuse counts and sizes that would make a dataset nothing can train on, before writing."""
    for name, n in (("train", train), ("valid", valid), ("test", test)):
        if int(n) < 1:
            raise UserError(f"--{name} must be at least 1 image, not {n}")
    if int(size) < MIN_SIZE:
        raise UserError(f"--size must be at least {MIN_SIZE} pixels, not {size}")


def _run_tasks(tasks: list, workers: int, progress: bool) -> None:
    with tqdm(total=len(tasks), desc="synthetic images", unit="img", disable=not progress) as bar:
        if workers <= 1:
            for task in tasks:
                _render_task(task)
                bar.update()
            return
        # spawn, not fork: safe when the parent (a notebook) has torch and its threads loaded.
        with mp.get_context("spawn").Pool(workers) as pool:
            chunk = max(1, min(16, len(tasks) // (workers * 4)))
            for _ in pool.imap_unordered(_render_task, tasks, chunksize=chunk):
                bar.update()


def write_synthetic_dataset(
    out: Path,
    train: int = DEFAULT_TRAIN,
    valid: int = DEFAULT_VALID,
    test: int = DEFAULT_TEST,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> pd.DataFrame:
    """Generate the dataset in the course layout at `out`; return its metadata table.

    Everything is built in a hidden sibling folder and renamed into place at the end, so an
    interrupted run never leaves a half-written dataset at `out`. With `force`, a dataset
    already at `out` is replaced (only once the new one is complete); other files never are.
    """
    out = Path(out)
    check_request(train, valid, test, size)
    _check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = plan_dataset(train, valid, test, seed)
    styles = {s.subject: s for s in make_subjects(seed)}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for split in SPLITS:
            (tmp / "new_dataset" / split).mkdir(parents=True)
        tasks = [
            (seed, r.split, int(r.index), int(r.label), styles[r.subject], size, str(tmp / r.path))
            for r in plan.itertuples(index=False)
        ]
        _run_tasks(tasks, workers or os.cpu_count() or 1, progress)
        _write_csvs(tmp, plan, seed)
        _check_out(out, force)  # someone may have filled it meanwhile
        if out.exists() and holds_dataset(out):  # --force: swap the old dataset out, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return plan.drop(columns="index")


def test_orders(n: int, seed: int) -> list[np.ndarray]:
    """One seeded shuffle of the test rows per depth's CSV, as in the course.

    The course's `resnet_18_test.csv`, `resnet_50_test.csv` and `resnet_152_test.csv` list the
    same images in three different orders, so a submission that follows the wrong depth's CSV
    is misaligned; the synthetic set keeps that trap. The truth file follows the first order.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E57]))
    orders: list[np.ndarray] = []
    for _ in TEST_CSV_NAMES:
        order = rng.permutation(n)
        # Redraw a repeat (likely only for a handful of test images); n < 3 has too few orders.
        while n >= 3 and any(np.array_equal(order, o) for o in orders):
            order = rng.permutation(n)
        orders.append(order)
    return orders


def _write_csvs(root: Path, plan: pd.DataFrame, seed: int) -> None:
    """The course's CSVs (same headers, path forms, line endings), the truth, the metadata."""
    for split, name in SPLIT_CSVS.items():
        rows = plan[plan["split"] == split]
        rows[["path", "label"]].rename(columns={"path": "Path"}).to_csv(root / name, index=False)
    test = plan[plan["split"] == "test"]
    for name, order in zip(TEST_CSV_NAMES, test_orders(len(test), seed), strict=True):
        test.iloc[order][["path"]].rename(columns={"path": "Path"}).to_csv(root / name, index=False)
    truth = test.iloc[test_orders(len(test), seed)[0]]
    truth[["path", "label"]].rename(columns={"path": "ID"}).to_csv(root / TRUTH_CSV, index=False)
    plan[["path", "label", "split", "subject"]].to_csv(root / METADATA_CSV, index=False)
