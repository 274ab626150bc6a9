"""Several processes, one model: torchrun + DistributedDataParallel on the CPU (gloo).

Each torchrun test starts two real processes of `lab3 train` on a tiny synthetic set: what they
share (one history, half the steps each, all-reduced metrics, resume, failure) is checked from
the files the run leaves, as a user would see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from faults import RAISE_HOOK, fault_env

from lab3.config import make_config
from lab3.data.loader import DeviceLoader, shard
from lab3.engine.checkpoint import read_checkpoint
from lab3.engine.distributed import Distributed, scaled_lr
from lab3.engine.evaluate import evaluate_checkpoint
from lab3.engine.loop import fit
from lab3.engine.resume import fit_or_resume
from lab3.errors import UserError
from lab3.workbook.runner import TRAIN_NOTEBOOK, plan

# 48 training images, batches of 8: one process makes 6 steps an epoch, each of two ranks 3.
# The floor of 12 batches is 2 epochs for one process, and must stay 2 for two (not 4).
SETTINGS = {
    "profile": "tiny",
    "image_size": 32,
    "train_limit": 48,
    "batch_size": 8,
    "epochs": 2,
    "min_steps": 12,
    "device": "cpu",
}
FLAGS = ["--profile", "tiny", "--image-size", "32", "--train-limit", "48", "--batch-size", "8"]
FLAGS += ["--min-steps", "12"]
PER_EPOCH = ["seconds", "images_per_s"]  # wall-clock columns, never equal between runs


def _torchrun(
    data: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "lab3", "train", "--model", "resnet18"]
    command += ["--data", str(data), "--out", str(out), "--epochs", "2", "--device", "cpu"]
    return subprocess.run(
        command + FLAGS + list(extra),
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="module")
def ddp_run(small_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted two-process run, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = _torchrun(small_synthetic, out)
    assert done.returncode == 0, done.stderr[-3000:]
    (out / "stdout.txt").write_text(done.stdout)
    return out


@pytest.mark.slow
def test_two_processes_write_one_history(ddp_run: Path) -> None:
    """Catches every rank writing or printing (two rows per epoch, doubled epoch lines)."""
    history = pd.read_csv(ddp_run / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    stdout = (ddp_run / "stdout.txt").read_text()
    assert stdout.count("epoch 1/2") == 1 and stdout.count("epoch 2/2") == 1
    assert json.loads((ddp_run / "config.json").read_text())["world_size"] == 2
    assert json.loads((ddp_run / "result.json").read_text())["world_size"] == 2
    assert read_checkpoint(ddp_run / "best.pt")["world_size"] == 2


@pytest.mark.slow
def test_each_rank_makes_half_the_steps(ddp_run: Path, small_synthetic: Path, tmp_path) -> None:
    """Catches ranks that each walk the whole epoch instead of their own shard."""
    single = fit(
        make_config(**SETTINGS, model="resnet18", data=str(small_synthetic), out=str(tmp_path)),
        progress=False,
    )
    single_steps = _steps_per_epoch(single.run_dir / "best.pt")
    assert single_steps == 6
    assert _steps_per_epoch(ddp_run / "best.pt") == single_steps // 2


def _steps_per_epoch(checkpoint: Path) -> float:
    state = read_checkpoint(checkpoint)
    return state["lr_scheduler"]["step"] / state["epoch"]


@pytest.mark.slow
def test_history_metrics_equal_a_single_process_evaluation(
    ddp_run: Path, small_synthetic: Path
) -> None:
    """Catches metrics of one rank's shard only, or BatchNorm statistics that differ by rank:
    the history must say what one process computes on the whole split from the checkpoint."""
    history = pd.read_csv(ddp_run / "history.csv").set_index("epoch")
    best = history.loc[read_checkpoint(ddp_run / "best.pt")["epoch"]]
    evaluation = evaluate_checkpoint(ddp_run / "best.pt", split="valid", tta=1, device="cpu")
    assert len(evaluation.predictions.labels) == 16  # every valid image, none twice
    assert evaluation.metrics["accuracy"] == pytest.approx(best["valid_acc"], abs=1e-6)
    picked = evaluation.predictions.probs[np.arange(16), evaluation.predictions.labels]
    assert float(-np.log(picked).mean()) == pytest.approx(best["valid_loss"], abs=1e-4)


@pytest.mark.slow
def test_failed_rank_ends_the_job_and_resume_continues(
    ddp_run: Path, small_synthetic: Path, tmp_path: Path
) -> None:
    """Catches a job that hangs or exits 0 when one rank raises, a damaged last.pt, and a
    resume under DDP that does not reproduce the uninterrupted run."""
    out = tmp_path / "run"
    failed = _torchrun(small_synthetic, out, env=fault_env(RAISE_HOOK, "1@1"))
    assert failed.returncode != 0
    assert "lab3 train: error: rank 1 of 2 failed (RuntimeError" in failed.stderr
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    resumed = _torchrun(small_synthetic, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = pd.read_csv(out / "history.csv").drop(columns=PER_EPOCH)
    want = pd.read_csv(ddp_run / "history.csv").drop(columns=PER_EPOCH)
    pd.testing.assert_frame_equal(got, want, atol=1e-5)


@pytest.mark.slow
def test_resume_with_another_world_size_is_refused(
    ddp_run: Path, small_synthetic: Path, tmp_path: Path
) -> None:
    """Catches a resume that silently changes the global batch and the data order."""
    run = tmp_path / "copy"
    run.mkdir()
    (run / "last.pt").write_bytes((ddp_run / "best.pt").read_bytes())  # finished: no last.pt
    (run / "config.json").write_bytes((ddp_run / "config.json").read_bytes())
    config = make_config(**SETTINGS, model="resnet18", data=str(small_synthetic), out=str(run))
    with pytest.raises(UserError, match="trained by 2 process"):
        fit(config, resume=True, progress=False)


def test_training_shards_are_disjoint_and_equal() -> None:
    """Catches shards of unequal length (DDP would hang) or an image on two ranks."""
    rows = np.arange(103)
    shards = [shard(rows, rank, 4, equal=True) for rank in range(4)]
    assert {len(s) for s in shards} == {25}
    joined = np.concatenate(shards)
    assert len(np.unique(joined)) == len(joined) == 100
    evaluation = [shard(rows, rank, 4, equal=False) for rank in range(4)]
    assert sorted(np.concatenate(evaluation).tolist()) == rows.tolist()


def test_loader_shards_follow_one_permutation() -> None:
    """Catches ranks that shuffle with their own seed (overlapping shards) or lengths that
    disagree with the batches actually served."""
    images = np.zeros((50, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(50) % 2
    loaders = [
        DeviceLoader(
            images,
            labels,
            np.arange(50),
            batch_size=8,
            device="cpu",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            shuffle=True,
            drop_last=True,
            seed=3,
            rank=rank,
            world_size=3,
        )
        for rank in range(3)
    ]
    served = []
    for loader in loaders:
        loader.set_epoch(5)
        batches = [rows for _, _, rows in loader]
        assert len(batches) == len(loader) == 2
        served.append(np.concatenate(batches))
    joined = np.concatenate(served)
    assert len(np.unique(joined)) == len(joined)


def test_learning_rate_follows_the_global_batch() -> None:
    """The documented rule: linear for SGD, square root for AdamW, unchanged for one process."""
    assert scaled_lr(0.1, 1, "sgd") == 0.1
    assert scaled_lr(0.1, 8, "sgd") == pytest.approx(0.8)
    assert scaled_lr(0.002, 4, "adamw") == pytest.approx(0.004)


def test_the_step_floor_counts_images_seen_whatever_the_processes() -> None:
    """The course data, full profile: 62 steps an epoch on one GPU, 15 on each of four, 60 in
    all. The loop passes all processes' steps (`ddp_run` trains the 2 epochs of its floor, not
    4: test_two_processes_write_one_history)."""
    config = make_config("full", model="resnet50")
    assert config.min_steps == 1000 and config.epochs == 40
    assert config.planned_epochs(7995 // 128) == 40  # 62 steps an epoch: above the floor
    assert config.planned_epochs(7995 // 4 // 128 * 4) == 40  # four processes' 15 steps each
    assert config.planned_epochs(15) == 67  # what counting one process's steps would give


def test_sync_bn_on_the_cpu_is_refused(small_synthetic: Path, tmp_path: Path) -> None:
    config = make_config(
        **SETTINGS, model="resnet18", data=str(small_synthetic), out=str(tmp_path), sync_bn=True
    )
    with pytest.raises(UserError, match="sync-bn needs CUDA"):
        fit(config, progress=False)


@pytest.mark.slow
def test_notebook_launcher_relays_progress_and_reuses_the_run(
    small_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What notebook 04 does under `lab3 run --nproc 2`. Catches a launcher that loses the epoch
    lines, drops settings on the way to the processes (config.json must equal the wanted
    config), or trains a finished run again."""
    config = make_config(**SETTINGS, model="resnet18", data=str(small_synthetic))
    config.out = str(tmp_path / "run")
    result = fit_or_resume(config, nproc=2)
    assert "epoch 1/2" in capsys.readouterr().out
    assert result.history["epoch"].tolist() == [1, 2]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    execution = saved.pop("execution")
    assert saved == {**config.to_dict(), "world_size": 2}
    assert execution["device"] == "cpu" and not execution["compile"]
    again = fit_or_resume(config, nproc=2)
    assert capsys.readouterr().out == ""
    assert again.best_valid_acc == result.best_valid_acc


