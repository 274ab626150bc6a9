"""Layout detection and parsing on the real CSVs and file names, and the bad inputs users bring."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import write_course_dataset
from PIL import Image

from lab3.data.layouts import assign_splits, load_layout
from lab3.errors import UserError


def _course_subset(fixtures: Path, tmp: Path, n: int = 6, doubled: bool = False) -> Path:
    """The real course CSVs cut to their first `n` rows, with small images at those paths."""
    root = tmp / "course"
    root.mkdir()
    image_base = root / "new_dataset" if doubled else root
    rng = np.random.default_rng(0)
    for name in ("train.csv", "valid.csv", "resnet_18_test.csv"):
        frame = pd.read_csv(fixtures / "ta_csv" / name, dtype=str).head(n)
        frame.to_csv(root / name, index=False)
        for rel in frame["Path"]:
            path = image_base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
                path, format="BMP"
            )
    return root


def test_course_layout_on_real_csvs(fixtures: Path, tmp_path: Path) -> None:
    root = _course_subset(fixtures, tmp_path)
    layout = load_layout(root)
    assert layout.name == "course"
    table = layout.table
    assert list(table.columns) == ["path", "label", "split", "subject", "id"]
    assert (table["split"].value_counts() == 6).all()
    real_test = pd.read_csv(fixtures / "ta_csv" / "resnet_18_test.csv").head(6)["Path"].tolist()
    assert layout.split("test")["id"].tolist() == real_test  # order kept
    assert (layout.split("test")["label"] == -1).all()
    real_train = pd.read_csv(fixtures / "ta_csv" / "train.csv").head(6)
    assert layout.split("train")["label"].tolist() == real_train["label"].tolist()
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in table["path"])
    assert set(layout.test_csvs) == {"resnet18"}


def test_course_layout_finds_doubled_new_dataset(fixtures: Path, tmp_path: Path) -> None:
    root = _course_subset(fixtures, tmp_path, doubled=True)
    layout = load_layout(root)
    assert all("new_dataset/new_dataset/" in p for p in layout.table["path"])
    assert layout.split("train")["id"].iloc[0] == "./new_dataset/train/0.bmp"


def test_full_real_csvs_parse_without_images(fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    for name in ("train.csv", "valid.csv", "resnet_18_test.csv"):
        shutil.copy(fixtures / "ta_csv" / name, root)
    layout = load_layout(root, check_files=False)
    counts = layout.table["split"].value_counts().to_dict()
    assert counts == {"train": 7995, "valid": 1599, "test": 1067}
    share = (layout.split("train")["label"] == 1).mean()
    assert 0.6 < share < 0.75


def test_retinopathy_layout_keeps_first_line(fixtures: Path) -> None:
    layout = load_layout(fixtures / "retinopathy_csv", check_files=False)
    assert layout.name == "retinopathy" and layout.num_classes == 5
    first = (fixtures / "retinopathy_csv" / "train_img.csv").read_text().splitlines()[0]
    assert first in set(layout.table["id"])  # headerless: the first line is an image
    assert len(layout.table) == 28100 + 7026
    assert (layout.table["split"] == "test").sum() == 7026
    assert set(layout.table["label"]) == {0, 1, 2, 3, 4}
    assert (layout.table["split"] == "valid").sum() > 0


def test_cnmc_flat_folder_parses_subject_and_label(fixtures: Path) -> None:
    layout = load_layout(fixtures / "cnmc", valid_fraction=0.2, test_fraction=0.2)
    table = layout.table.set_index(layout.table["id"].str.removeprefix("./"))
    assert layout.name == "cnmc"
    assert table.loc["UID_H10_47_2_hem.bmp", "label"] == 0
    assert table.loc["UID_H10_47_2_hem.bmp", "subject"] == "H10"
    assert table.loc["UID_53_4_8_all.bmp", "label"] == 1
    assert table.loc["UID_h3_4_1_hem.bmp", "subject"] == "H3"  # h3 and H3 are one subject
    image = np.asarray(Image.open(layout.table["path"].iloc[0]))
    assert image.shape == (450, 450, 3)


def test_cnmc_fold_layout_subject_disjoint(fixtures: Path, tmp_path: Path) -> None:
    for i, path in enumerate(sorted((fixtures / "cnmc").glob("*.bmp"))):
        cls = "all" if path.name.endswith("_all.bmp") else "hem"
        dest = tmp_path / "C-NMC_training_data" / f"fold_{i % 3}" / cls / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    layout = load_layout(
        tmp_path, split_mode="subject", valid_fraction=0.2, test_fraction=0.2, seed=3
    )
    by_subject = layout.table.groupby("subject")["split"].nunique()
    assert (by_subject == 1).all()
    assert layout.table["id"].str.startswith("./C-NMC_training_data/fold_").all()


def test_split_modes_are_seeded_and_stratified() -> None:
    table = pd.DataFrame(
        {"label": [0] * 30 + [1] * 70, "subject": [f"s{i % 20}" for i in range(100)]}
    )
    a = assign_splits(table, "stratified", 0.2, 0.1, seed=1)
    b = assign_splits(table, "stratified", 0.2, 0.1, seed=1)
    c = assign_splits(table, "stratified", 0.2, 0.1, seed=2)
    assert (a == b).all() and not (a == c).all()
    frame = table.assign(split=a)
    assert frame.groupby("label")["split"].apply(lambda s: (s == "valid").sum()).tolist() == [6, 14]
    with pytest.raises(UserError, match="split mode"):
        assign_splits(table, "bogus", 0.2, 0.1, seed=1)


# --- bad input: each test writes its own course folder, so they run without ../shared -------


def _own_course(tmp: Path) -> Path:
    """Six rows per split written here (IDs 0-5 in order), small BMPs at those paths."""
    return write_course_dataset(tmp / "course", train=6, valid=6, test=6, size=24)


def test_missing_image_names_csv_and_line(tmp_path: Path) -> None:
    root = _own_course(tmp_path)
    (root / "new_dataset" / "valid" / "2.bmp").unlink()
    with pytest.raises(
        UserError, match=r"valid\.csv: line 4: image './new_dataset/valid/2\.bmp' not found"
    ):
        load_layout(root)


def test_wrong_header(tmp_path: Path) -> None:
    root = _own_course(tmp_path)
    text = (root / "train.csv").read_text().replace("Path,label", "path,class", 1)
    (root / "train.csv").write_text(text)
    with pytest.raises(
        UserError, match=r"train\.csv: header is 'path,class', expected 'Path,label'"
    ):
        load_layout(root)


def test_label_outside_classes(tmp_path: Path) -> None:
    root = _own_course(tmp_path)
    lines = (root / "train.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",7"
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"train\.csv: line 4: label '7' is not one of 0\.\.1"):
        load_layout(root)


def test_path_escaping_the_data_folder(tmp_path: Path) -> None:
    root = _own_course(tmp_path)
    (root / "valid.csv").write_text("Path,label\n../../etc/passwd,0\n")
    with pytest.raises(UserError, match="outside the data folder"):
        load_layout(root)


def test_empty_split(tmp_path: Path) -> None:
    root = _own_course(tmp_path)
    (root / "valid.csv").write_text("Path,label\n")
    with pytest.raises(UserError, match="valid split is empty"):
        load_layout(root)


def test_unknown_layout_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "pictures").mkdir()
    with pytest.raises(UserError) as err:
        load_layout(tmp_path)
    message = str(err.value)
    assert "train.csv" in message and "fold_" in message and "train_img.csv" in message
    assert "notes.txt" in message and "pictures/" in message


def test_missing_folder() -> None:
    with pytest.raises(UserError, match="no such data folder"):
        load_layout("/nonexistent/lab3-data")


def test_cnmc_is_found_inside_the_archives_wrapping(fixtures: Path, tmp_path: Path) -> None:
    """Catches a detection too narrow for C-NMC as unpacked: fold folders two levels down."""
    for path in sorted((fixtures / "cnmc").glob("*.bmp")):
        cls = "all" if path.name.endswith("_all.bmp") else "hem"
        dest = tmp_path / "C-NMC_Leukemia" / "training_data" / "fold_0" / cls / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    layout = load_layout(tmp_path, valid_fraction=0.2, test_fraction=0.2)
    assert layout.name == "cnmc" and len(layout.table) == 11


def test_stray_cnmc_names_deep_in_another_tree_are_no_dataset(tmp_path: Path) -> None:
    """Catches detection that crawls every subfolder: a leftover UID_*.bmp four levels down in
    a temporary folder was taken for C-NMC and the run failed later on the corrupt file."""
    stray = tmp_path / "pytest-of-u" / "pytest-3" / "test_cnmc0" / "fold_0" / "all"
    stray.mkdir(parents=True)
    (stray / "UID_1_1_1_all.bmp").write_bytes(b"corrupt")
    (tmp_path / "a" / "b" / "c" / "d").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "d" / "UID_2_1_1_hem.bmp").write_bytes(b"corrupt")
    with pytest.raises(UserError, match="no known dataset layout"):
        load_layout(tmp_path)


def test_an_unknown_folder_is_described_in_the_refusal(tmp_path: Path) -> None:
    """The refusal lists what the folder holds (folders with a slash, sorted, eight at most,
    then how many more), so a user sees at once that they pointed one level too high or low."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="found an empty folder$"):
        load_layout(empty)
    few = tmp_path / "few"
    (few / "images").mkdir(parents=True)
    (few / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"found images/, notes\.txt$"):
        load_layout(few)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(11):
        (many / f"f{i:02d}.txt").write_text("x")
    shown = ", ".join(f"f{i:02d}.txt" for i in range(8))
    with pytest.raises(UserError, match=f"found {shown} and 3 more$"):
        load_layout(many)
