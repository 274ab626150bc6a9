"""The synthetic default dataset: the course's exact layout, real-looking pixels, atomic writes."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lab3.data import synthetic
from lab3.data.formats import SPLITS
from lab3.data.synthetic import (
    REAL_BLACK_FRACTION_RANGE,
    REAL_CELL_RGB_RANGE,
    REAL_MEAN_PIXEL_RANGE,
    TEST_CSV_NAMES,
    write_synthetic_dataset,
)
from lab3.errors import UserError

PATH_FORM = re.compile(r"^\./new_dataset/(train|valid|test)/(\d+)\.bmp$")
COUNTS = {"train": 12, "valid": 4, "test": 8}


def _write(out: Path, seed: int = 3, workers: int = 1) -> pd.DataFrame:
    return write_synthetic_dataset(out, **COUNTS, seed=seed, workers=workers, progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    return out, _write(out)


def _first_line(path: Path) -> bytes:
    return path.read_bytes().split(b"\n", 1)[0]


def _stats(img: np.ndarray) -> tuple[float, float]:
    return float(img.mean()), float((img.max(axis=2) == 0).mean())


def test_csvs_match_the_course_files(dataset: tuple[Path, pd.DataFrame], fixtures: Path) -> None:
    out, _ = dataset
    real = fixtures / "ta_csv"
    for name, real_name in [
        ("train.csv", "train.csv"),
        ("valid.csv", "valid.csv"),
        *[(n, "resnet_18_test.csv") for n in TEST_CSV_NAMES],
        ("test_labels.csv", "example_submission.csv"),
    ]:
        assert _first_line(out / name) == _first_line(real / real_name), name
        assert b"\r" not in (out / name).read_bytes(), f"{name}: LF line endings like the course"
    real_path = pd.read_csv(real / "train.csv")["Path"].iloc[0]
    assert PATH_FORM.match(real_path), "the fixture's path form changed"
    for split in ("train", "valid"):
        frame = pd.read_csv(out / f"{split}.csv")
        assert list(frame.columns) == ["Path", "label"]
        assert frame["Path"].tolist() == [
            f"./new_dataset/{split}/{i}.bmp" for i in range(len(frame))
        ]
        assert set(frame["label"]) == {0, 1}
    assert len(pd.read_csv(out / "train.csv")) == COUNTS["train"]


def test_images_are_24_bit_bmp_like_the_real_ones(
    dataset: tuple[Path, pd.DataFrame], fixtures: Path
) -> None:
    out, meta = dataset
    real_size = next((fixtures / "cnmc").glob("*.bmp")).stat().st_size
    for rel in meta["path"]:
        path = out / rel
        assert path.is_file(), rel
        header = path.read_bytes()[:54]
        assert header[:2] == b"BM"
        width, height, _, bit_count = struct.unpack("<iiHH", header[18:30])
        assert (width, height, bit_count) == (450, 450, 24)
        assert path.stat().st_size == real_size
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("BMP", "RGB", (450, 450))
    on_disk = {p.relative_to(out).as_posix() for p in (out / "new_dataset").rglob("*")}
    assert on_disk == {"new_dataset/" + s for s in SPLITS} | {
        p.removeprefix("./") for p in meta["path"]
    }


def test_the_measured_real_ranges_hold_for_the_fixtures(fixtures: Path) -> None:
    for path in sorted((fixtures / "cnmc").glob("*.bmp")):
        mean, black = _stats(np.asarray(Image.open(path).convert("RGB")))
        assert REAL_MEAN_PIXEL_RANGE[0] <= mean <= REAL_MEAN_PIXEL_RANGE[1], path.name
        assert REAL_BLACK_FRACTION_RANGE[0] <= black <= REAL_BLACK_FRACTION_RANGE[1], path.name


def test_pixel_statistics_stay_in_the_real_ranges(dataset: tuple[Path, pd.DataFrame]) -> None:
    out, meta = dataset
    assert set(meta["label"]) == {0, 1}
    cell_means = []
    for rel in meta["path"]:
        img = np.asarray(Image.open(out / rel))
        mean, black = _stats(img)
        assert REAL_MEAN_PIXEL_RANGE[0] <= mean <= REAL_MEAN_PIXEL_RANGE[1], rel
        assert REAL_BLACK_FRACTION_RANGE[0] <= black <= REAL_BLACK_FRACTION_RANGE[1], rel
        cell = img[img.max(axis=2) > 0].astype(float)
        cell_means.append(cell.mean(axis=0))
        # One cell, centred, like the segmented real crops.
        ys, xs = np.nonzero(img.max(axis=2))
        assert abs(ys.mean() - 224.5) < 8 and abs(xs.mean() - 224.5) < 8, rel
    for channel, (lo, hi) in zip(np.mean(cell_means, axis=0), REAL_CELL_RGB_RANGE, strict=True):
        assert lo <= channel <= hi


def test_render_cell_any_size_and_both_classes() -> None:
    style = synthetic.make_subjects(0)[0]
    for label in (0, 1):
        for size in (160, 450):
            img = synthetic.render_cell(np.random.default_rng(label), label, style, size)
            assert img.shape == (size, size, 3) and img.dtype == np.uint8
            mean, black = _stats(img)
            assert REAL_MEAN_PIXEL_RANGE[0] <= mean <= REAL_MEAN_PIXEL_RANGE[1]
            assert REAL_BLACK_FRACTION_RANGE[0] <= black <= REAL_BLACK_FRACTION_RANGE[1]


def test_labels_are_68_percent_blasts_and_subjects_one_class() -> None:
    plan = synthetic.plan_dataset(train=8000, valid=1600, test=1000, seed=5)
    for split, group in plan.groupby("split"):
        assert abs(group["label"].mean() - 0.68) < 0.005, split
    assert synthetic.assign_labels(np.random.default_rng(0), 12).sum() == 8
    per_subject = plan.groupby("subject")["label"].agg(["min", "max"])
    assert (per_subject["min"] == per_subject["max"]).all(), "a subject is patient or donor"
    assert len(per_subject) == synthetic.N_SUBJECTS
    assert all(s.startswith("A") for s in per_subject.index[per_subject["max"] == 1])
    assert all(s.startswith("H") for s in per_subject.index[per_subject["max"] == 0])


def _best_threshold_accuracy(values: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy of the best single cut on one cue, either way round."""
    return max(
        max(((values > t) == labels).mean(), ((values <= t) == labels).mean())
        for t in np.unique(values)
    )


