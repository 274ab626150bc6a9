"""Layout detection and parsing on the real CSVs and file names, and the bad inputs users bring."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import copy_cnmc_cells, write_course_dataset
from PIL import Image

from lab3.data.formats import LEUKEMIA_CLASSES
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


# ------------------------------------------------------------------ what each refusal says, whole


def _tiny_course(root: Path) -> Path:
    return write_course_dataset(root, train=6, valid=4, test=5, size=8)


def _refusal(root: Path) -> str:
    with pytest.raises(UserError) as caught:
        load_layout(root)
    return str(caught.value)


def test_a_missing_or_empty_split_csv_is_named_with_its_folder(tmp_path: Path) -> None:
    root = _tiny_course(tmp_path / "data")
    (root / "valid.csv").write_text("Path,label\n")
    assert (
        _refusal(root) == f"{root / 'valid.csv'}: the valid split is empty; valid.csv has no rows"
    )
    (root / "valid.csv").unlink()
    assert _refusal(root) == (
        f"{root}: valid.csv is missing; the course layout needs train.csv and valid.csv"
    )


def test_an_unreadable_csv_names_itself_and_the_header_it_needs(tmp_path: Path) -> None:
    root = _tiny_course(tmp_path / "data")
    (root / "train.csv").write_bytes(b"\xff\xfe\x00bad")
    message = _refusal(root)
    assert message.startswith(f"{root / 'train.csv'}: cannot read CSV (")
    assert message.endswith("); expected header Path,label")


def test_bad_paths_and_labels_name_their_csv_line_and_fix(tmp_path: Path) -> None:
    root = _tiny_course(tmp_path / "data")
    truth = pd.read_csv(root / "test_labels.csv", dtype=str)
    truth.loc[1, "label"] = "x"
    truth.to_csv(root / "test_labels.csv", index=False)
    assert _refusal(root) == (
        f"{root / 'test_labels.csv'}: line 3: label 'x' is not one of 0..1; fix or remove that row"
    )
    for bad in ("2", "0.5", "-1"):
        truth.loc[1, "label"] = bad
        truth.to_csv(root / "test_labels.csv", index=False)
        assert f"line 3: label {bad!r} is not one of 0..1" in _refusal(root)
    (root / "test_labels.csv").unlink()
    test_csv = root / "resnet_18_test.csv"
    order = pd.read_csv(test_csv)
    missing = order["Path"][2]
    (root / missing).unlink()
    assert _refusal(root) == (
        f"{test_csv}: line 4: image {missing!r} not found (looked in {root}); restore the file "
        "or remove the row"
    )
    order.loc[2, "Path"] = "../outside.bmp"
    order.to_csv(test_csv, index=False)
    assert _refusal(root) == (
        f"{test_csv}: line 4: path '../outside.bmp' points outside the data folder {root}; "
        "paths must stay inside it"
    )


def test_test_labels_come_from_the_truth_csv(tmp_path: Path) -> None:
    root = _tiny_course(tmp_path / "data")
    truth = pd.read_csv(root / "test_labels.csv", dtype={"label": int})
    test = load_layout(root).split("test")
    assert test["label"].dtype == np.int64
    assert dict(zip(test["id"], test["label"], strict=True)) == dict(
        zip(truth["ID"], truth["label"], strict=True)
    )
    (root / "test_labels.csv").unlink()
    assert (load_layout(root).split("test")["label"] == -1).all()


def test_each_depth_reads_its_own_test_order(tmp_path: Path) -> None:
    root = _tiny_course(tmp_path / "data")
    layout = load_layout(root)
    for name, model in (("resnet_18_test.csv", "resnet18"), ("resnet_50_test.csv", "ResNet_50"),
                        ("resnet_152_test.csv", "resnet-152")):  # fmt: skip
        order = pd.read_csv(root / name)["Path"].tolist()
        rows = layout.split("test", model)
        assert rows["id"].tolist() == order and list(rows.index) == list(range(len(order)))
        assert list(rows.columns) == list(layout.table.columns)
    valid = layout.split("valid", "resnet18")  # only the test split has per-depth orders
    assert valid.equals(layout.split("valid")) and list(valid.index) == list(range(len(valid)))
    (root / "resnet_152_test.csv").unlink()
    layout = load_layout(root)
    with pytest.raises(UserError) as caught:
        layout.test_ids("resnet34")
    assert str(caught.value) == (
        f"{root}: no test CSV for resnet34 here (present: resnet18, resnet50); pass a depth "
        "that has one"
    )
    layout.test_csvs.clear()
    with pytest.raises(UserError, match=r"\(present: none\)"):
        layout.test_ids("resnet18")


def test_subjects_come_from_the_metadata_csv_where_it_has_them(tmp_path: Path) -> None:
    root = _tiny_course(tmp_path / "data")
    ids = pd.read_csv(root / "train.csv")["Path"].tolist()
    assert (load_layout(root).table["subject"] == "").all()  # no metadata.csv
    (root / "metadata.csv").write_text("path,subject\n" + "".join(
        f"{p},{('NA', '007')[i % 2]}\n" for i, p in enumerate(ids[:4])))  # fmt: skip
    table = load_layout(root).table.set_index("id")  # read as text: not NaN, not 7
    assert [table.loc[p, "subject"] for p in ids[:4]] == ["NA", "007", "NA", "007"]
    assert (table.drop(index=ids[:4])["subject"] == "").all()
    (root / "metadata.csv").write_text(f"path,subject\n{ids[0]},007\n{ids[1]},010\n")
    table = load_layout(root).table.set_index("id")  # all digits: still text
    assert [table.loc[p, "subject"] for p in ids[:2]] == ["007", "010"]
    (root / "metadata.csv").write_text("path,patient\n" + f"{ids[0]},7\n")
    assert (load_layout(root).table["subject"] == "").all()


def test_folders_at_the_describe_limit(tmp_path: Path) -> None:
    for count, tail in ((8, "f07.txt"), (9, "f07.txt and 1 more")):
        root = tmp_path / f"n{count}"
        root.mkdir()
        for i in range(count):
            (root / f"f{i:02d}.txt").write_text("x")
        assert _refusal(root).endswith(tail)


def test_subject_splits_weigh_subjects_by_their_images() -> None:
    """Catches a subject split that counts subjects instead of images: four subjects of ten
    cells and forty of one; a quarter of the 80 images in test must stay within one subject's
    size (10 images) of 20, for every seed."""
    subjects = [f"big{i}" for i in range(4) for _ in range(10)] + [f"s{i}" for i in range(40)]
    table = pd.DataFrame({"label": 1, "subject": subjects})
    for seed in range(150):
        splits = assign_splits(table, "subject", 0.25, 0.25, seed)
        for split in ("test", "valid"):
            assert abs(int((splits == split).sum()) - 20) <= 10, (seed, split)


# ------------------------------------------------------------------ the retinopathy layout


def _retinopathy(root: Path, folder: str, train: int = 20, test: int = 5) -> Path:
    images = root / folder if folder else root
    images.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("test", test)):
        names = [f"{prefix}{i}_left" for i in range(n)]
        (root / f"{prefix}_img.csv").write_text("\n".join(names) + "\n")
        (root / f"{prefix}_label.csv").write_text("\n".join(str(i % 5) for i in range(n)) + "\n")
        for name in names:
            Image.new("RGB", (8, 8)).save(images / f"{name}.jpeg", format="JPEG")
    return root


@pytest.mark.parametrize("folder", ["", "data", "images"])
def test_the_retinopathy_layout_finds_its_images_and_keeps_each_label(
    tmp_path: Path, folder: str
) -> None:
    root = _retinopathy(tmp_path / "retino", folder)
    layout = load_layout(root, valid_fraction=0.25, seed=1)
    assert layout.name == "retinopathy" and layout.root == root.resolve()
    assert layout.num_classes == 5
    table = layout.table
    assert list(table.index) == list(range(25))
    assert table["path"].tolist()[0] == str((root / folder / "train0_left.jpeg").resolve())
    assert (table["subject"] == "").all()
    expected = {f"{p}{i}_left": i % 5 for p, n in (("train", 20), ("test", 5)) for i in range(n)}
    assert dict(zip(table["id"], table["label"], strict=True)) == expected
    assert (table.loc[table["id"].str.startswith("test"), "split"] == "test").all()
    train = table[table["id"].str.startswith("train")]
    assert sorted(train["split"].value_counts().to_dict().items()) == [("train", 15), ("valid", 5)]
    assert train.groupby("label")["split"].apply(lambda s: (s == "valid").sum()).tolist() == [1] * 5
    again = load_layout(root, valid_fraction=0.25, seed=1).table
    other = [load_layout(root, valid_fraction=0.25, seed=s).table["split"] for s in (2, 3, 4)]
    assert again["split"].equals(table["split"])
    assert any(not o.equals(table["split"]) for o in other)


def test_retinopathy_refusals_name_the_file(tmp_path: Path) -> None:
    root = _retinopathy(tmp_path / "retino", "images")
    (root / "test_label.csv").write_text("1\n2\n")
    assert _refusal(root) == (
        f"{root / 'test_label.csv'}: 2 labels for 5 images in test_img.csv; the two files must "
        "have one line per image"
    )
    (root / "test_label.csv").write_text("0\n1\n2\n3\n5\n")
    assert _refusal(root) == (  # headerless: the fifth value is on line 5
        f"{root / 'test_label.csv'}: line 5: label '5' is not one of 0..4; fix or remove that row"
    )
    (root / "test_label.csv").write_text("0\n1\n2\n3\n4\n")
    (root / "images" / "test2_left.jpeg").unlink()
    assert _refusal(root).startswith(f"{root / 'test_img.csv'}: line 3: image 'test2_left.jpeg'")
    (root / "test_img.csv").unlink()
    assert _refusal(root) == f"{root}: test_img.csv is missing; the retinopathy layout needs it"


def test_the_folder_and_split_refusals_are_whole(fixtures: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert _refusal(missing) == (
        f"{missing}: no such data folder; pass --data DIR pointing at the dataset"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _refusal(empty) == (
        f"{empty}: no known dataset layout: looked for the course's train.csv/valid.csv/"
        "resnet_*_test.csv, C-NMC fold_*/all|hem/UID_*.bmp images, and the retinopathy "
        "train_img.csv; found an empty folder"
    )
    with pytest.raises(UserError) as caught:
        assign_splits(pd.DataFrame({"label": [0]}), "patient", 0.1, 0.1, 0)
    assert str(caught.value) == (
        "unknown split mode 'patient'; choose one of random, stratified, subject"
    )
    cnmc = copy_cnmc_cells(fixtures / "cnmc", tmp_path / "cnmc")
    with pytest.raises(UserError) as caught:
        load_layout(cnmc, valid_fraction=0.0)
    assert str(caught.value) == (
        f"{cnmc}: the valid split is empty; the dataset needs images in it"
    )


def test_cnmc_defaults_and_seed(fixtures: Path, tmp_path: Path) -> None:
    """Catches changed defaults (stratified, 15 % valid, 10 % test, seed 0) or a seed that
    does not reach the split."""
    cnmc = copy_cnmc_cells(fixtures / "cnmc", tmp_path / "cnmc", copies=3)
    layout = load_layout(cnmc)
    assert layout.root == cnmc.resolve() and layout.class_names == LEUKEMIA_CLASSES
    explicit = load_layout(
        cnmc, split_mode="stratified", valid_fraction=0.15, test_fraction=0.10, seed=0
    )
    assert layout.table.equals(explicit.table)
    seeds = [load_layout(cnmc, seed=s).table["split"] for s in (1, 2, 3)]
    assert any(not split.equals(layout.table["split"]) for split in seeds)
