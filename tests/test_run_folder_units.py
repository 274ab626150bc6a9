"""A run folder's life, function by function, on folders built by hand: what `RunFolder.plan`
decides and refuses (each message whole), which settings count as different, when a result
reads as finished, and what each step writes or removes. Fast (no model, no data: a trainer is a
namespace and the checkpoint writer a recorder), so mutation runs map to them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab3.config import TrainConfig
from lab3.engine import run_folder
from lab3.engine.run_folder import (
    RUNTIME_FIELDS,
    Action,
    Mode,
    RunFolder,
    RunResult,
    differences,
)
from lab3.errors import UserError

ROWS = [{"epoch": 1, "valid_acc": 0.5}, {"epoch": 2, "valid_acc": 0.75}]


def _config(tmp_path: Path, **settings) -> TrainConfig:
    base = {"data": str(tmp_path / "data"), "out": str(tmp_path / "run"), "device": "cpu"}
    return TrainConfig(**{**base, **settings})


def _started(tmp_path: Path, **settings) -> tuple[TrainConfig, Path]:
    """A run folder holding the config.json of `_config(tmp_path, **settings)`."""
    config = _config(tmp_path, **settings)
    run = Path(config.out)
    run.mkdir()
    config.save(run / "config.json")
    return config, run


def _finish(run: Path, **result) -> None:
    (run / "history.csv").write_text("epoch,valid_acc\n1,0.5\n")
    (run / "result.json").write_text(json.dumps(result))


def _decide(config: TrainConfig, mode: Mode) -> Action:
    folder, action = RunFolder.plan(config, mode)
    assert folder.path == Path(config.out) and folder.writes
    return action


def _refusal(config: TrainConfig, mode: Mode) -> str:
    with pytest.raises(UserError) as caught:
        RunFolder.plan(config, mode)
    assert caught.value.path == Path(config.out)
    return str(caught.value)


# ------------------------------------------------------------------------------------ plan


def test_a_new_run_needs_an_empty_or_absent_folder(tmp_path: Path) -> None:
    """Catches a new run refused in an empty folder, or let into one holding files that are not
    a run (every mode), and the refusal's words."""
    config = _config(tmp_path)
    for mode in (Mode.NEW, Mode.AUTO):
        assert _decide(config, mode) is Action.NEW
    Path(config.out).mkdir()
    for mode in (Mode.NEW, Mode.AUTO):
        assert _decide(config, mode) is Action.NEW
    (Path(config.out) / "notes.txt").write_text("not a run")
    for mode in (Mode.NEW, Mode.AUTO):
        assert _refusal(config, mode) == (
            f"{config.out}: run folder already exists; pass --resume to continue it or choose "
            "another --out"
        )


def test_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    """Catches `--resume` accepted on a folder without last.pt (started, or empty), and the
    message's words."""
    config = _config(tmp_path)
    expected = f"{config.out}: nothing to resume: no last.pt here; drop --resume to start a run"
    assert _refusal(config, Mode.RESUME) == expected
    config, run = _started(tmp_path)
    assert _refusal(config, Mode.RESUME) == expected
    (run / "last.pt").write_bytes(b"a checkpoint")
    assert _decide(config, Mode.RESUME) is Action.RESUME
    assert _decide(config, Mode.AUTO) is Action.RESUME


def test_a_finished_run_is_read_back_never_resumed(tmp_path: Path) -> None:
    """Catches a finished run trained again, or resumed, and the refusal's words; a result
    without its plan is judged by the config's epochs."""
    config, run = _started(tmp_path, epochs=2)
    _finish(run, epochs_done=2)
    assert _decide(config, Mode.AUTO) is Action.FINISHED
    assert _refusal(config, Mode.RESUME) == (
        f"{config.out}: this run finished, so there is nothing to resume; to train longer, start "
        "a new run"
    )
    (run / "last.pt").write_bytes(b"left by a kill while closing")
    assert _decide(config, Mode.AUTO) is Action.FINISHED


def test_a_finished_run_with_other_settings_is_refused(tmp_path: Path) -> None:
    """Catches a finished run read back under settings it was not trained with."""
    config, run = _started(tmp_path, epochs=1)
    _finish(run, epochs_done=1, epochs_planned=1)
    other = _config(tmp_path, epochs=1, lr=0.5)
    assert "other settings (lr 0.05 -> 0.5)" in _refusal(other, Mode.AUTO)


