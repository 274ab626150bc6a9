"""Submissions: built in the test CSV's order, validated, written, read back and scored; every
malformed file is one error naming it. Fast, so mutation runs map submission.py to them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lab3.errors import UserError
from lab3.submission import (
    build_submission,
    read_labelled_csv,
    read_test_ids,
    score,
    validate_submission,
    write_submission,
)

IDS = ["./new_dataset/test/2.bmp", "./new_dataset/test/0.bmp", "./new_dataset/test/1.bmp"]


def test_read_test_ids_in_file_order(tmp_path: Path, fixtures: Path) -> None:
    ids = read_test_ids(fixtures / "ta_csv" / "resnet_50_test.csv")
    assert len(ids) == 1067 and ids[:2] != sorted(ids)[:2]
    with pytest.raises(UserError) as err:
        read_test_ids(tmp_path / "none.csv")
    assert err.value.path == tmp_path / "none.csv"
    assert str(err.value) == (
        f"{tmp_path / 'none.csv'}: test CSV not found; pass --test-csv with one of the "
        "resnet_*_test.csv"
    )
    (tmp_path / "bad.csv").write_text("ID\nx\n")
    with pytest.raises(UserError, match="expected 'Path'"):
        read_test_ids(tmp_path / "bad.csv")


def test_build_validate_write(tmp_path: Path) -> None:
    frame = build_submission(IDS, {IDS[0]: 1, IDS[1]: 0, IDS[2]: 1, "extra": 0}, 2)
    assert frame.columns.tolist() == ["ID", "label"]
    assert frame["ID"].tolist() == IDS and frame["label"].tolist() == [1, 0, 1]
    assert str(frame["label"].dtype) == "int64"
    path = write_submission(frame, tmp_path / "sub" / "s.csv")
    assert path.read_text() == f"ID,label\n{IDS[0]},1\n{IDS[1]},0\n{IDS[2]},1\n"
    with pytest.raises(UserError, match=r"1 test images have no prediction \(first: "):
        build_submission(IDS, {IDS[0]: 1, IDS[1]: 0}, 2)
    with pytest.raises(UserError, match="labels must be integers 0..1"):
        build_submission(IDS, dict.fromkeys(IDS, 2), 2)
    assert build_submission(IDS, dict.fromkeys(IDS, 4), 5)["label"].tolist() == [4, 4, 4]
    with pytest.raises(UserError, match="labels must be integers 0..4"):
        build_submission(IDS, dict.fromkeys(IDS, -1), 5)


def test_validate_names_what_is_wrong() -> None:
    good = pd.DataFrame({"ID": IDS, "label": [0, 1, 1]})
    validate_submission(good, IDS, 2)
    with pytest.raises(UserError, match="header is 'Id,label', expected 'ID,label'") as err:
        validate_submission(good.rename(columns={"ID": "Id"}), IDS, 2, where="s.csv")
    assert str(err.value).startswith("s.csv: ")
    with pytest.raises(UserError, match="IDs differ from the test CSV's"):
        validate_submission(good, list(reversed(IDS)), 2)
    with pytest.raises(UserError, match="labels must be integers"):
        validate_submission(good.assign(label=["0", "x", "1"]), IDS, 2)
    validate_submission(good.assign(label=[0, 1, 0]), IDS, 2)


def _csv(path: Path, rows: list[tuple[str, object]], header: str = "ID,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{i},{label}\n" for i, label in rows))
    return path


def test_read_labelled_csv(tmp_path: Path) -> None:
    frame = read_labelled_csv(_csv(tmp_path / "a.csv", [("a", 1), ("b", "0")]))
    assert frame["label"].tolist() == [1, 0] and str(frame["label"].dtype) == "int64"
    with pytest.raises(UserError, match="file not found"):
        read_labelled_csv(tmp_path / "none.csv")
    for bad, line in (("x", 3), ("-1", 3), ("0.5", 3), ("", 3)):
        path = _csv(tmp_path / "b.csv", [("a", 1), ("b", bad)])
        with pytest.raises(UserError, match=f"line {line}: label '{bad}' is not a class number"):
            read_labelled_csv(path)
    with pytest.raises(UserError, match="expected 'ID,label'"):
        read_labelled_csv(_csv(tmp_path / "c.csv", [("a", 1)], header="Path,label"))


def test_score_matches_by_id(tmp_path: Path) -> None:
    truth = _csv(tmp_path / "truth.csv", [("a", 1), ("b", 0), ("c", 1), ("d", 1)])
    sub = _csv(tmp_path / "sub.csv", [("d", 1), ("c", 0), ("b", 0), ("a", 1)])
    metrics = score(sub, truth)
    assert metrics["accuracy"] == 0.75 and metrics["n"] == 4
    assert metrics["sensitivity"] == pytest.approx(2 / 3) and metrics["specificity"] == 1.0
    all_zero = _csv(tmp_path / "zero.csv", [("a", 0), ("b", 0), ("c", 0), ("d", 0)])
    assert score(all_zero, truth)["accuracy"] == 0.25
    assert "sensitivity" in score(all_zero, _csv(tmp_path / "t0.csv", [(k, 0) for k in "abcd"]))
    graded = _csv(tmp_path / "g.csv", [("a", 4), ("b", 0), ("c", 1), ("d", 1)])
    assert "kappa_quadratic" in score(graded, truth), "five grades: the retinopathy metrics"
    other = _csv(tmp_path / "other.csv", [("a", 1), ("b", 0), ("c", 1), ("e", 1)])
    with pytest.raises(UserError, match=r"IDs do not match the truth's \(2 differ, e.g. d\)"):
        score(other, truth)


def test_every_error_names_its_file_and_says_what_to_do(tmp_path: Path) -> None:
    """The whole line, file first: a mutant that drops the file or garbles the advice shows."""
    from lab3.metrics import metrics_from_predictions

    with pytest.raises(UserError) as err:
        build_submission(IDS, {IDS[0]: 1}, 2)
    assert str(err.value) == (
        f"2 test images have no prediction (first: {IDS[1]}); the test CSV does not match the "
        "data folder"
    )
    good = pd.DataFrame({"ID": IDS, "label": [0, 1, 1]})
    with pytest.raises(UserError) as err:
        validate_submission(good, IDS[::-1], 2, where="s.csv")
    assert str(err.value) == "s.csv: IDs differ from the test CSV's (same IDs, same order needed)"
    with pytest.raises(UserError) as err:
        validate_submission(good.assign(label=[0, 1, 3]), IDS, 2, where="s.csv")
    assert str(err.value) == "s.csv: labels must be integers 0..1"
    with pytest.raises(UserError) as err:
        read_labelled_csv(tmp_path / "none.csv")
    assert str(err.value) == f"{tmp_path / 'none.csv'}: file not found"
    bad = _csv(tmp_path / "bad.csv", [("a", "x")])
    with pytest.raises(UserError) as err:
        read_labelled_csv(bad)
    assert str(err.value) == f"{bad}: line 2: label 'x' is not a class number"
    truth = _csv(tmp_path / "truth.csv", [("a", 1), ("b", 0)])
    other = _csv(tmp_path / "other.csv", [("a", 1), ("c", 0)])
    with pytest.raises(UserError) as err:
        score(other, truth)
    assert str(err.value) == (
        f"{other}: IDs do not match the truth's (2 differ, e.g. b); score a submission for this "
        "test set"
    )
    grades = _csv(tmp_path / "grades.csv", [("a", 4), ("b", 0), ("c", 2)])
    guessed = _csv(tmp_path / "guessed.csv", [("a", 3), ("b", 0), ("c", 2)])
    expected, _ = metrics_from_predictions([4, 0, 2], [3, 0, 2], 5)
    assert score(guessed, grades) == pytest.approx(expected, nan_ok=True), "five classes"
