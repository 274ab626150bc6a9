"""Every flag of every command reaches the function that acts on it, with the value given.

The functions the command line calls are replaced by recorders, so each check takes
milliseconds; what each function then does with the value is tested where tests/README.md says.
`lab3 train`'s flags are TrainConfig fields: tests/test_options.py checks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lab3 import cli
from lab3.config import make_config


class Called(Exception):
    """Raised by a recorder: the command got as far as the function it calls."""


def _recorder(calls: list[dict[str, Any]], names: tuple[str, ...]):
    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append({**dict(zip(names, args, strict=False)), **kwargs})
        raise Called

    return record


def _run(argv: list[str]) -> None:
    with pytest.raises(Called):
        cli.main(argv)


def test_synth_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lab3.data import synthetic

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(synthetic, "write_synthetic_dataset", _recorder(calls, ("out",)))
    out = tmp_path / "d"
    argv = ["synth", "--out", str(out), "--train", "5", "--valid", "4", "--test", "3"]
    _run([*argv, "--size", "64", "--seed", "9", "--force"])
    assert calls[-1] == {
        "out": out, "train": 5, "valid": 4, "test": 3, "size": 64, "seed": 9, "force": True
    }  # fmt: skip
    _run(["synth", "--out", str(out)])
    assert calls[-1]["force"] is False and calls[-1]["size"] == 450 and calls[-1]["seed"] == 0
    assert (calls[-1]["train"], calls[-1]["valid"], calls[-1]["test"]) == (
        synthetic.DEFAULT_TRAIN,
        synthetic.DEFAULT_VALID,
        synthetic.DEFAULT_TEST,
    )


def test_synth_kind_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lab3.data.synthetic import retinopathy

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        retinopathy, "write_retinopathy_dataset", _recorder(calls, ("out", "train", "test"))
    )
    _run(["synth", "--kind", "retinopathy", "--train", "20", "--test", "6", "--seed", "3"])
    assert calls[-1] == {
        "out": Path(retinopathy.DEFAULT_OUT), "train": 20, "test": 6,
        "size": retinopathy.DEFAULT_SIZE, "seed": 3,
    }  # fmt: skip
    for refused in (["--valid", "5"], ["--force"], ["--size", "16"]):
        assert cli.main(["synth", "--kind", "retinopathy", *refused]) == 2
    # a value given explicitly is used even where it equals the leukemia kind's default
    _run(["synth", "--kind", "retinopathy", "--size", "450", "--out", "data/synthetic"])
    assert calls[-1]["size"] == 450 and calls[-1]["out"] == Path("data/synthetic")


def test_data_summary_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3.data import summary

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(summary, "dataset_summary", _recorder(calls, ("data",)))
    _run(["data", "summary", "--data", "d", "--image-size", "96", "--preprocess", "equalize",
          "--split-mode", "subject"])  # fmt: skip
    assert calls[-1] == {
        "data": "d", "image_size": 96, "preprocess": "equalize", "split_mode": "subject"
    }  # fmt: skip
    # the cache is built at the size and preprocessing of the profile that will train on it
    for profile in ("quick", "full"):
        _run(["data", "summary", "--profile", profile])
        expected = make_config(profile)
        assert (calls[-1]["image_size"], calls[-1]["preprocess"]) == (
            expected.image_size,
            expected.preprocess,
        )
        assert calls[-1]["split_mode"] == expected.split_mode


def test_evaluate_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3.engine import evaluate

    calls: list[dict[str, Any]] = []
    names = ("checkpoint", "data", "split")
    monkeypatch.setattr(evaluate, "evaluate_checkpoint", _recorder(calls, names))
    _run(["evaluate", "--checkpoint", "c.pt", "--data", "d", "--split", "test", "--tta", "4",
          "--device", "cpu"])  # fmt: skip
    assert calls[-1] == {"checkpoint": "c.pt", "data": "d", "split": "test", "tta": 4,
                         "device": "cpu"}  # fmt: skip
    _run(["evaluate", "--checkpoint", "c.pt"])
    assert calls[-1] == {"checkpoint": "c.pt", "data": None, "split": "valid", "tta": None,
                         "device": "auto"}  # fmt: skip


def test_predict_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lab3 import submission
    from lab3.engine import evaluate

    calls: list[dict[str, Any]] = []
    frame = pd.DataFrame({"ID": ["a.bmp", "b.bmp"], "label": [0, 1]})

    def predicted(*args: Any, **kwargs: Any) -> pd.DataFrame:
        calls.append(
            {**dict(zip(("checkpoint", "data", "test_csv"), args, strict=False)), **kwargs}
        )
        return frame

    monkeypatch.setattr(evaluate, "predict_submission", predicted)
    monkeypatch.setattr(submission, "write_submission", _recorder(calls, ("frame", "out")))
    out = tmp_path / "s.csv"
    _run(["predict", "--checkpoint", "c.pt", "--data", "d", "--test-csv", "t.csv", "--out",
          str(out), "--tta", "8", "--device", "cpu"])  # fmt: skip
    assert calls[0] == {"checkpoint": "c.pt", "data": "d", "test_csv": "t.csv", "tta": 8,
                        "device": "cpu"}  # fmt: skip
    assert calls[1]["frame"] is frame and calls[1]["out"] == out


def test_score_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3 import submission

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(submission, "score", _recorder(calls, ("submission", "truth")))
    _run(["score", "s.csv", "--truth", "t.csv"])
    assert calls[-1] == {"submission": "s.csv", "truth": "t.csv"}


def test_run_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3.workbook import runner as workbook

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(workbook, "run_workbook", _recorder(calls, ()))
    monkeypatch.setattr(workbook, "resume_workbook", _recorder(calls, ("resume",)))
    _run(["run", "--data", "d", "--profile", "tiny", "--models", "resnet18", "--out", "o",
          "--nproc", "2", "--split-mode", "subject"])  # fmt: skip
    assert calls[-1] == {"data": "d", "profile": "tiny", "models": "resnet18", "out": "o",
                         "nproc": 2, "pretrained": False, "split_mode": "subject"}  # fmt: skip
    _run(["run", "--pretrained"])
    assert calls[-1] == {**cli.RUN_DEFAULTS, "out": None, "pretrained": True}
    _run(["run", "--resume", "r"])
    assert calls[-1] == {"resume": "r"}
    assert cli.main(["run", "--resume", "r", "--split-mode", "subject"]) == 2  # its own split
    _run(["run", "--nproc", "0"])  # an explicit value reaches the check that refuses it
    assert calls[-1]["nproc"] == 0


def test_run_says_up_front_when_the_gpu_recipe_will_train_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A driver too old for torch's CUDA build: torch sees no GPU, and the full profile would
    start its hours on the CPU without a word."""
    import shutil

    import torch

    from lab3.workbook import runner as workbook

    monkeypatch.setattr(workbook, "run_workbook", _recorder([], ()))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    _run(["run", "--profile", "full"])
    notice = capsys.readouterr().err
    assert "will train on the CPU" in notice and "driver" in notice and "nvidia-smi" in notice
    _run(["run", "--profile", "quick"])  # the CPU profile: nothing to say
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _run(["run", "--profile", "full"])
    assert capsys.readouterr().err == ""


