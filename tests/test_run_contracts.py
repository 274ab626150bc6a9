"""Contracts of a run's life that a careless change could break without another test noticing:
one rule set for new / resumed / finished runs (`RunFolder.plan`), a resumed workbook that runs
again what failed or was cut short, and `--init <checkpoint>` starting from the weights that
checkpoint's accuracy was measured on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from builders import train_in_subprocess
from faults import KILL_HOOK, fault_env

from lab3.config import TrainConfig, make_config
from lab3.engine import loop
from lab3.engine.checkpoint import read_checkpoint
from lab3.engine.run_folder import Action, Mode, RunFolder
from lab3.errors import UserError
from lab3.workbook import runner
from lab3.workbook.folders import RECORD

# ------------------------------------------------------------------ one rule set for a run folder


def _config(data: Path, out: Path, **settings) -> TrainConfig:
    base = {"model": "resnet18", "data": str(data), "out": str(out), "device": "cpu"}
    return make_config("tiny", **{**base, **settings})


def test_a_killed_run_refuses_to_resume_with_other_settings(
    small_synthetic: Path, tmp_path: Path
) -> None:
    """Catches `lab3 train --resume` training on with a new learning rate and rewriting the
    run's record as if every epoch had used it."""
    run = tmp_path / "run"
    killed = train_in_subprocess(
        small_synthetic, run, "--epochs", "2", env=fault_env(KILL_HOOK, "1")
    )
    assert killed.returncode != 0 and (run / "last.pt").is_file()
    recorded = (run / "config.json").read_bytes()
    changed = train_in_subprocess(small_synthetic, run, "--epochs", "2", "--resume", "--lr", "0.5")
    assert changed.returncode == 2, changed.stderr
    assert (
        f"{run}: this run folder holds a run with other settings (lr 0.05 -> 0.5)" in changed.stderr
    )
    assert (run / "config.json").read_bytes() == recorded and (run / "last.pt").is_file()
    same = train_in_subprocess(
        small_synthetic, run, "--epochs", "2", "--resume", "--compile", "off"
    )
    assert same.returncode == 0, same.stderr  # a runtime setting may change
    assert (run / "config.json").read_bytes() == recorded  # the record of how it was trained
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [1, 2]


