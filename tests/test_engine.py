"""The training engine and the command line: round trip, resume after a real kill, bad inputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import METRIC_COLUMNS, TINY, tensors_equal, train_in_subprocess
from faults import KILL_HOOK, fault_env

from lab3.cli import main
from lab3.config import TrainConfig, make_config
from lab3.engine.checkpoint import read_checkpoint, save_checkpoint
from lab3.engine.loop import fit
from lab3.engine.optim import lr_factor
from lab3.errors import UserError


def _cli_train(data: Path, out: Path, *extra: str) -> int:
    """`lab3 train` in this process with the tiny recipe; returns the exit code."""
    args = ["--model", "resnet18", "--data", str(data), "--out", str(out), *TINY, *extra]
    return main(["train", *args])


def test_round_trip_train_evaluate_predict_score(
    small_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert _cli_train(small_synthetic, run, "--epochs", "2") == 0
    history = pd.read_csv(run / "history.csv")
    assert history.columns.tolist() == [*METRIC_COLUMNS, "seconds", "images_per_s"]
    assert history["epoch"].tolist() == [1, 2]
    assert json.loads((run / "history.json").read_text())[1]["epoch"] == 2
    assert TrainConfig.load(run / "config.json").epochs == 2
    for name in ("best.pt", "result.json"):
        assert (run / name).is_file()
    assert not (run / "last.pt").exists()  # a finished run drops its resume state

    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--split", "valid"]) == 0
    out = capsys.readouterr().out
    assert "accuracy:" in out and "weighted_f1:" in out and "confusion matrix" in out
    assert (run / "confusion_valid.png").stat().st_size > 1000

    submission = tmp_path / "submission.csv"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run / "best.pt"),
                "--out",
                str(submission),
                "--tta",
                "8",
            ]
        )
        == 0
    )
    frame = pd.read_csv(submission)
    test_ids = pd.read_csv(small_synthetic / "resnet_18_test.csv")["Path"].tolist()
    assert frame.columns.tolist() == ["ID", "label"] and frame["ID"].tolist() == test_ids
    assert set(frame["label"]) <= {0, 1}

    capsys.readouterr()
    assert (
        main(["score", str(submission), "--truth", str(small_synthetic / "test_labels.csv")]) == 0
    )
    accuracy = float(capsys.readouterr().out.splitlines()[1].split(":")[1])
    truth = pd.read_csv(small_synthetic / "test_labels.csv").set_index("ID")["label"]
    assert accuracy == pytest.approx(
        (frame.set_index("ID")["label"] == truth[frame["ID"]]).mean(), abs=1e-4
    )


def test_resume_after_a_real_kill_equals_an_uninterrupted_run(
    small_synthetic: Path, tmp_path: Path
) -> None:
    """Killed at its best epoch and resumed, a run with a weight average ends as an
    uninterrupted one: same history, result.json, best.pt (epoch, weights, averaged weights),
    and the same weights in every checkpoint both runs keep.

    Catches a resume that forgets the best validation accuracy so far (a later, worse epoch
    overwrites best.pt), that restarts the weight average, the schedule or the random state."""
    epochs, ema = "3", ("--ema", "0.9")
    straight = train_in_subprocess(small_synthetic, tmp_path / "straight", "--epochs", epochs, *ema)
    assert straight.returncode == 0, straight.stderr
    expected = json.loads((tmp_path / "straight" / "result.json").read_text())
    kill = expected["best_epoch"]
    assert kill < int(epochs), "the best epoch must come before the last for this to test resume"
    killed = train_in_subprocess(
        small_synthetic,
        tmp_path / "killed",
        "--epochs",
        epochs,
        *ema,
        env=fault_env(KILL_HOOK, str(kill)),
    )
    assert killed.returncode == -signal.SIGKILL
    assert pd.read_csv(tmp_path / "killed" / "history.csv")["epoch"].tolist() == [
        *range(1, kill + 1)
    ]
    resumed = train_in_subprocess(
        small_synthetic, tmp_path / "killed", "--epochs", epochs, *ema, "--resume"
    )
    assert resumed.returncode == 0, resumed.stderr

    a = pd.read_csv(tmp_path / "straight" / "history.csv")[METRIC_COLUMNS]
    b = pd.read_csv(tmp_path / "killed" / "history.csv")[METRIC_COLUMNS]
    assert b["epoch"].tolist() == [1, 2, 3]  # each epoch exactly once
    pd.testing.assert_frame_equal(a, b, atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "killed" / "result.json").read_text()) == expected
    for name in ("best.pt", "last.pt"):
        if not (tmp_path / "straight" / name).is_file():
            continue
        want, got = (read_checkpoint(tmp_path / run / name) for run in ("straight", "killed"))
        assert got["epoch"] == want["epoch"], name
        assert want.get("ema") is not None, f"{name} keeps no weight average"
        assert tensors_equal(got["model"], want["model"]), f"{name}: weights differ"
        assert tensors_equal(got.get("ema"), want.get("ema")), f"{name}: averages differ"


def test_existing_run_folder_is_never_overwritten(small_synthetic: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("precious\n")
    result = train_in_subprocess(small_synthetic, run)
    assert result.returncode == 2
    assert "already exists; pass --resume" in result.stderr and "Traceback" not in result.stderr
    assert (run / "history.csv").read_text() == "precious\n"


def test_crash_during_checkpoint_write_keeps_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "arch": "resnet18", "epoch": 1})

    def broken_save(obj: object, f: str | Path) -> None:
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "arch": "resnet18", "epoch": 2})
    monkeypatch.undo()
    state = read_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_nan_loss_stops_with_a_clear_message(small_synthetic: Path, tmp_path: Path) -> None:
    config = make_config(
        "tiny",
        model="resnet18",
        data=str(small_synthetic),
        out=str(tmp_path / "r"),
        image_size=32,
        lr=1e6,
        weight_decay=0.0,
        label_smoothing=0.0,
        device="cpu",
        epochs=2,
    )
    with pytest.raises(UserError, match="loss became"):
        fit(config, progress=False)


def test_bad_checkpoints_and_test_csvs(
    small_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: checkpoint not found" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["predict", "--checkpoint", str(junk), "--out", str(tmp_path / "s.csv")]) == 2
    assert f"not a lab3 checkpoint: {junk}" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_wrong_architecture_names_both(
    small_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from lab3.engine.checkpoint import load_weights
    from lab3.models import build_model

    run = tmp_path / "run"
    assert _cli_train(small_synthetic, run) == 0
    state = read_checkpoint(run / "best.pt")
    with pytest.raises(
        UserError,
        match="checkpoint holds resnet18 with 2 classes, but the model is resnet50 with 2",
    ):
        load_weights(build_model("resnet50", num_classes=2), state, run / "best.pt")
    with pytest.raises(UserError, match="but the model is resnet18 with 5 classes"):
        load_weights(build_model("resnet18", num_classes=5), state, run / "best.pt")
    finished = train_in_subprocess(small_synthetic, run, "--resume", "--epochs", "2")
    assert finished.returncode == 2 and "this run finished" in finished.stderr
    # as if interrupted: resumable (a finished result.json would make it finished, last.pt or not)
    (run / "last.pt").write_bytes((run / "best.pt").read_bytes())
    (run / "result.json").unlink()
    wrong = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab3",
            "train",
            "--model",
            "resnet50",
            "--data",
            str(small_synthetic),
            "--out",
            str(run),
            "--resume",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode == 2 and "trained as resnet18, not resnet50" in wrong.stderr
    # a test CSV of another dataset
    other = tmp_path / "other_test.csv"
    other.write_text("Path\n./new_dataset/test/9999.bmp\n")
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run / "best.pt"),
                "--test-csv",
                str(other),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 2
    )
    assert (
        "other_test.csv: 1 IDs (first: ./new_dataset/test/9999.bmp) are not test images"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "s.csv").exists()


def test_learning_rate_schedules() -> None:
    total = 100
    one = [lr_factor(s, total, 10, "onecycle") for s in range(total)]
    assert one[0] < 0.1 and max(one) == pytest.approx(1, abs=1e-3) and one[-1] < 0.01
    cos = [lr_factor(s, total, 10, "cosine") for s in range(total)]
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1) and cos[-1] < 0.01


def test_profiles_and_overrides() -> None:
    quick = make_config("quick", model="resnet152")
    assert quick.epochs == 4 and quick.profile == "quick"
    assert make_config("quick", model="resnet18", epochs=2).epochs == 2
    with pytest.raises(UserError, match="unknown profile"):
        make_config("huge")
    with pytest.raises(UserError, match="optimizer must be one of"):
        make_config("quick", optimizer="lion")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_cpu(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches bf16 autocast switched on for a CPU that only emulates bf16 (slower than float32),
    or left off where the CPU computes it natively; explicit settings win either way."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    auto = make_config("quick", device="cpu")
    assert auto.use_amp() is native and auto.use_channels_last() is True  # either precision
    assert isinstance(auto.autocast(), torch.autocast) is native
    assert make_config("quick", device="cpu", amp="off").use_amp() is False
    assert make_config("quick", device="cpu", amp="on").use_amp() is True
    assert auto.use_compile() is False


class _FailsToCompile(torch.nn.Module):
    """Stands in for a compiled model whose compilation fails on its first call."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise torch._dynamo.exc.TorchDynamoException("no working C compiler found\nmore detail")


def test_a_failed_compile_falls_back_to_eager_in_one_line(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Catches a run that dies with a compiler traceback (or goes on silently, or retries the
    compile every step) when torch.compile cannot work on this machine."""
    monkeypatch.setattr(torch, "compile", lambda model, **_: _FailsToCompile())
    config = make_config(
        "tiny", data=str(small_synthetic), out=str(tmp_path / "run"), epochs=2, train_limit=32,
        image_size=32, compile="on", device="cpu",
    )  # fmt: skip
    result = fit(config, progress=False)
    assert result.history["epoch"].tolist() == [1, 2]
    assert result.history["train_loss"].notna().all()
    lines = [line for line in capsys.readouterr().err.splitlines() if "torch.compile" in line]
    assert lines == [
        "torch.compile failed (TorchDynamoException: no working C compiler found); training "
        "continues without it (--compile off skips the attempt)"
    ]