def test_an_unstarted_run_restarts_only_with_its_settings(tmp_path: Path) -> None:
    """Catches a run killed before its first checkpoint restarted with other settings."""
    config, run = _started(tmp_path)
    assert _decide(config, Mode.AUTO) is Action.RESTART
    assert "other settings (seed 0 -> 1)" in _refusal(_config(tmp_path, seed=1), Mode.AUTO)


def test_a_run_folder_without_out_is_named_after_the_model_and_the_time(tmp_path: Path) -> None:
    """Catches the default folder's place or name changing."""
    folder, action = RunFolder.plan(_config(tmp_path, out=None, model="resnet50"), Mode.NEW)
    assert action is Action.NEW
    assert folder.path.parent == Path("outputs") / "runs"
    assert re.fullmatch(r"resnet50-\d{8}-\d{6}", folder.path.name), folder.path.name


# --------------------------------------------------------------------------- the same settings


def test_the_refusals_name_model_processes_and_settings(tmp_path: Path) -> None:
    """Catches the refusals' words, and more than three differences listed."""
    config, run = _started(tmp_path)
    (run / "last.pt").write_bytes(b"a checkpoint")
    assert _refusal(_config(tmp_path, model="resnet50"), Mode.AUTO) == (
        f"{run}: this run was trained as resnet18, not resnet50; pass --model resnet18"
    )
    assert _refusal(_config(tmp_path, world_size=2), Mode.AUTO) == (
        f"{run}: this run was trained by 1 process(es), this is 2; resume with the same number "
        "(--nproc, torchrun --nproc_per_node)"
    )
    changed = _config(tmp_path, epochs=7, batch_size=8, lr=0.5, seed=3)
    assert _refusal(changed, Mode.AUTO) == (
        f"{run}: this run folder holds a run with other settings (epochs 6 -> 7; batch_size 64 "
        "-> 8; lr 0.05 -> 0.5); continue it with its own (lab3 train --resume --config "
        "<run>/config.json) or use another folder"
    )


def test_differences_skip_runtime_settings_and_name_the_rest(tmp_path: Path) -> None:
    """Catches a runtime setting counted as a difference, a difference after one missed, and
    the "name old -> new" words."""
    saved = _config(tmp_path)
    runtime = {"out": "elsewhere", "device": "cuda", "workers": 3, "amp": "off"}
    runtime |= {"channels_last": "on", "compile": "off"}
    assert set(runtime) == RUNTIME_FIELDS
    assert differences(saved, _config(tmp_path, **runtime)) == []
    assert differences(saved, _config(tmp_path, **runtime, seed=2, sync_bn=True)) == [
        "seed 0 -> 2",
        "sync_bn False -> True",
    ]
    assert differences(saved, _config(tmp_path, augment="none")) == [
        "augment 'dihedral,affine,color' -> 'none'"
    ]


def test_a_setting_the_saved_run_lacks_is_a_difference(tmp_path: Path) -> None:
    """Catches a setting an older config.json lacks read as equal (or as a crash)."""
    saved = SimpleNamespace(to_dict=lambda: {"seed": 0})
    wanted = SimpleNamespace(to_dict=lambda: {"seed": 0, "tta": 8})
    assert differences(saved, wanted) == ["tta None -> 8"]  # type: ignore[arg-type]


def test_data_is_the_same_folder_however_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches the data folder compared as text: relative, absolute, with `..` or `~`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    saved = _config(tmp_path, data=str(tmp_path / "data"))
    for same in ("data", "./x/../data", "~/data", str(tmp_path / "data")):
        assert differences(saved, _config(tmp_path, data=same)) == [], same
    assert differences(saved, _config(tmp_path, data="other")) == [
        f"data {str(tmp_path / 'data')!r} -> 'other'"
    ]


# ------------------------------------------------------------------------------ finished_result


