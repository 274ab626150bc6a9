"""Property-based tests (hypothesis): the invariants of layouts, submissions, split modes and the
loader's shards, on random inputs in the course's formats (../shared/fixtures when present).

Example counts come from the hypothesis profile (tests/conftest.py): small by default.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lab3.cli import main
from lab3.data.layouts import SPLIT_MODES, assign_splits, load_layout
from lab3.data.loader import DeviceLoader, shard
from lab3.errors import UserError
from lab3.submission import build_submission, read_labelled_csv, score, write_submission

# File names as users have them: digits as in the course, and names with spaces, accents, CJK.
NAME = st.one_of(
    st.integers(0, 99_999).map(str),
    st.text(
        alphabet=st.sampled_from("abcXYZ019_-. éüßçøåñ中文кириллица"),
        min_size=1,
        max_size=12,
    ).filter(lambda s: s.strip(" .") == s and s not in ("", ".", "..")),
)


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is one per test, not per example)."""
    with tempfile.TemporaryDirectory(prefix="lab3-prop-") as tmp:
        yield Path(tmp)


def _real_rows(fixtures: Path, name: str, n: int) -> pd.DataFrame:
    """n rows of the real course CSV `name` (the fixtures, or their stand-ins)."""
    return pd.read_csv(fixtures / "ta_csv" / name, dtype=str, nrows=n)


@st.composite
def course_folders(draw: st.DrawFn) -> dict:
    """A course-layout dataset: train/valid with labels, three test CSVs in their own orders."""
    names = draw(st.lists(NAME, min_size=3, max_size=14, unique=True))
    cut = sorted(draw(st.lists(st.integers(1, len(names) - 1), min_size=2, max_size=2)))
    assume(0 < cut[0] < cut[1] < len(names))
    splits = {
        "train": names[: cut[0]],
        "valid": names[cut[0] : cut[1]],
        "test": names[cut[1] :],
    }
    labels = {
        split: draw(st.lists(st.integers(0, 1), min_size=len(ids), max_size=len(ids)))
        for split, ids in splits.items()
    }
    orders = [draw(st.permutations(range(len(splits["test"])))) for _ in range(3)]
    return {
        "splits": splits,
        "labels": labels,
        "orders": orders,
        "doubled": draw(st.booleans()),
        "shuffle": draw(st.permutations(range(len(splits["train"])))),
    }


def _write_course(root: Path, spec: dict) -> dict[str, int]:
    """Write `spec` (images as empty files: parsing never decodes them); return id -> label."""
    base = root / "new_dataset" if spec["doubled"] else root
    truth = {}
    for split, names in spec["splits"].items():
        ids = [f"./new_dataset/{split}/{name}.bmp" for name in names]
        for rel, label in zip(ids, spec["labels"][split], strict=True):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).touch()
            truth[rel] = label
        if split == "train":
            ids = [ids[i] for i in spec["shuffle"]]  # rows in any order
        if split != "test":
            frame = pd.DataFrame({"Path": ids, "label": [truth[i] for i in ids]})
            frame.to_csv(root / f"{split}.csv", index=False)
        else:
            for depth, order in zip((18, 50, 152), spec["orders"], strict=True):
                frame = pd.DataFrame({"Path": [ids[i] for i in order]})
                frame.to_csv(root / f"resnet_{depth}_test.csv", index=False)
    return truth


@given(spec=course_folders())
def test_course_csvs_parse_and_each_row_keeps_its_label(spec: dict) -> None:
    with _folder() as root:
        truth = _write_course(root, spec)
        layout = load_layout(root)
        table = layout.table
        assert layout.name == "course"
        assert len(table) == len(truth) and table["id"].is_unique
        for row in table.itertuples():
            expected_split = row.id.split("/")[2]
            assert row.split == expected_split
            assert Path(row.path).is_file(), "resolved, doubled folder or not"
            if row.split == "test":
                assert row.label == -1, "the course's test CSVs carry no labels"
            else:
                assert row.label == truth[row.id], row.id
        for depth, order in zip(("resnet18", "resnet50", "resnet152"), spec["orders"], strict=True):
            names = spec["splits"]["test"]
            assert layout.test_ids(depth) == [f"./new_dataset/test/{names[i]}.bmp" for i in order]


def test_the_real_course_csvs_keep_each_rows_label(fixtures: Path) -> None:
    """The fixtures' own rows (the first 300 of train.csv), as the course ships them."""
    rows = _real_rows(fixtures, "train.csv", 300)
    with _folder() as root:
        rows.to_csv(root / "train.csv", index=False)
        _real_rows(fixtures, "valid.csv", 20).to_csv(root / "valid.csv", index=False)
        layout = load_layout(root, check_files=False)
        train = layout.split("train")
        assert train["id"].tolist() == rows["Path"].tolist()
        assert train["label"].tolist() == rows["label"].astype(int).tolist()


