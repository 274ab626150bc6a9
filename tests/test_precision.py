"""Precision from what the device computes natively: bf16, fp16 with loss scaling, or float32.

The GPU cases stub the device query (no GPU here); the fp16 path itself trains for real on the
CPU, whose autocast takes float16 too, including a resume after a kill.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import METRIC_COLUMNS, tensors_equal, train_in_subprocess
from faults import KILL_HOOK, fault_env
from torch import nn

from lab3.config import TrainConfig, make_config
from lab3.engine.checkpoint import read_checkpoint
from lab3.engine.loop import format_row
from lab3.engine.step import TrainStep, grad_scaler

# (compute capability, a card of it): what `amp auto` must choose there
GPUS = [
    ((6, 0), "P100", "fp16"),
    ((6, 1), "GTX 1080", "fp16"),
    ((7, 0), "V100", "fp16"),
    ((7, 5), "T4 / RTX 20", "fp16"),
    ((8, 0), "A100", "bf16"),
    ((8, 6), "RTX 30", "bf16"),
    ((8, 9), "L4 / RTX 40", "bf16"),
    ((9, 0), "H100", "bf16"),
    ((12, 0), "RTX 50", "bf16"),
]


def _on_gpu(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], **settings
) -> TrainConfig:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("lab3.config.cuda_capability", lambda device: capability)
    return make_config("full", device="cuda", **settings)


@pytest.mark.parametrize(("capability", "card", "expected"), GPUS)
def test_auto_precision_follows_the_gpus_compute_capability(
    capability: tuple[int, int], card: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches bf16 chosen on a GPU that only emulates it (T4, P100, V100), fp16 without its
    loss scaler, or a recorded reason that does not name the capability."""
    config = _on_gpu(monkeypatch, capability)
    execution = config.execution()
    assert execution["precision"] == expected, card
    assert execution["bf16"] is (expected == "bf16")
    assert config.uses_loss_scaling() is (expected == "fp16")
    where = f"CUDA compute capability {capability[0]}.{capability[1]}"
    reason = {
        "bf16": f"{where} computes bf16 natively",
        "fp16": f"{where} has no native bf16: fp16 with gradient scaling",
    }[expected]
    assert execution["bf16_reason"] == reason
    assert execution["channels_last"] is True and execution["compile"] is True
    calls = []
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: calls.append((args, kwargs)))
    config.autocast()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]
    assert calls == [(("cuda",), {"dtype": dtype})]


@pytest.mark.parametrize(
    ("amp", "capability", "precision", "reason"),
    [
        ("off", (9, 0), "float32", "--amp off"),
        ("off", (7, 5), "float32", "--amp off"),
        ("fp16", (9, 0), "fp16", "--amp fp16"),
        ("bf16", (7, 5), "bf16", "--amp bf16"),
        ("on", (7, 5), "bf16", "--amp on (bf16 is emulated on CUDA compute capability 7.5)"),
        ("on", (8, 0), "bf16", "CUDA compute capability 8.0 computes bf16 natively"),
    ],
)
def test_an_explicit_amp_wins_over_the_capability(
    amp: str, capability: tuple[int, int], precision: str, reason: str, monkeypatch
) -> None:
    config = _on_gpu(monkeypatch, capability, amp=amp)
    assert (config.precision(), config.execution()["bf16_reason"]) == (precision, reason)
    assert config.uses_loss_scaling() is (precision == "fp16")
    assert (grad_scaler(config) is not None) is (precision == "fp16")


def test_fp16_on_the_cpu_autocasts_to_float16_with_a_scaler() -> None:
    config = make_config("tiny", device="cpu", amp="fp16")
    with config.autocast():
        out = nn.Linear(4, 2)(torch.randn(3, 4))
    assert out.dtype == torch.float16
    scaler = grad_scaler(config)
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    assert grad_scaler(make_config("tiny", device="cpu", amp="bf16")) is None
    assert grad_scaler(make_config("tiny", device="cpu", amp="off")) is None