@pytest.mark.parametrize(
    ("result", "epochs", "finished"),
    [
        ({"epochs_planned": 2, "epochs_done": 2}, None, True),
        ({"epochs_planned": 2, "epochs_done": 3}, None, True),  # a budget added epochs
        ({"epochs_planned": 2, "epochs_done": 1}, None, False),
        ({"epochs_planned": 2, "epochs_done": 2, "interrupted": True}, None, False),
        ({"epochs_planned": 2, "epochs_done": 2, "interrupted": False}, None, True),
        ({"epochs_planned": 2, "epochs_done": 1}, 1, False),  # the record's plan wins
        ({"epochs_done": 2}, 2, True),
        ({"epochs_done": 2}, 3, False),
        ({"epochs_done": 2}, None, False),  # no plan anywhere
        ({"epochs_planned": 1}, None, False),  # no epoch done
        ({}, 0, True),
    ],
)
def test_a_result_reads_as_finished_only_when_every_planned_epoch_ran(
    tmp_path: Path, result: dict, epochs: int | None, finished: bool
) -> None:
    """Catches an interrupted or short run read as finished, or a finished one as unfinished."""
    _finish(tmp_path, **result)
    got = RunFolder(tmp_path).finished_result(epochs)
    assert got == (result if finished else None)


def test_a_result_without_its_history_is_not_finished(tmp_path: Path) -> None:
    """Catches a lone result.json (or a lone history) read as a finished run."""
    folder = RunFolder(tmp_path)
    assert folder.finished_result(1) is None
    (tmp_path / "result.json").write_text(json.dumps({"epochs_done": 1}))
    assert folder.finished_result(1) is None
    (tmp_path / "result.json").unlink()
    (tmp_path / "history.csv").write_text("epoch\n1\n")
    assert folder.finished_result(1) is None


# ------------------------------------------------------------------------------ what it writes


def test_create_makes_the_folder_and_its_parents_once_or_again(tmp_path: Path) -> None:
    """Catches a new run's folder not created under missing parents, or refused when present."""
    folder = RunFolder(tmp_path / "a" / "b")
    assert folder.create() == tmp_path / "a" / "b" and folder.path.is_dir()
    assert folder.create() == tmp_path / "a" / "b"


def test_the_config_is_written_once_and_only_by_the_writer(tmp_path: Path) -> None:
    """Catches a resumed run rewriting config.json, or a non-writing rank writing it."""
    config = _config(tmp_path)
    RunFolder(tmp_path, writes=False).save_config(config)
    assert not (tmp_path / "config.json").exists()
    RunFolder(tmp_path).save_config(config)
    assert TrainConfig.load(tmp_path / "config.json") == config
    RunFolder(tmp_path).save_config(_config(tmp_path, seed=5))
    assert TrainConfig.load(tmp_path / "config.json") == config


def test_history_is_written_for_people_and_read_back_exactly(tmp_path: Path) -> None:
    """Catches history.csv with an index column, or history.json not read back as written."""
    rows = [{"epoch": 1, "valid_acc": 0.1 + 0.2, "note": "a"}]
    frame = RunFolder(tmp_path).write_history(rows)
    csv = "epoch,valid_acc,note\n1,0.30000000000000004,a\n"
    assert (tmp_path / "history.csv").read_text() == csv
    assert frame.to_dict("records") == rows
    assert RunFolder(tmp_path).read_history() == rows