def test_class_cues_at_each_scale_differ_but_none_separates() -> None:
    """Catches a cue that stops differing between classes, or one that alone separates them
    (then the lessons of depth, resolution and cropping would not show)."""
    rng = np.random.default_rng(0)
    params = [synthetic.sample_cell_params(rng, y) for y in (0, 1) for _ in range(400)]
    labels = np.array([p.label for p in params])
    cues = {
        "global": ["diameter", "irregularity"],
        "mid": ["eccentricity", "cleft"],
        "fine": ["clumps", "nucleoli"],
    }
    for scale, names in cues.items():
        for name in names:
            values = np.array([getattr(p, name) for p in params], dtype=float)
            accuracy = _best_threshold_accuracy(values, labels)
            assert 0.58 < accuracy < 0.95, (scale, name, accuracy)
    assert 0 < np.mean([p.hard for p in params]) < 0.03


def test_fine_cues_add_to_what_the_global_and_mid_ones_allow() -> None:
    """Catches a generator whose fine cues carry nothing new: resolution would not matter.

    The mid cues are strong, so the fine ones are asked to remove a good share of the errors
    the global and mid cues leave, not a fixed number of points."""
    coarse = synthetic.latent_ceiling(4000, seed=0, scales=("global", "mid"))
    everything = synthetic.latent_ceiling(4000, seed=0)
    assert synthetic.latent_ceiling(4000, seed=0, scales=("global",)) < 0.75
    assert coarse < 0.99
    assert 1.0 - everything < 0.7 * (1.0 - coarse)