# The ways a course CSV goes wrong: (what breaks it, the text the line must contain)
BREAKAGES = {
    "extra column": (lambda f: f.assign(extra="x"), "expected 'Path,label'"),
    "missing column": (lambda f: f[["Path"]], "expected 'Path,label'"),
    "renamed column": (lambda f: f.rename(columns={"label": "Label"}), "expected 'Path,label'"),
    "label 2": (lambda f: f.assign(label=[*f["label"][:-1], "2"]), "is not one of 0..1"),
    "label text": (lambda f: f.assign(label=[*f["label"][:-1], "blast"]), "is not one of 0..1"),
    "label -1": (lambda f: f.assign(label=[*f["label"][:-1], "-1"]), "is not one of 0..1"),
    "label 0.5": (lambda f: f.assign(label=[*f["label"][:-1], "0.5"]), "is not one of 0..1"),
    "missing image": (
        lambda f: f.assign(Path=[*f["Path"][:-1], "./new_dataset/train/nowhere.bmp"]),
        "not found",
    ),
    "escaping path": (
        lambda f: f.assign(Path=[*f["Path"][:-1], "../../etc/passwd"]),
        "outside the data folder",
    ),
}


@given(spec=course_folders(), breakage=st.sampled_from(sorted(BREAKAGES)),
       csv=st.sampled_from(["train.csv", "valid.csv"]))  # fmt: skip
def test_a_broken_course_csv_is_one_line_naming_the_file(
    spec: dict, breakage: str, csv: str
) -> None:
    break_it, expected = BREAKAGES[breakage]
    with _folder() as root:
        data = root / "data"
        data.mkdir()
        _write_course(data, spec)
        frame = pd.read_csv(data / csv, dtype=str, keep_default_na=False)
        break_it(frame).to_csv(data / csv, index=False)
        before = sorted(p.relative_to(root) for p in root.rglob("*"))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["train", "--model", "resnet18", "--data", str(data), "--out",
                         str(root / "run"), "--profile", "tiny", "--device", "cpu"])  # fmt: skip
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and len(lines) == 1, err.getvalue()
        assert csv in lines[0] and expected in lines[0], lines[0]
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == before, "nothing written"


# ---------------------------------------------------------------------------------------------
# submissions


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn on one-class truths: expected here
@given(
    ids=st.lists(NAME, min_size=1, max_size=30, unique=True),
    data=st.data(),
)
def test_submission_round_trip_follows_any_order(ids: list[str], data: st.DataObject) -> None:
    ids = [f"./new_dataset/test/{name}.bmp" for name in ids]
    labels = data.draw(st.lists(st.integers(0, 1), min_size=len(ids), max_size=len(ids)))
    predictions = dict(zip(ids, labels, strict=True))
    order = data.draw(st.permutations(ids))
    frame = build_submission(order, predictions, num_classes=2)
    assert frame["ID"].tolist() == list(order), "the test CSV's order"
    assert [predictions[i] for i in frame["ID"]] == frame["label"].tolist(), "each ID its own"
    with _folder() as root:
        path = write_submission(frame, root / "s.csv")
        back = read_labelled_csv(path)
        assert (
            back["ID"].tolist() == list(order) and back["label"].tolist() == frame["label"].tolist()
        )
        truth = pd.DataFrame({"ID": ids, "label": [1 - x for x in labels]})
        truth.to_csv(root / "truth.csv", index=False)
        assert score(path, root / "truth.csv")["accuracy"] == 0.0, "matched by ID, not by row"
        truth.assign(label=labels).to_csv(root / "truth.csv", index=False)
        assert score(path, root / "truth.csv")["accuracy"] == 1.0
    if len(ids) > 1 and list(order) != ids:
        with pytest.raises(UserError, match="IDs differ"):
            from lab3.submission import validate_submission

            validate_submission(frame, ids, 2)
    missing = dict(list(predictions.items())[1:])
    with pytest.raises(UserError, match="have no prediction"):
        build_submission(order, missing, 2)


# ---------------------------------------------------------------------------------------------
# split modes