def test_an_epoch_writes_its_history_last_pt_and_best_pt_on_a_new_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches best.pt written on a tie or a worse epoch (or not on a better one), last.pt
    missed, best.pt keeping the optimizer, the state taken from another trainer, and a
    non-writing rank writing."""
    saved: list[tuple[str, dict]] = []
    trainer = SimpleNamespace()

    def state(of: SimpleNamespace, history: list) -> dict:
        assert of is trainer
        return {"optimizer": 1, "e": len(history)}

    monkeypatch.setattr(run_folder, "checkpoint_state", state)
    monkeypatch.setattr(run_folder, "save_checkpoint", lambda p, s: saved.append((p.name, s)))
    RunFolder(tmp_path, writes=False).save_epoch(trainer, ROWS[:1])  # type: ignore[arg-type]
    assert saved == [] and not (tmp_path / "history.json").exists()
    folder = RunFolder(tmp_path)
    history = [{"epoch": 1, "valid_acc": 0.5}]
    folder.save_epoch(trainer, history)  # type: ignore[arg-type]
    assert saved == [("best.pt", {"e": 1}), ("last.pt", {"optimizer": 1, "e": 1})]
    assert folder.read_history() == history
    for acc, best in ((0.5, False), (0.25, False), (0.75, True)):
        saved.clear()
        history.append({"epoch": len(history) + 1, "valid_acc": acc})
        folder.save_epoch(trainer, history)  # type: ignore[arg-type]
        assert [name for name, _ in saved] == ["best.pt", "last.pt"][not best :], acc


def _trainer(**config) -> SimpleNamespace:
    return SimpleNamespace(
        config=SimpleNamespace(model="resnet50", init="imagenet", **config),
        init_valid_acc=0.25,
        init_weights={"file": "w.pth", "published": True},
        epochs=3,
        group=SimpleNamespace(world_size=2),
    )


@pytest.mark.parametrize("interrupted", [False, True])
def test_close_records_how_the_run_ended(tmp_path: Path, interrupted: bool) -> None:
    """Catches a field of result.json missing or wrong, last.pt dropped from an interrupted run
    (or kept by a finished one), and the result returned."""
    for name in ("last.pt", "best.pt", ".history.json.x1.tmp"):
        (tmp_path / name).write_bytes(b"x")
    got = RunFolder(tmp_path).close(_trainer(), ROWS, interrupted)  # type: ignore[arg-type]
    assert json.loads((tmp_path / "result.json").read_text()) == {
        "model": "resnet50",
        "init": "imagenet",
        "init_valid_acc": 0.25,
        "init_weights": {"file": "w.pth", "published": True},
        "best_epoch": 2,
        "best_valid_acc": 0.75,
        "epochs_done": 2,
        "epochs_planned": 3,
        "interrupted": interrupted,
        "world_size": 2,
    }
    left = sorted(p.name for p in tmp_path.iterdir())
    kept = [".history.json.x1.tmp", "best.pt", "last.pt"] if interrupted else ["best.pt"]
    assert left == sorted([*kept, "result.json"])
    assert isinstance(got, RunResult) and got.run_dir == tmp_path
    assert (got.best_epoch, got.best_valid_acc, got.interrupted) == (2, 0.75, interrupted)
    assert got.history.to_dict("records") == ROWS


def test_a_rank_that_does_not_write_closes_without_writing(tmp_path: Path) -> None:
    """Catches a non-writing rank writing result.json or removing last.pt."""
    (tmp_path / "last.pt").write_bytes(b"x")
    got = RunFolder(tmp_path, writes=False).close(_trainer(), ROWS, False)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert (got.best_epoch, got.best_valid_acc, got.interrupted) == (2, 0.75, False)


def test_result_reads_a_finished_run_back_and_tidies_it(tmp_path: Path) -> None:
    """Catches a leftover last.pt or temporary kept by the writer (removed by a reader), and
    the result read back."""
    RunFolder(tmp_path).write_history(ROWS)
    for name in ("last.pt", ".best.pt.x1.tmp", "best.pt"):
        (tmp_path / name).write_bytes(b"x")
    got = RunFolder(tmp_path, writes=False).result()
    assert (tmp_path / "last.pt").is_file() and (tmp_path / ".best.pt.x1.tmp").is_file()
    got = RunFolder(tmp_path).result()
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / ".best.pt.x1.tmp").exists()
    assert (tmp_path / "best.pt").is_file()
    assert got.run_dir == tmp_path and got.history.to_dict("records") == ROWS
    assert (got.best_epoch, got.best_valid_acc, got.interrupted) == (2, 0.75, False)


def test_an_unstarted_run_is_discarded_but_a_best_pt_is_kept(tmp_path: Path) -> None:
    """Catches a file of a run killed before its first checkpoint left behind, or a best.pt
    removed (plan refuses such a folder rather than deleting a checkpoint)."""
    names = ["config.json", "history.csv", "history.json", "last.pt", ".result.json.x1.tmp"]
    for name in [*names, "best.pt"]:
        (tmp_path / name).write_bytes(b"x")
    RunFolder(tmp_path).discard_unstarted()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
    RunFolder(tmp_path).discard_unstarted()  # nothing left to remove is fine
