"""benchmarks/gpu_check.py's dry run: the GPU check works end to end before a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_checks_dry_run_writes_every_results_file(tmp_path: Path) -> None:
    """Catches a GPU check that breaks before its first phase on the day a GPU machine is
    lent: every phase runs at tiny sizes on the CPU and writes its results with provenance."""
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
         "--results", str(results)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((results / "gpu_check.json").read_text())
    rows = summary["throughput"]
    assert [(r["model"], r["precision"]) for r in rows] == [
        (m, p) for m in ("resnet18", "resnet50", "resnet152") for p in ("bf16", "fp16")
    ]
    assert all(r["images_per_s"] > 0 and r["skipped_steps"] >= 0 for r in rows)
    assert [r["bf16"] for r in rows] == [True, False] * 3  # fp16 rows ran in fp16, not bf16
    assert set(summary["seconds"]) == {"throughput", "train", "workbook"}
    assert "gpu_check.py --dry-run" in summary["provenance"]["command"]
    train = json.loads((results / "gpu_check_train.json").read_text())
    assert [r["model"] for r in train["rows"]] == ["resnet18"]
    assert "--profile full" in train["provenance"]["command"]
    workbook = json.loads((results / "gpu_check_workbook.json").read_text())
    assert [d["model"] for d in workbook["depths"]] == ["resnet18"]
    assert (results / "gpu_check.md").read_text().startswith("# GPU check")