@st.composite
def cnmc_tables(draw: st.DrawFn) -> pd.DataFrame:
    """C-NMC-like images: subjects named as C-NMC's (H/h prefix: normal), one class each."""
    numbers = draw(st.lists(st.integers(1, 80), min_size=2, max_size=12, unique=True))
    normal = draw(st.lists(st.booleans(), min_size=len(numbers), max_size=len(numbers)))
    assume(any(normal) and not all(normal))
    rows = []
    for number, is_normal in zip(numbers, normal, strict=True):
        subject = f"H{number}" if is_normal else str(number)
        for _ in range(draw(st.integers(1, 25))):
            rows.append((subject, 0 if is_normal else 1))
    return pd.DataFrame(rows, columns=["subject", "label"])


@given(
    table=cnmc_tables(),
    mode=st.sampled_from(SPLIT_MODES),
    valid=st.sampled_from([0.0, 0.1, 0.15, 0.3]),
    test=st.sampled_from([0.0, 0.1, 0.2]),
    seed=st.integers(0, 2**16),
)
def test_split_modes_put_each_image_in_one_split(
    table: pd.DataFrame, mode: str, valid: float, test: float, seed: int
) -> None:
    splits = assign_splits(table, mode, valid, test, seed)
    assert len(splits) == len(table) and set(splits) <= {"train", "valid", "test"}
    again = assign_splits(table, mode, valid, test, seed)
    assert list(again) == list(splits), "the same seed gives the same split"

    def within(groups: list[pd.Series], slack: float) -> None:
        for split, fraction in (("test", test), ("valid", valid)):
            for group in groups:
                count = int((group == split).sum())
                assert abs(count - fraction * len(group)) <= slack, (split, count, len(group))

    frame = table.assign(split=splits)
    if mode == "subject":
        per_subject = frame.groupby("subject")["split"].nunique()
        assert (per_subject == 1).all(), "no subject on two sides"
        for _, group in frame.groupby("label"):
            largest = group["subject"].value_counts().max()
            within([group["split"]], largest)  # within one subject's size
    elif mode == "stratified":
        within([group["split"] for _, group in frame.groupby("label")], 1)
    else:
        within([frame["split"]], 1)


# ---------------------------------------------------------------------------------------------
# the loader's shards


def _loader(n: int, rank: int, world: int, train: bool, balanced: bool, seed: int):
    images = np.zeros((n + 3, 2, 2, 3), dtype=np.uint8)
    labels = np.arange(n + 3) % 3 == 0  # some rows of the cache are not served at all
    return DeviceLoader(
        images,
        labels.astype(np.int64),
        np.arange(3, n + 3),
        batch_size=4,
        device="cpu",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        shuffle=train,
        balanced=balanced,
        drop_last=train,
        seed=seed,
        rank=rank,
        world_size=world,
    )


@given(
    n=st.integers(1, 60),
    world=st.integers(1, 8),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 50),
)
def test_training_shards_are_disjoint_equal_and_complete(
    n: int, world: int, seed: int, epoch: int
) -> None:
    served = set(range(3, n + 3))
    shards = []
    for rank in range(world):
        loader = _loader(n, rank, world, train=True, balanced=False, seed=seed)
        loader.set_epoch(epoch)
        shards.append(loader.epoch_order().tolist())
    sizes = {len(s) for s in shards}
    assert sizes == {n // world}, "equal: every rank runs the same number of steps"
    everything = [row for s in shards for row in s]
    assert len(set(everything)) == len(everything), "disjoint"
    assert set(everything) <= served
    assert len(everything) == n - n % world, "complete: fewer than world_size images wait"
    lengths = {len(_loader(n, r, world, True, False, seed)) for r in range(world)}
    assert len(lengths) == 1

    # evaluation: every row exactly once over all ranks, shards differing by at most one row
    evaluation = [_loader(n, r, world, False, False, seed).epoch_order().tolist()
                  for r in range(world)]  # fmt: skip
    flat = sorted(row for s in evaluation for row in s)
    assert flat == sorted(served)
    assert max(map(len, evaluation)) - min(map(len, evaluation)) <= 1

    # the balanced sampler's shards: equal in size too (rows may repeat: it draws with replacement)
    balanced = [_loader(n, r, world, True, True, seed) for r in range(world)]
    assert {len(b.epoch_order()) for b in balanced} == {n // world}


@given(n=st.integers(0, 100), world=st.integers(1, 8))
def test_shard_is_a_partition(n: int, world: int) -> None:
    rows = np.arange(100, 100 + n)
    loose = [shard(rows, r, world, equal=False) for r in range(world)]
    assert sorted(np.concatenate(loose).tolist()) == rows.tolist()
    equal = [shard(rows, r, world, equal=True) for r in range(world)]
    assert {len(s) for s in equal} == {n // world}
    assert sorted(np.concatenate(equal).tolist()) == rows[: n - n % world].tolist()
