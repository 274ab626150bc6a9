"""Bad input is refused before anything is written: one line on stderr, exit 2, nothing left.

Every case goes through `lab3.cli.main`, as a user's command does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import write_course_dataset

from lab3.cli import main


def _refused(capsys: pytest.CaptureFixture, argv: list[str], *expected: str) -> str:
    """Run `lab3 argv`; assert exit 2 and one line on stderr containing `expected`."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"lab3 {argv[0]}: error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------
# lab3 synth


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--train", "-5"], "--train must be at least 1 image, not -5"),
        (["--train", "0"], "--train must be at least 1 image, not 0"),
        (["--valid", "0"], "--valid must be at least 1 image, not 0"),
        (["--test", "-1"], "--test must be at least 1 image, not -1"),
        (["--size", "3"], "--size must be at least 32 pixels, not 3"),
        (["--size", "31"], "--size must be at least 32 pixels, not 31"),
    ],
)
def test_synth_refuses_counts_and_sizes_nothing_can_train_on(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], expected: str
) -> None:
    out = tmp_path / "parent" / "data"
    _refused(capsys, ["synth", "--out", str(out), *flags], expected)
    assert not (tmp_path / "parent").exists(), "not even the parent folder is created"


def test_synth_refuses_a_dataset_in_out_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = write_course_dataset(tmp_path / "data", train=8, valid=4, test=4, size=16)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    small = ["--train", "3", "--valid", "2", "--test", "2", "--size", "32"]
    _refused(capsys, ["synth", "--out", str(out), *small], "already holds a dataset", "--force")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    assert main(["synth", "--out", str(out), *small, "--force"]) == 0
    assert "wrote 7 images" in capsys.readouterr().out
    assert len(pd.read_csv(out / "train.csv")) == 3, "the new dataset replaced the old one"
    assert (out / "metadata.csv").is_file()
    assert not (out / "new_dataset" / "train" / "7.bmp").exists(), "no old image left inside"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_synth_force_never_deletes_what_is_not_a_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    _refused(capsys, ["synth", "--out", str(out), "--force"], "not empty", "mine")
    assert _tree(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep"
    afile = tmp_path / "afile"
    afile.write_text("x")
    _refused(capsys, ["synth", "--out", str(afile), "--force"], "not a folder")
    assert afile.read_text() == "x"


# ---------------------------------------------------------------------------------------------
# lab3 train and lab3 run


def _one_class(root: Path) -> Path:
    write_course_dataset(root, train=40, valid=8, test=8, size=16)
    train = pd.read_csv(root / "train.csv")
    train["label"] = 1
    train.to_csv(root / "train.csv", index=False)
    return root


TRAIN = ["--model", "resnet18", "--profile", "tiny", "--device", "cpu"]


@pytest.mark.parametrize("command", ["train", "run"])
def test_one_class_only_is_refused_before_a_run_folder_exists(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    data = _one_class(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = work / "run"
    flags = TRAIN if command == "train" else ["--profile", "tiny"]
    argv = [command, "--data", str(data), "--out", str(out), *flags]
    _refused(capsys, argv, "one class only (label 1 only)", str(data.resolve()))
    assert _tree(work) == [], "no run folder, no outputs/ folder"
    # without --out neither: the default run folder is not created either
    _refused(capsys, [command, "--data", str(data), *flags], "one class only")
    assert _tree(work) == []


@pytest.mark.parametrize("command", ["train", "run"])
def test_fewer_training_images_than_a_batch_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    data = write_course_dataset(tmp_path / "data", train=12, valid=6, test=6, size=16)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    flags = TRAIN if command == "train" else ["--profile", "tiny"]
    argv = [command, "--data", str(data), "--out", str(work / "run"), *flags]
    # the tiny profile's batch is 16 images
    _refused(capsys, argv, "12 training images, fewer than one batch of 16", "--batch-size")
    assert _tree(work) == []
    if command == "run":  # two processes need two batches
        more = write_course_dataset(tmp_path / "more", train=20, valid=6, test=6, size=16)
        argv = ["run", "--data", str(more), "--out", str(work / "run"), "--profile", "tiny"]
        _refused(capsys, [*argv, "--nproc", "2"], "fewer than one batch of 32 (16 x 2 processes)")
        assert _tree(work) == []


def test_train_limit_counts_as_the_training_set(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_course_dataset(tmp_path / "data", train=40, valid=6, test=6, size=16)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(out), *TRAIN, "--train-limit", "8"]
    _refused(capsys, argv, "8 training images, fewer than one batch of 16")
    assert not out.exists()
    argv = ["train", "--data", str(data), "--out", str(out), *TRAIN, "--batch-size", "64"]
    _refused(capsys, argv, "40 training images, fewer than one batch of 64")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# lab3 evaluate and lab3 predict


def _not_checkpoints(tmp_path: Path) -> list[Path]:
    text = tmp_path / "README.md"
    text.write_text("# not a checkpoint\n")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02not a pickle at all")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)  # a torch file, not lab3's
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    return [text, junk, foreign, listing]


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_file_that_is_not_a_checkpoint_gets_our_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: str
) -> None:
    files = _not_checkpoints(tmp_path)
    before = _tree(tmp_path)
    for path in files:
        argv = [command, "--checkpoint", str(path)]
        if command == "predict":
            argv += ["--out", str(tmp_path / "submission.csv")]
        line = _refused(capsys, argv, f"not a lab3 checkpoint: {path}")
        assert "weights_only" not in line and "torch" not in line.lower(), line
        assert _tree(tmp_path) == before, "no confusion figure, no submission"