def _step(scale: float) -> tuple[TrainStep, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale, growth_interval=1000)
    autocast = torch.autocast("cpu", dtype=torch.float16)
    return TrainStep(model, optimizer, nn.CrossEntropyLoss(), autocast, scaler=scaler), model


def test_steps_skipped_for_an_overflow_are_counted_and_leave_the_weights() -> None:
    """Catches an overflowing fp16 step applied to the weights, or skipped silently: a scale of
    2**100 overflows float16's gradients until the scaler has halved it far enough."""
    images, labels = torch.randn(16, 8), torch.randint(0, 2, (16,))
    step, model = _step(2.0**100)
    before = [p.detach().clone() for p in model.parameters()]
    step(images, labels)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    for _ in range(99):
        step(images, labels)
    skipped = step.take_skipped()
    assert 1 <= skipped < 100, "the scale came down and training went on"
    assert step.take_skipped() == 0, "the count restarts after it is read"
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    sane, _ = _step(2.0**8)
    for _ in range(5):
        sane(images, labels)
    assert sane.take_skipped() == 0


def test_skipped_steps_are_shown_in_the_epoch_line() -> None:
    row = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "valid_loss": 0.6, "valid_acc": 0.7,
           "lr": 0.01, "seconds": 2.0, "images_per_s": 100.0}  # fmt: skip
    assert "skipped" not in format_row("resnet18", 2, row, [row])
    line = format_row("resnet18", 2, {**row, "skipped_steps": 3}, [row])
    assert "3 step(s) skipped (fp16 overflow)" in line


@pytest.mark.slow
def test_fp16_training_resumed_after_a_kill_equals_an_uninterrupted_run(
    small_synthetic: Path, tmp_path: Path
) -> None:
    """fp16 with loss scaling, trained for real: the history counts skipped steps, the
    checkpoint keeps the scaler's state, and a run killed after epoch 1 and resumed writes the
    same history, weights and scale as one that ran straight through.

    Catches a resume that starts the scaler afresh (its scale and growth counter), which changes
    which later steps overflow and so the weights."""
    fp16 = ("--epochs", "3", "--amp", "fp16")
    straight = train_in_subprocess(small_synthetic, tmp_path / "straight", *fp16)
    assert straight.returncode == 0, straight.stderr
    killed = train_in_subprocess(
        small_synthetic, tmp_path / "killed", *fp16, env=fault_env(KILL_HOOK, "1")
    )
    assert killed.returncode == -signal.SIGKILL
    state = read_checkpoint(tmp_path / "killed" / "last.pt")
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0
    resumed = train_in_subprocess(small_synthetic, tmp_path / "killed", *fp16, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    columns = [*METRIC_COLUMNS, "skipped_steps"]
    a = pd.read_csv(tmp_path / "straight" / "history.csv")
    b = pd.read_csv(tmp_path / "killed" / "history.csv")
    assert (a["skipped_steps"] >= 0).all() and a["skipped_steps"].dtype.kind == "i"
    pd.testing.assert_frame_equal(a[columns], b[columns], atol=1e-5, rtol=0)
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["execution"]["precision"] == "fp16"
    want, got = (read_checkpoint(tmp_path / run / "best.pt") for run in ("straight", "killed"))
    assert got["epoch"] == want["epoch"]
    assert tensors_equal(got["model"], want["model"])
    assert got["scaler"] == want["scaler"]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_an_overflowed_fp16_step_leaves_the_optimizer_state_finite(optimizer: str) -> None:
    """Catches the fused optimizer under a loss scaler: fused SGD writes a skipped step's inf
    gradient into its momentum, and the next (finite) step turns the weights into nan."""
    config = make_config("tiny", device="cpu", amp="fp16", optimizer=optimizer)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    from lab3.engine.optim import make_optimizer

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100, growth_interval=1000)
    step = TrainStep(model, make_optimizer(model, config), nn.CrossEntropyLoss(), config.autocast(),
                     scaler=scaler)  # fmt: skip
    images, labels = torch.randn(16, 8), torch.randint(0, 2, (16,))
    for _ in range(100):
        step(images, labels)
    assert 1 <= step.take_skipped() < 100
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for state in step.optimizer.state.values():
        assert all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v))
