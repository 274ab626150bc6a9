"""The CPU shares `lab3 run` records per notebook: busy, and stolen by a shared VM's hypervisor."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lab3.workbook import cpu_time
from lab3.workbook import runner as workbook
from lab3.workbook.cpu_time import CpuTimes, weighted_share

# user nice system idle iowait irq softirq steal guest guest_nice, as Linux writes them
STAT = "cpu  {user} 0 {system} {idle} {iowait} 0 {softirq} {steal} 0 0\ncpu0 1 2 3 4\nintr 5\n"


def write_stat(path: Path, user=0, system=0, idle=0, iowait=0, softirq=0, steal=0) -> Path:
    path.write_text(
        STAT.format(
            user=user, system=system, idle=idle, iowait=iowait, softirq=softirq, steal=steal
        )
    )
    return path


def test_counters_are_read_by_kind(tmp_path: Path) -> None:
    stat = write_stat(tmp_path / "stat", user=70, system=20, idle=5, iowait=3, softirq=2, steal=9)
    assert CpuTimes.now(stat) == CpuTimes(busy=92, idle=8, steal=9)
    # an old kernel writes only user, nice, system and idle: the rest count as none
    (tmp_path / "old").write_text("cpu  5 1 3 2\n")
    assert CpuTimes.now(tmp_path / "old") == CpuTimes(busy=9, idle=2, steal=0)


def test_shares_between_two_readings(tmp_path: Path) -> None:
    before = CpuTimes.now(write_stat(tmp_path / "a", user=100, idle=100, steal=10))
    after = CpuTimes.now(write_stat(tmp_path / "b", user=250, idle=130, steal=30))
    # 150 busy, 30 idle, 20 stolen ticks out of 200
    assert after.shares_since(before) == {"cpu_busy": 0.75, "cpu_steal": 0.1}
    assert before.shares_since(before) is None  # no time passed
    thirds = CpuTimes(busy=1, idle=1, steal=1)
    assert thirds.shares_since(CpuTimes(0, 0, 0)) == {"cpu_busy": 0.333, "cpu_steal": 0.333}
    one_tick = CpuTimes(busy=1, idle=0, steal=0)
    assert one_tick.shares_since(CpuTimes(0, 0, 0)) == {"cpu_busy": 1.0, "cpu_steal": 0.0}


@pytest.mark.parametrize("text", ["", "intr 5 6\n", "cpu  1 x 3\n"])
def test_no_counters_where_the_file_is_missing_or_unreadable(tmp_path: Path, text: str) -> None:
    assert CpuTimes.now(tmp_path / "missing") is None
    (tmp_path / "stat").write_text(text)
    assert CpuTimes.now(tmp_path / "stat") is None


def test_weighted_share_weights_by_seconds_and_skips_unrecorded() -> None:
    entries = [
        {"seconds": 30.0, "cpu_steal": 0.4},
        {"seconds": 10.0, "cpu_steal": 0.0},
        {"seconds": 50.0},  # a notebook of a run recorded before the shares were
    ]
    assert weighted_share(entries, "cpu_steal") == 0.3
    assert (
        weighted_share([{"seconds": 1, "cpu_busy": 0}, {"seconds": 2, "cpu_busy": 0.5}], "cpu_busy")
        == 0.333
    )
    assert weighted_share(entries[2:], "cpu_steal") is None


def run_with_steal(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stolen: list[int]
) -> tuple[Path, list[str], list[str]]:
    """A workbook run whose notebooks (stubbed, 30 s each) lose stolen[i] of every 100 CPU
    ticks to the hypervisor (the last value for the rest); returns the run, its lines and the
    notebooks in order."""
    stat = write_stat(tmp_path / "stat")
    monkeypatch.setattr(cpu_time, "PROC_STAT", stat)
    ticks = {"user": 0, "steal": 0}
    calls: list[str] = []

    def fake_step(step, source, run, kernel, prefix, stream) -> float:
        lost = stolen[min(len(calls), len(stolen) - 1)]
        calls.append(step.output)
        ticks.update(user=ticks["user"] + 100 - lost, steal=ticks["steal"] + lost)
        write_stat(stat, **ticks)
        (run / "notebooks" / step.output).write_text("{}")
        return 30.0

    monkeypatch.setattr(workbook, "_execute_step", fake_step)
    monkeypatch.setattr(workbook, "_estimate", lambda record, outputs, stream: None)
    monkeypatch.setattr(workbook, "check_kernel", lambda kernel: None)
    stream = io.StringIO()
    run = workbook.run_workbook(data, "tiny", ["resnet18"], out=tmp_path / "run", stream=stream)
    return run, stream.getvalue().splitlines(), calls


def test_run_records_the_shares_and_names_a_stolen_cpu(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every notebook's shares land in workbook.json. One that waited 25 % of its time for the
    hypervisor gets a line saying so; those at 5 % do not, nor does the final line at 8 %."""
    run, lines, calls = run_with_steal(small_synthetic, tmp_path, monkeypatch, [25, 5])
    notebooks = json.loads((run / "workbook.json").read_text())["notebooks"]
    assert notebooks[0]["cpu_steal"] == 0.25 and notebooks[0]["cpu_busy"] == 0.75
    assert all(entry["cpu_steal"] == 0.05 for entry in notebooks[1:])
    stolen = [line for line in lines if "waited for the CPU" in line]
    assert stolen == [workbook.steal_line(calls[0], 0.25)]
    assert "25%" in stolen[0] and calls[0].removesuffix(".ipynb") in stolen[0]
    # (0.25 + 5 * 0.05) / 6 notebooks of 30 s each = 8 %: under the notice
    assert lines[-1].startswith("workbook: done") and "shared CPU" not in lines[-1]


def test_the_final_line_names_the_share_of_a_run_on_a_shared_cpu(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, lines, calls = run_with_steal(small_synthetic, tmp_path, monkeypatch, [20])
    assert sum("waited for the CPU 20%" in line for line in lines) == len(calls)
    assert "min of notebooks (20% of it waiting for a shared CPU)" in lines[-1]
