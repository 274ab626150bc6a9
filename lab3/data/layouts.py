"""Find and parse a dataset folder into one table: path, label, split, subject, id.

Three layouts are recognised, in this order:

* ``course``: the lab's Kaggle data (``train.csv``/``valid.csv`` with ``Path,label``, the
  ``resnet_<depth>_test.csv`` files with ``Path``), images under ``new_dataset/`` or the doubled
  ``new_dataset/new_dataset/`` that unzipping often leaves behind;
* ``cnmc``: C-NMC 2019 as distributed
  (``fold_*/all|hem/UID_<subject>_<image>_<cell>_<all|hem>.bmp``, the folds up to two folders
  down), or a flat folder of such files, split here by image, stratified, or by subject;
* ``retinopathy``: the earlier edition's headerless one-column CSVs and ``<name>.jpeg`` images.

Everything downstream (Dataset, cache, training, submissions) works from the table alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lab3.data.formats import (
    COLUMNS,
    LEUKEMIA_CLASSES,
    METADATA_CSV,
    RETINOPATHY_CLASSES,
    RETINOPATHY_TRAIN_CSV,
    SPLIT_CSVS,
    TEST_CSVS,
    TRUTH_CSV,
)
from lab3.errors import UserError

CNMC_NAME = re.compile(
    r"^UID_(?P<subject>[A-Za-z]?\d+)_(?P<image>\d+)_(?P<cell>\d+)_(?P<cls>all|hem)\.bmp$"
)
# How a layout without a split of its own (C-NMC's folds) is split; the config, the command line
# and the workbook read these.
SPLIT_MODES = ("random", "stratified", "subject")
DEFAULT_SPLIT_MODE = "stratified"  # per image within each class, as the course split its data
# The dataset folder read where none is named: the synthetic default, which `lab3 synth` writes.
DEFAULT_DATA = "data/synthetic"


@dataclass
class Layout:
    """A parsed dataset folder."""

    name: str
    root: Path
    table: pd.DataFrame
    class_names: tuple[str, ...]
    test_csvs: dict[str, Path] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, split: str, model: str | None = None) -> pd.DataFrame:
        """The rows of one split. For `test` with a `model` (e.g. "resnet50"), in the order of
        that depth's test CSV: the course's three test CSVs list the same images in three
        different orders, and a submission follows its own depth's."""
        rows = self.table[self.table["split"] == split]
        if split == "test" and model is not None:
            rows = rows.set_index("id").loc[self.test_ids(model)].reset_index()[COLUMNS]
        return rows.reset_index(drop=True)

    def test_ids(self, model: str) -> list[str]:
        """The IDs of `model`'s test CSV, in its order."""
        key = model.lower().replace("_", "").replace("-", "")
        if key not in self.test_csvs:
            present = ", ".join(self.test_csvs) or "none"
            raise UserError(
                f"no test CSV for {model} here (present: {present}); pass a depth that has one",
                self.root,
            )
        return read_csv(self.test_csvs[key], ["Path"])["Path"].tolist()

    @property
    def has_test_labels(self) -> bool:
        test = self.split("test")
        return len(test) > 0 and bool((test["label"] >= 0).all())