def test_test_csvs_list_the_same_ids_in_three_orders_and_truth_scores_them(
    dataset: tuple[Path, pd.DataFrame],
) -> None:
    """Catches three identical test CSVs (the course's differ), lost or repeated IDs, and a
    truth file whose labels do not belong to its IDs."""
    out, meta = dataset
    orders = [pd.read_csv(out / n)["Path"].tolist() for n in TEST_CSV_NAMES]
    expected = sorted(f"./new_dataset/test/{i}.bmp" for i in range(COUNTS["test"]))
    for name, ids in zip(TEST_CSV_NAMES, orders, strict=True):
        assert sorted(ids) == expected, f"{name}: every test image once"
    assert len({tuple(ids) for ids in orders}) == 3, "three different orders, as in the course"
    by_index = sorted(expected, key=lambda p: int(PATH_FORM.match(p)[2]))
    assert all(ids != by_index for ids in orders), "shuffled like the course"
    truth = pd.read_csv(out / "test_labels.csv")
    assert list(truth.columns) == ["ID", "label"]
    assert truth["ID"].tolist() == orders[0]
    known = dict(zip(meta["path"], meta["label"], strict=True))
    assert truth["label"].tolist() == [known[i] for i in orders[0]]


def test_test_orders_are_seeded_and_distinct_even_for_few_images() -> None:
    """Catches orders that ignore the seed or repeat when the test split is tiny."""
    for n in (3, 4, 50):
        orders = synthetic.test_orders(n, seed=1)
        assert len({tuple(o) for o in orders}) == 3, n
        assert all(sorted(o) == list(range(n)) for o in orders)
    same = synthetic.test_orders(50, seed=1)
    assert all(
        np.array_equal(a, b) for a, b in zip(same, synthetic.test_orders(50, 1), strict=True)
    )
    assert not np.array_equal(same[1], synthetic.test_orders(50, seed=2)[1])


def test_metadata_table(dataset: tuple[Path, pd.DataFrame]) -> None:
    out, meta = dataset
    on_disk = pd.read_csv(out / "metadata.csv")
    assert list(on_disk.columns) == ["path", "label", "split", "subject"]
    pd.testing.assert_frame_equal(on_disk, meta.reset_index(drop=True))
    assert meta["split"].value_counts().to_dict() == COUNTS
    train = pd.read_csv(out / "train.csv")
    rows = meta[meta["split"] == "train"]
    assert train["label"].tolist() == rows["label"].tolist()


def test_same_seed_same_bytes_whatever_the_workers(
    dataset: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    out, meta = dataset
    again = tmp_path / "again"
    _write(again, workers=2)
    other = tmp_path / "other"
    write_synthetic_dataset(other, train=2, valid=1, test=1, seed=4, workers=1, progress=False)
    for rel in [*meta["path"], "train.csv", *TEST_CSV_NAMES, "metadata.csv"]:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    for rel in ["new_dataset/train/0.bmp", "new_dataset/train/1.bmp", "new_dataset/test/0.bmp"]:
        assert (out / rel).read_bytes() != (other / rel).read_bytes(), rel


def test_refuses_a_non_empty_out_and_leaves_no_temp_folder(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="delete it or choose another --out") as err:
        write_synthetic_dataset(out, train=2, valid=1, test=1, workers=1, progress=False)
    assert err.value.path == out
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    write_synthetic_dataset(empty, train=2, valid=1, test=1, workers=1, progress=False)
    assert (empty / "train.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "empty"], "no temp folder left"


def test_an_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3.data.synthetic import write

    render = write._render_task
    done = []

    def interrupted(task: tuple) -> None:
        if len(done) == 3:
            raise KeyboardInterrupt
        render(task)
        done.append(task)

    monkeypatch.setattr(write, "_render_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(
            tmp_path / "data", train=4, valid=1, test=1, workers=1, progress=False
        )
    assert len(done) == 3
    assert list(tmp_path.iterdir()) == [], "neither the output nor the temporary folder is left"


def test_the_project_reads_it_as_the_course_layout(dataset: tuple[Path, pd.DataFrame]) -> None:
    from lab3.data.layouts import load_layout

    out, meta = dataset
    layout = load_layout(out)
    assert layout.name == "course"
    assert layout.table["split"].value_counts().to_dict() == COUNTS
    assert layout.has_test_labels
