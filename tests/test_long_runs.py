"""Long runs: live progress from `lab3 run`, `--resume` after a SIGKILL, `lab3 demo`, lean run
folders, a fast failure on a bad data folder, and no `latest` link beside a folder the user named.

One tiny two-depth workbook run is started as a user starts it, its output read line by line;
the kernel training ResNet50 SIGKILLs itself after its checkpoint while the test SIGKILLs
`lab3 run` too; `lab3 run --resume` then finishes it. The tests below inspect that story; an
in-process fit of the killed depth is the uninterrupted reference.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
from faults import KILL_HOOK, fault_env

from lab3.cli import main
from lab3.config import make_config
from lab3.engine.checkpoint import read_checkpoint
from lab3.engine.evaluate import LoadedCheckpoint
from lab3.engine.loop import format_row
from lab3.engine.resume import fit_or_resume
from lab3.formatting import pct
from lab3.submission import score
from lab3.workbook import runner as workbook
from lab3.workbook.notebook_exec import NotebookProgress

MODELS = ["resnet18", "resnet50"]
KILLED = "resnet50"
FINISHED_BEFORE_KILL = [
    "01_data_exploration.ipynb",
    "02_preprocessing_experiments.ipynb",
    "03_resnet_definitions.ipynb",
    "04_train_resnet18.ipynb",
]
TIMEOUT_S = 900


@dataclass
class Story:
    run: Path
    lines: list[tuple[str, list[str]]]  # each line printed, with the notebooks finished by then
    killed_files: set[str]  # runs/resnet50/ right after the kill
    record_at_kill: dict
    kept: dict[str, tuple[str, int]]  # notebooks finished before the kill: hash, mtime
    resumed: subprocess.CompletedProcess
    reference: pd.DataFrame  # the killed depth's submission from an uninterrupted fit


def _finished_notebooks(run: Path) -> list[str]:
    try:
        record = json.loads((run / workbook.RECORD).read_text())
    except (OSError, ValueError):
        return []
    return [entry["notebook"] for entry in record.get("notebooks", [])]


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file below `folder` with its content hash and modification time."""
    return {
        str(p.relative_to(folder)): _fingerprint(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _lab3(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lab3", *args],
        env={**os.environ, **(env or {})},
        text=True,
        start_new_session=True,  # its own process group, killed as one
        **kwargs,
    )


def _run_until_checkpoint(data: Path, run: Path, log: Path) -> list[tuple[str, list[str]]]:
    """Start `lab3 run`, echo its lines into a list as they arrive, and SIGKILL it (with its
    kernel, which kills itself by the hook) once the killed depth has written last.pt."""
    lines: list[tuple[str, list[str]]] = []
    with open(log, "w") as stderr:
        proc = _lab3(
            "run", "--data", str(data), "--profile", "tiny", "--models", ",".join(MODELS),
            "--out", str(run),
            env=fault_env(KILL_HOOK, f"{KILLED}:1"), stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append((line.rstrip("\n"), _finished_notebooks(run)))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        checkpoint = run / "runs" / KILLED / "last.pt"
        deadline = time.monotonic() + TIMEOUT_S
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert checkpoint.exists(), f"no {checkpoint}: {log.read_text()[-2000:]}"
        kernels = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        psutil.wait_procs(kernels, timeout=30)  # the kernel is gone before anything resumes
        reader.join(timeout=30)
    return lines


@pytest.fixture(scope="module")
def story(small_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Story:
    base = tmp_path_factory.mktemp("long")
    run = base / "runs" / "killed"
    lines = _run_until_checkpoint(small_synthetic, run, base / "stderr.log")
    killed_files = {p.name for p in (run / "runs" / KILLED).iterdir()}
    record_at_kill = json.loads((run / workbook.RECORD).read_text())
    kept = {name: _fingerprint(run / "notebooks" / name) for name in FINISHED_BEFORE_KILL}

    resumed = subprocess.run(
        [sys.executable, "-m", "lab3", "run", "--resume", str(run)],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip

    # Notebook 04's own settings for the killed depth, trained without interruption.
    config = make_config("tiny", model=KILLED, data=str(small_synthetic.resolve()),
                         out=str(base / "reference"), device="auto")  # fmt: skip
    fit_or_resume(config, progress=False)
    reference = LoadedCheckpoint.open(base / "reference" / "best.pt").submission(tta=config.tta)
    return Story(run, lines, killed_files, record_at_kill, kept, resumed, reference)


# ------------------------------------------------------------------------- live progress


def test_epoch_lines_reach_the_terminal_while_the_notebook_runs(story: Story) -> None:
    """Catches progress shown only when a notebook ends (or only on a terminal), and
    carriage-return redraws in what a log file receives."""
    texts = [text for text, _ in story.lines]
    assert not [t for t in texts if "\r" in t or "\x1b" in t]
    start = next(i for i, t in enumerate(texts) if t.startswith("[4/6] 04_train_resnet18.ipynb"))
    epoch = next(i for i in range(start, len(texts)) if "resnet18 epoch 1/1" in texts[i])
    line, finished = story.lines[epoch]
    assert "04_train_resnet18.ipynb" not in finished, "the epoch line came after the notebook"
    assert line.startswith(NotebookProgress.INDENT)
    for part in ("train loss", "valid loss", "acc", "img/s", "done"):
        assert part in line, part
    end = next(i for i in range(epoch, len(texts)) if texts[i].startswith("[4/6] 04_train"))
    assert texts[end].endswith(" ok"), texts[end]


def test_format_row_gives_the_time_left_for_the_depth() -> None:
    """Catches an ETA from the last epoch alone or from the wrong number of epochs left."""
    metrics = {"train_loss": 0.5, "train_acc": 0.8, "valid_loss": 0.6, "valid_acc": 0.7}
    rows = [
        {"epoch": e, **metrics, "lr": 0.01, "seconds": s, "images_per_s": 120.0}
        for e, s in ((1, 10.0), (2, 50.0))
    ]
    assert format_row("resnet50", 5, rows[1], rows).endswith("120 img/s  ETA 1m30s")
    assert format_row("resnet50", 2, rows[1], rows).endswith("  done")


def test_notebook_progress_echoes_whole_lines_without_redraws() -> None:
    """Catches partial lines echoed early, progress-bar redraws and colour codes in a log."""
    out = io.StringIO()
    progress = NotebookProgress("[2/6] 02.ipynb", out)
    progress.write("variant 1: 10%\r\x1b[32mvariant 1: 100%\x1b[0m\nresnet18 epo")
    assert out.getvalue() == "[2/6] 02.ipynb\n      variant 1: 100%\n"
    progress.write("ch 1/4\n\n")
    progress.end("  3.0 s  ok")
    assert out.getvalue().splitlines()[2:] == [
        "      resnet18 epoch 1/4",
        "[2/6] 02.ipynb    3.0 s  ok",
    ]
    for echo, printed in ((True, ""), (False, "BasicBlock(\n)\n")):
        quiet = io.StringIO()
        progress = NotebookProgress("[3/6] 03.ipynb", quiet, echo=echo)
        progress.write(printed)
        progress.end("  1.0 s  ok")
        assert quiet.getvalue() == "[3/6] 03.ipynb    1.0 s  ok\n"


# ------------------------------------------------------------------------- resume


def test_a_killed_run_resumes_keeping_finished_notebooks(story: Story) -> None:
    """Catches a record written only at the end (nothing to resume after SIGKILL), finished
    notebooks executed again, and a resumed depth that trains an epoch twice or differs from an
    uninterrupted run."""
    assert [e["notebook"] for e in story.record_at_kill["notebooks"]] == FINISHED_BEFORE_KILL
    assert "finished" not in story.record_at_kill
    assert "last.pt" in story.killed_files and "result.json" not in story.killed_files

    assert story.resumed.returncode == 0, story.resumed.stderr
    out = story.resumed.stdout
    assert out.count("finished earlier, kept") == len(FINISHED_BEFORE_KILL)
    assert "[5/6] 04_train_resnet50.ipynb" in out and "[6/6] 05_evaluation_and_report" in out
    for name, before in story.kept.items():
        assert _fingerprint(story.run / "notebooks" / name) == before, f"{name} was re-executed"
    record = json.loads((story.run / workbook.RECORD).read_text())
    plan = workbook.plan(story.run, story.run, "tiny", MODELS)
    assert [e["notebook"] for e in record["notebooks"]] == [s.output for s in plan]
    assert "finished" in record and len(record["resumed"]) == 1 and "failed" not in record

    history = pd.read_csv(story.run / "runs" / KILLED / "history.csv")
    assert history["epoch"].tolist() == [1]
    submission = pd.read_csv(story.run / "submissions" / f"{KILLED}.csv", dtype={"ID": str})
    pd.testing.assert_frame_equal(submission, story.reference.astype(submission.dtypes))


def test_resuming_a_finished_run_says_so_and_changes_nothing(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches a finished run executed again, or refused with an error."""
    before = _snapshot(story.run)
    assert main(["run", "--resume", str(story.run)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert _snapshot(story.run) == before


def test_resume_keeps_the_runs_own_settings(
    story: Story, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches --resume silently mixing new settings into an old run, and a folder that is not
    a run ending in a traceback."""
    assert main(["run", "--resume", str(story.run), "--profile", "quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert "drop --profile" in err and "\n" not in err
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no workbook.json" in err and "\n" not in err


# ------------------------------------------------------------------------- demo, lean folders


def test_demo_prints_every_depth_and_writes_nothing(
    story: Story, small_synthetic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches a depth left out, a test accuracy that is not the submission's, and a demo that
    writes into the run (a figure, a cache, a rewritten checkpoint)."""
    before = _snapshot(story.run)
    assert main(["demo", "--run", str(story.run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert _snapshot(story.run) == before
    header = next(line for line in out.splitlines() if "valid acc" in line).split()
    # valid in one view beside the labelled test split, which averages the profile's 2
    assert " ".join(header[-8:]) == "valid acc valid views test acc test views"
    for model in MODELS:
        row = next(line for line in out.splitlines() if line.startswith(f"ResNet{model[6:]} "))
        truth = small_synthetic / "test_labels.csv"
        accuracy = score(story.run / "submissions" / f"{model}.csv", truth)["accuracy"]
        assert f"runs/{model}/best.pt" in row
        assert re.search(rf"\s1\s+{re.escape(pct(accuracy))}\s+2$", row), row


def test_a_finished_run_holds_no_optimizer_state(story: Story) -> None:
    """Catches last.pt (weights plus the optimizer's moments) kept after a depth or an ablation
    run finished, and optimizer state inside best.pt."""
    checkpoints = sorted(story.run.rglob("*.pt"))
    folders = {p.parent.relative_to(story.run).as_posix() for p in checkpoints}
    assert {"runs/resnet18", "runs/resnet50"} <= folders and len(folders) >= 5  # + ablation
    assert [p.name for p in checkpoints] == ["best.pt"] * len(checkpoints)
    for path in checkpoints:
        assert "optimizer" not in read_checkpoint(path), path
    assert not list(story.run.rglob(".*.tmp"))


def test_no_latest_link_beside_a_custom_out(story: Story) -> None:
    """Catches `latest` written into the parent of a folder the user named with --out."""
    assert [p.name for p in story.run.parent.iterdir()] == [story.run.name]


def test_only_runs_in_outputs_move_outputs_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches `latest` maintained anywhere but outputs/."""
    monkeypatch.chdir(tmp_path)
    inside = workbook.new_run_folder(None)
    assert workbook.point_latest(inside) == tmp_path / "outputs" / "latest"
    elsewhere = workbook.new_run_folder(tmp_path / "mine" / "run")
    assert workbook.point_latest(elsewhere) is None
    assert os.listdir(tmp_path / "mine") == ["run"]


# ------------------------------------------------------------------------- bad data, fit_or_resume


def test_a_bad_data_folder_fails_before_any_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches a stray C-NMC-looking file deep in an unrelated tree taken for a dataset (the run
    then failed in notebook 01), and a run folder left behind by a refused run."""
    stray = tmp_path / "tmp" / "pytest-of-u" / "pytest-1" / "cnmc0" / "UID_1_1_1_all.bmp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--data", str(tmp_path / "tmp"), "--profile", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab3 run: error:") and "no known dataset layout" in err
    assert "\n" not in err
    assert not (tmp_path / "outputs").exists()
    assert main(["run", "--data", str(tmp_path / "tmp"), "--out", str(tmp_path / "mine")]) == 2
    assert not (tmp_path / "mine").exists()


def test_fit_or_resume_restarts_a_run_killed_before_its_first_checkpoint(
    small_synthetic: Path, tmp_path: Path
) -> None:
    """Catches a run folder that can never be re-run after a kill in its first epoch (it held
    only config.json and a half-written last.pt, and fit refused the non-empty folder)."""
    config = make_config("tiny", model="resnet18", data=str(small_synthetic),
                         out=str(tmp_path / "r"), train_limit=32, device="cpu")  # fmt: skip
    (tmp_path / "r").mkdir()
    config.save(tmp_path / "r" / "config.json")
    (tmp_path / "r" / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    result = fit_or_resume(config, progress=False)
    assert result.history["epoch"].tolist() == [1]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "best.pt", "config.json", "history.csv", "history.json", "result.json",
    ]  # fmt: skip


def test_fit_or_resume_tidies_a_run_killed_while_closing(
    small_synthetic: Path, tmp_path: Path
) -> None:
    """Catches a finished run trained again (or its last.pt kept) when the kill came between
    result.json and the removal of last.pt."""
    config = make_config("tiny", model="resnet18", data=str(small_synthetic),
                         out=str(tmp_path / "r"), train_limit=32, device="cpu")  # fmt: skip
    fit_or_resume(config, progress=False)
    best = tmp_path / "r" / "best.pt"
    (tmp_path / "r" / "last.pt").write_bytes(best.read_bytes())
    stamp = best.stat().st_mtime_ns
    assert fit_or_resume(config, progress=False).history["epoch"].tolist() == [1]
    assert best.stat().st_mtime_ns == stamp and not (tmp_path / "r" / "last.pt").exists()