def load_layout(
    root: str | Path,
    *,
    split_mode: str = DEFAULT_SPLIT_MODE,
    valid_fraction: float = 0.15,
    test_fraction: float = 0.10,
    seed: int = 0,
    check_files: bool = True,
) -> Layout:
    """Detect the layout of `root` and parse it; the split options apply where the data has none."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError("no such data folder; pass --data DIR pointing at the dataset", root)
    root = root.resolve()
    if (root / SPLIT_CSVS["train"]).is_file() or any(
        (root / n).is_file() for n in TEST_CSVS.values()
    ):
        layout = _course_layout(root, check_files)
    elif (root / RETINOPATHY_TRAIN_CSV).is_file():
        layout = _retinopathy_layout(root, valid_fraction, seed, check_files)
    else:
        files = _cnmc_files(root)
        if not files:
            raise UserError(
                "no known dataset layout: looked for the course's train.csv/valid.csv/"
                "resnet_*_test.csv, C-NMC fold_*/all|hem/UID_*.bmp images, and the retinopathy "
                f"train_img.csv; found {_describe(root)}",
                root,
            )
        layout = _cnmc_layout(root, files, split_mode, valid_fraction, test_fraction, seed)
    for split in ("train", "valid"):
        if (layout.table["split"] == split).sum() == 0:
            raise UserError(f"the {split} split is empty; the dataset needs images in it", root)
    return layout


def _describe(root: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    if not names:
        return "an empty folder"
    shown = ", ".join(names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


# --- course (Kaggle) layout -------------------------------------------------------------------


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV as strings, its header checked: a bad one is a UserError naming the file."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(
            f"cannot read CSV ({err}); expected header {','.join(columns)}", path
        ) from None
    if list(frame.columns) != columns:
        raise UserError(
            f"header is {','.join(map(str, frame.columns))!r}, expected {','.join(columns)!r}", path
        )
    return frame


def _parse_labels(
    values: pd.Series, csv: Path, num_classes: int, first_line: int = 2
) -> np.ndarray:
    """Integer labels 0..num_classes-1, or one line naming the first bad one by its line in
    `csv` (`first_line`: the line of the first value, 2 under a header, 1 in a headerless file)."""
    labels = pd.to_numeric(values.str.strip(), errors="coerce")
    bad = labels.isna() | (labels % 1 != 0) | (labels < 0) | (labels >= num_classes)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"line {row + first_line}: label {values.iloc[row]!r} is not one of "
            f"0..{num_classes - 1}; fix or remove that row",
            csv,
        )
    return labels.to_numpy(dtype=np.int64)


def _image_base(root: Path, rel_paths: list[str]) -> Path:
    """The folder the CSV paths are relative to: the CSV's own, or one level into a doubled zip."""
    candidates = [root, root / "new_dataset"]
    sample = rel_paths[:: max(1, len(rel_paths) // 50)][:50]
    scores = [sum((base / p).is_file() for p in sample) for base in candidates]
    return candidates[int(np.argmax(scores))]


def _resolve(base: Path, root: Path, rel: str, csv: Path, line: int, check: bool) -> str:
    full = Path(os.path.normpath(base / rel))
    if not full.is_relative_to(root):
        raise UserError(
            f"line {line}: path {rel!r} points outside the data folder {root}; "
            "paths must stay inside it",
            csv,
        )
    if check and not full.is_file():
        raise UserError(
            f"line {line}: image {rel!r} not found (looked in {base}); restore the file or "
            "remove the row",
            csv,
        )
    return str(full)


def _course_layout(root: Path, check_files: bool) -> Layout:
    frames = []
    for split, name in SPLIT_CSVS.items():
        csv = root / name
        if not csv.is_file():
            raise UserError(
                f"{name} is missing; the course layout needs train.csv and valid.csv", root
            )
        frame = read_csv(csv, ["Path", "label"])
        if frame.empty:
            raise UserError(f"the {split} split is empty; {name} has no rows", csv)
        frames.append((split, csv, frame["Path"].tolist(), _parse_labels(frame["label"], csv, 2)))

    test_csvs = {m: root / n for m, n in TEST_CSVS.items() if (root / n).is_file()}
    test_paths: list[str] = []
    test_source: dict[str, tuple[Path, int]] = {}
    for csv in test_csvs.values():
        frame = read_csv(csv, ["Path"])
        for i, p in enumerate(frame["Path"]):
            if p not in test_source:
                test_source[p] = (csv, i + 2)
                test_paths.append(p)
    truth = _read_truth(root / TRUTH_CSV) if (root / TRUTH_CSV).is_file() else {}
    test_labels = np.array([truth.get(p, -1) for p in test_paths], dtype=np.int64)

    all_rel = [p for _, _, paths, _ in frames for p in paths] + test_paths
    base = _image_base(root, all_rel)
    rows = []
    for split, csv, paths, labels in frames:
        for i, (rel, label) in enumerate(zip(paths, labels, strict=True)):
            rows.append(
                (_resolve(base, root, rel, csv, i + 2, check_files), int(label), split, rel)
            )
    for rel, label in zip(test_paths, test_labels, strict=True):
        csv, line = test_source[rel]
        rows.append((_resolve(base, root, rel, csv, line, check_files), int(label), "test", rel))
    table = pd.DataFrame(rows, columns=["path", "label", "split", "id"])
    table["subject"] = _subjects(root / METADATA_CSV, table["id"])
    return Layout("course", root, table[COLUMNS], LEUKEMIA_CLASSES, test_csvs)


def _subjects(metadata: Path, ids: pd.Series) -> pd.Series:
    """Subject per image where a `metadata.csv` (path,...,subject) says so (the synthetic set's)."""
    if not metadata.is_file():
        return pd.Series("", index=ids.index)
    frame = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    if not {"path", "subject"} <= set(frame.columns):
        return pd.Series("", index=ids.index)
    return ids.map(dict(zip(frame["path"], frame["subject"], strict=True))).fillna("")


def _read_truth(csv: Path) -> dict[str, int]:
    frame = read_csv(csv, ["ID", "label"])
    return dict(zip(frame["ID"], _parse_labels(frame["label"], csv, 2).tolist(), strict=True))


# --- C-NMC 2019 --------------------------------------------------------------------------------


# Where C-NMC puts its images, relative to the folder a user points at: a flat folder, the
# distributed fold_*/all|hem/, and that with the one or two folders the archive wraps it in
# (C-NMC_Leukemia/training_data/fold_0/all/). Only these are looked at: crawling every subfolder
# would take a stray UID_*.bmp deep in an unrelated tree (a temporary folder) for a dataset.
CNMC_GLOBS = (
    "UID_*.bmp",
    *(f"{wrap}fold_*/{cls}/UID_*.bmp" for wrap in ("", "*/", "*/*/") for cls in ("all", "hem")),
)


def _cnmc_files(root: Path) -> list[Path]:
    found = {p for pattern in CNMC_GLOBS for p in root.glob(pattern)}
    return sorted(p for p in found if CNMC_NAME.match(p.name))


def _cnmc_layout(
    root: Path,
    files: list[Path],
    split_mode: str,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
) -> Layout:
    rows = []
    for path in files:
        match = CNMC_NAME.match(path.name)
        assert match is not None
        subject = match["subject"].upper()
        label = 1 if match["cls"] == "all" else 0
        rows.append((str(path), label, subject, "./" + path.relative_to(root).as_posix()))
    table = pd.DataFrame(rows, columns=["path", "label", "subject", "id"])
    table["split"] = assign_splits(table, split_mode, valid_fraction, test_fraction, seed)
    return Layout("cnmc", root, table[COLUMNS], LEUKEMIA_CLASSES)


def assign_splits(
    table: pd.DataFrame, mode: str, valid_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Seeded train/valid/test assignment: per image, per image within each class, or per subject.

    `subject` keeps every subject's cells in one split, so no patient is seen in training and
    scored in testing (the course's per-image split lets that happen, which flatters accuracy).
    """
    if mode not in SPLIT_MODES:
        raise UserError(f"unknown split mode {mode!r}; choose one of {', '.join(SPLIT_MODES)}")
    rng = np.random.default_rng(seed)
    splits = np.full(len(table), "train", dtype=object)

    def carve(members: np.ndarray, weights: np.ndarray | None = None) -> dict[int, str]:
        order = rng.permutation(len(members))
        sizes = np.ones(len(members)) if weights is None else weights[order]
        cum = np.cumsum(sizes) / sizes.sum()
        out = {}
        for rank, idx in enumerate(order):
            before = cum[rank] - sizes[rank] / sizes.sum()
            if before + 1e-9 < test_fraction:
                out[int(idx)] = "test"
            elif before + 1e-9 < test_fraction + valid_fraction:
                out[int(idx)] = "valid"
            else:
                out[int(idx)] = "train"
        return out

    if mode == "random":
        for i, s in carve(np.arange(len(table))).items():
            splits[i] = s
    elif mode == "stratified":
        for _, group in table.groupby("label"):
            rows = group.index.to_numpy()
            for i, s in carve(rows).items():
                splits[rows[i]] = s
    else:
        for _, group in table.groupby("label"):
            counts = group["subject"].value_counts()
            subjects = counts.index.to_numpy()
            chosen = carve(subjects, counts.to_numpy(dtype=float))
            for i, s in chosen.items():
                splits[(table["subject"] == subjects[i]).to_numpy()] = s
    return splits


# --- diabetic retinopathy (the earlier edition) -------------------------------------------------


def _read_column(csv: Path) -> list[str]:
    if not csv.is_file():
        raise UserError(f"{csv.name} is missing; the retinopathy layout needs it", csv.parent)
    # Headerless: every line is data, the first included.
    return [line.strip() for line in csv.read_text().splitlines() if line.strip()]


def _retinopathy_layout(root: Path, valid_fraction: float, seed: int, check: bool) -> Layout:
    image_dir = next(
        (d for d in (root, root / "data", root / "images") if d.is_dir() and any(d.glob("*.jpeg"))),
        root,
    )
    rows = []
    for split, prefix in (("train", "train"), ("test", "test")):
        names = _read_column(root / f"{prefix}_img.csv")
        label_csv = root / f"{prefix}_label.csv"
        labels = _parse_labels(pd.Series(_read_column(label_csv)), label_csv, 5, first_line=1)
        if len(names) != len(labels):
            raise UserError(
                f"{len(labels)} labels for {len(names)} images in {prefix}_img.csv; "
                "the two files must have one line per image",
                label_csv,
            )
        for i, (name, label) in enumerate(zip(names, labels, strict=True)):
            rel = f"{name}.jpeg"
            path = _resolve(image_dir, root, rel, root / f"{prefix}_img.csv", i + 1, check)
            rows.append((path, int(label), split, "", name))
    table = pd.DataFrame(rows, columns=COLUMNS)
    train = table.index[table["split"] == "train"]
    sub = table.loc[train].reset_index(drop=True)
    carved = assign_splits(sub, "stratified", valid_fraction, 0.0, seed)
    table.loc[train, "split"] = carved
    return Layout("retinopathy", root, table, RETINOPATHY_CLASSES)