def test_workbook_passes_nproc_to_the_training_notebooks(tmp_path: Path) -> None:
    steps = plan(tmp_path, tmp_path, "tiny", ["resnet18", "resnet50"], nproc=4)
    training = [s for s in steps if s.source == TRAIN_NOTEBOOK]
    assert [s.parameters["nproc"] for s in training] == [4, 4]
    assert all("nproc" not in s.parameters for s in steps if s.source != TRAIN_NOTEBOOK)


def test_a_non_main_rank_writes_nothing(tmp_path: Path) -> None:
    """Catches ranks other than 0 writing config, history, checkpoints or result.json."""
    from lab3.engine.run_folder import RunFolder

    folder = RunFolder(tmp_path, writes=False)
    config = make_config(**SETTINGS, model="resnet18", data="unused")
    folder.save_config(config)
    folder.save_epoch(None, [{"epoch": 1, "valid_acc": 0.5}])  # type: ignore[arg-type]
    trainer = SimpleNamespace(config=config, epochs=1, group=Distributed(rank=1, world_size=2))
    result = folder.close(trainer, [{"epoch": 1, "valid_acc": 0.5}], interrupted=False)  # type: ignore[arg-type]
    assert result.best_epoch == 1
    assert list(tmp_path.iterdir()) == []