@pytest.mark.parametrize("mode", [Mode.RESUME, Mode.AUTO])
def test_every_mode_refuses_the_same_differences(
    small_synthetic: Path, tmp_path: Path, mode: Mode
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _config(small_synthetic, run).save(run / "config.json")
    (run / "last.pt").write_bytes(b"stands for a checkpoint")
    assert RunFolder.plan(_config(small_synthetic, run, workers=3), mode)[1] is Action.RESUME
    with pytest.raises(UserError, match="other settings \\(batch_size 16 -> 8\\)"):
        RunFolder.plan(_config(small_synthetic, run, batch_size=8), mode)
    with pytest.raises(UserError, match="trained as resnet18, not resnet50"):
        RunFolder.plan(_config(small_synthetic, run, model="resnet50"), mode)
    with pytest.raises(UserError, match="trained by 1 process\\(es\\), this is 2"):
        RunFolder.plan(_config(small_synthetic, run, world_size=2), mode)


def test_the_folder_decides_new_resume_finished_and_restart(
    small_synthetic: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = _config(small_synthetic, run)
    assert RunFolder.plan(config, Mode.NEW)[1] is Action.NEW and not run.exists()  # writes nothing
    with pytest.raises(UserError, match="nothing to resume"):
        RunFolder.plan(config, Mode.RESUME)
    run.mkdir()
    config.save(run / "config.json")
    assert RunFolder.plan(config, Mode.AUTO)[1] is Action.RESTART  # killed before epoch 1
    with pytest.raises(UserError, match="already exists; pass --resume"):
        RunFolder.plan(config, Mode.NEW)
    (run / "history.csv").write_text("epoch,valid_acc\n1,0.5\n")
    result = {"epochs_planned": 1, "epochs_done": 1, "interrupted": False}
    (run / "result.json").write_text(json.dumps(result))
    (run / "last.pt").write_bytes(b"left by a kill while closing")
    assert RunFolder.plan(config, Mode.AUTO)[1] is Action.FINISHED
    with pytest.raises(UserError, match="this run finished"):
        RunFolder.plan(config, Mode.RESUME)
    (run / "result.json").write_text(json.dumps({**result, "interrupted": True}))
    assert RunFolder.plan(config, Mode.RESUME)[1] is Action.RESUME


def test_fit_leaves_the_callers_config_as_given(small_synthetic: Path, tmp_path: Path) -> None:
    config = _config(small_synthetic, tmp_path / "run", train_limit=16, world_size=7)
    before = config.to_dict()
    loop.fit(config, progress=False)
    assert config.to_dict() == before
    assert TrainConfig.load(tmp_path / "run" / "config.json").world_size == 1  # what trained


# ------------------------------------------------------- a resumed workbook runs what did not end


def test_resume_runs_again_every_notebook_that_failed_or_was_cut_short(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches a resumed workbook counting a notebook as finished because its executed file
    exists (papermill writes a failing notebook's file too; a kill leaves one cut short): it
    would end "done" with a depth that never trained."""
    run = tmp_path / "run"
    executed = run / "notebooks"
    executed.mkdir(parents=True)
    finished = ["01_data_exploration.ipynb", "02_preprocessing_experiments.ipynb"]
    cut_short, failed = "04_train_resnet18.ipynb", "04_train_resnet50.ipynb"
    listed_but_gone = "03_resnet_definitions.ipynb"  # in the record, its file deleted since
    for name in [*finished, cut_short, failed]:
        (executed / name).write_text("{}")
    record = {
        "data": str(small_synthetic),
        "profile": "tiny",
        "models": ["resnet18", "resnet50"],
        "device": "cpu",
        "nproc": 1,
        "started": "2026-12-06T08:00:00",
        "notebooks": [{"notebook": n, "seconds": 1.0} for n in [*finished, listed_but_gone]],
        "failed": failed,
    }
    (run / RECORD).write_text(json.dumps(record))
    ran: list[str] = []

    def execute_step(step: runner.NotebookRun, *args) -> float:
        ran.append(step.output)
        return 2.0

    monkeypatch.setattr(runner, "_execute_step", execute_step)
    monkeypatch.setattr(runner, "_estimate", lambda *args: None)
    runner.resume_workbook(run, stream=open(tmp_path / "log", "w"))
    assert ran == [listed_but_gone, cut_short, failed, "05_evaluation_and_report.ipynb"]
    after = json.loads((run / RECORD).read_text())
    assert "finished" in after and "failed" not in after
    order = [*finished, listed_but_gone, cut_short, failed, "05_evaluation_and_report.ipynb"]
    assert [entry["notebook"] for entry in after["notebooks"]] == order


# ------------------------------------------------------------- --init from a lab3 checkpoint


def test_init_from_a_checkpoint_starts_from_its_weight_average(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches `--init <best.pt>` starting from the raw weights of a run that kept a weight
    average: its accuracy was measured on the average."""
    source = tmp_path / "source"
    trained = train_in_subprocess(small_synthetic, source, "--ema", "0.5")
    assert trained.returncode == 0, trained.stderr
    state = read_checkpoint(source / "best.pt")
    key = "layer1.0.conv1.weight"
    assert not torch.equal(state["ema"][key], state["model"][key])
    started_from: dict[str, torch.Tensor] = {}

    class Loaded(Exception):
        pass

    def load_initial_state(model: torch.nn.Module, start: dict, source: str) -> str:
        started_from.update(start)
        raise Loaded

    monkeypatch.setattr(loop, "load_initial_state", load_initial_state)
    config = _config(small_synthetic, tmp_path / "finetuned", init=str(source / "best.pt"))
    with pytest.raises(Loaded):
        loop.fit(config, progress=False)
    assert torch.equal(started_from[key], state["ema"][key])
