"""`lab3 bench` at tiny sizes on the CPU: the shape of its results, not its speed.

Speed belongs in the benchmark itself (benchmarks/results/bench_*.json); these tests catch a
results file that misses a comparison or a field, sides that did different amounts of work
(e.g. one dropping the last partial batch and the other not), and ratios that do not follow
from the rates they sit beside.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lab3.bench import BenchSettings, run_bench
from lab3.bench.timing import interleave
from lab3.cli import main
from lab3.errors import UserError

TINY = [
    "--device",
    "cpu",
    "--models",
    "resnet18",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--images",
    "20",
    "--rounds",
    "2",
    "--workers",
    "1",
    "--profile-steps",
    "1",
]
NAMES = ["data_pipeline", "model_step/resnet18", "epoch/resnet18", "usual_pipeline/resnet18"]


@pytest.fixture(scope="module")
def bench_run(small_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", "--data", str(small_synthetic), "--out", str(out), *TINY]) == 0
    return out


def test_bench_writes_every_comparison_with_its_provenance(bench_run: Path) -> None:
    document = json.loads(bench_run.read_text())
    assert {"device", "torch", "date", "command", "results"} <= set(document)
    assert (
        document["command"].startswith("lab3 bench ") and "--image-size 32" in document["command"]
    )
    assert [r["name"] for r in document["results"]] == NAMES
    for result in document["results"]:
        assert {"name", "ours", "reference", "ratio"} <= set(result)
        assert result["ours"] > 0 and result["reference"] > 0
        assert len(result["ours_rounds"]) == len(result["reference_rounds"]) == 2
    markdown = bench_run.with_suffix(".md").read_text()
    assert document["command"] in markdown and "usual_pipeline/resnet18" in markdown
    assert document["profile"]["resnet18"], "the lab3 epoch's top ops are recorded"


def test_both_sides_process_the_same_images(bench_run: Path) -> None:
    """20 training images in batches of 8: two full batches (16 images) a pass on each side."""
    document = json.loads(bench_run.read_text())
    assert document["settings"]["images_per_epoch"] == 16
    for result in document["results"]:
        assert result["ours_images"] == result["reference_images"] == 2 * 16, result["name"]


def test_each_ratio_is_ours_over_reference(bench_run: Path) -> None:
    for result in json.loads(bench_run.read_text())["results"]:
        assert result["ratio"] == pytest.approx(result["ours"] / result["reference"], rel=1e-3)


def test_interleave_rotates_the_order_of_the_sides() -> None:
    """Each round starts with a different side, so drift in machine speed hits all alike."""
    calls: list[str] = []

    def side(name: str):
        def run(batches: int | None) -> int:
            calls.append(name if batches is None else f"warm {name}")
            return 4

        return run

    timings = interleave({n: side(n) for n in "abc"}, rounds=3, device=torch.device("cpu"))
    assert calls == ["warm a", "warm b", "warm c", *"abc", *"bca", *"cab"]
    assert all(t.images == 12 and len(t.rates) == 3 for t in timings.values())


def test_bad_settings_are_one_clear_error(small_synthetic: Path) -> None:
    """Caught before any timing starts, not after the data pipeline has been measured."""
    with pytest.raises(UserError, match="unknown model 'resnet19'"):
        BenchSettings(models=("resnet18", "resnet19"))
    settings = BenchSettings(
        data=str(small_synthetic), device="cpu", models=("resnet18",), batch_size=64, images=10
    )
    with pytest.raises(UserError, match="fewer than one batch of 64"):
        run_bench(settings, "lab3 bench")