def test_explain_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3.workbook import attention

    calls: list[dict[str, Any]] = []
    run_names = ("run", "model", "n", "split", "data", "device", "layer")
    monkeypatch.setattr(attention, "explain_run", _recorder(calls, run_names))
    image_names = ("checkpoint", "images", "out", "data", "device", "layer")
    monkeypatch.setattr(attention, "explain_images", _recorder(calls, image_names))
    _run(["explain", "--run", "r", "--model", "resnet50", "--n", "3", "--split", "valid",
          "--data", "d", "--device", "cpu", "--layer", "layer3"])  # fmt: skip
    assert calls[-1] == {"run": "r", "model": "resnet50", "n": 3, "split": "valid", "data": "d",
                         "device": "cpu", "layer": "layer3"}  # fmt: skip
    _run(["explain", "--checkpoint", "c.pt", "--images", "a.bmp", "b.bmp", "--out", "m.png"])
    assert calls[-1] == {"checkpoint": "c.pt", "images": ["a.bmp", "b.bmp"], "out": "m.png",
                         "data": None, "device": "auto", "layer": None}  # fmt: skip


def test_demo_and_report_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3.workbook import report, results

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(results, "demo", _recorder(calls, ("run", "data", "device")))
    monkeypatch.setattr(report, "build_report", _recorder(calls, ("run",)))
    _run(["demo", "--run", "r", "--data", "d", "--device", "cpu"])
    assert calls[-1] == {"run": "r", "data": "d", "device": "cpu"}
    _run(["demo"])
    assert calls[-1] == {"run": "outputs/latest", "data": None, "device": "auto"}
    _run(["report", "--run", "r"])
    assert calls[-1] == {"run": Path("r")}


def test_bench_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab3 import bench

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(bench, "run_bench", _recorder(calls, ("settings", "command")))
    argv = ["bench", "--device", "cpu", "--models", "resnet18,resnet50", "--data", "d",
            "--image-size", "64", "--batch-size", "16", "--augment", "dihedral", "--images", "7",
            "--rounds", "2", "--workers", "3", "--profile-steps", "1", "--threads", "2",
            "--out", "o.json"]  # fmt: skip
    _run(argv)
    settings = calls[-1]["settings"]
    expected = {"device": "cpu", "models": ("resnet18", "resnet50"), "data": "d",
                "image_size": 64, "batch_size": 16, "augment": "dihedral", "images": 7,
                "rounds": 2, "workers": 3, "profile_steps": 1, "threads": 2}  # fmt: skip
    for name, value in expected.items():
        assert getattr(settings, name) == value, name
    assert "--out o.json" in calls[-1]["command"], "the recorded command names every option"
