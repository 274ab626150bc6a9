"""The GPU check: what to run the first time a GPU machine is at hand (one H100: under 8 min).

Three phases, each timed, results written under benchmarks/results/ with the command and the
machine:

1. ``throughput``: training images/s of the engine's own step (`TrainStep`, through
   `lab3.bench.passes.EngineSide`) per depth at 224 px, batch 128, in bf16 and in fp16 with loss
   scaling (eager, so compile time does not hide in the figure) -> ``gpu_check.md``;
2. ``train``: one depth (ResNet18) with the full profile on a course-sized synthetic set
   (7,995 / 1,599 / 1,067 images) -> ``gpu_check_train.md`` (benchmarks/recipe_results.py);
3. ``workbook``: the quick workbook on the synthetic default, every notebook and the report
   -> ``gpu_check_workbook.md`` (benchmarks/workbook_results.py).

``--dry-run`` does the same at tiny sizes on the CPU in about a minute (the suite runs it), so
the script works the day a GPU is lent:

    python benchmarks/gpu_check.py                    # on the GPU machine
    python benchmarks/gpu_check.py --dry-run --results /tmp/check
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import recipe_results
import torch
import workbook_results

from lab3.bench.passes import EngineSide, staged_pass
from lab3.bench.provenance import command_line, config_execution, provenance, write_results
from lab3.bench.timing import synchronize, timed
from lab3.config import make_config
from lab3.data.synthetic import write_synthetic_dataset
from lab3.models import build_model

RESULTS = Path(__file__).resolve().parent / "results"
DEPTHS = ("resnet18", "resnet50", "resnet152")
PRECISIONS = ("bf16", "fp16")


@dataclass(frozen=True)
class Sizes:
    """How big each phase is: the real check, or the dry run's tiny version."""

    device: str
    image_size: int
    batch_size: int
    warmup_steps: int
    timed_steps: int
    course: tuple[int, int, int]  # train / valid / test images of the course-sized set
    train_flags: tuple[str, ...]  # `lab3 train` flags on top of --profile full
    workbook_flags: tuple[str, ...]  # `lab3 run` flags
    workbook_data: tuple[int, int, int] | None  # None: the synthetic default (lab3 synth)


REAL = Sizes("cuda", 224, 128, 10, 40, (7995, 1599, 1067), (), ("--profile", "quick"), None)
DRY = Sizes(
    "cpu", 32, 4, 1, 2, (48, 16, 12),
    ("--epochs", "1", "--min-steps", "0", "--image-size", "32", "--train-limit", "32",
     "--precise-bn", "0", "--tta", "1", "--batch-size", "16", "--device", "cpu"),
    ("--profile", "tiny", "--models", "resnet18"), (48, 16, 12),
)  # fmt: skip


def throughput(sizes: Sizes) -> list[dict[str, Any]]:
    """Training images/s of each depth in each precision, on batches already on the device."""
    device = torch.device(sizes.device)
    rows = []
    for model_name in DEPTHS:
        for precision in PRECISIONS:
            config = make_config(
                "full", model=model_name, device=sizes.device, amp=precision, compile="off",
                image_size=sizes.image_size, batch_size=sizes.batch_size,
            )  # fmt: skip
            side = EngineSide(build_model(model_name, num_classes=2), config, device)
            images = torch.randn(sizes.batch_size, 3, sizes.image_size, sizes.image_size)
            labels = torch.randint(0, 2, (sizes.batch_size,))
            staged = [(images.to(device), labels.to(device))]
            timed(staged_pass(staged, sizes.warmup_steps, side), device)
            seen, seconds = timed(staged_pass(staged, sizes.timed_steps, side), device)
            skipped = side.step.take_skipped()  # 0 without a scaler (bf16)
            rows.append({
                "model": model_name, "precision": precision,
                "images_per_s": round(seen / seconds, 1), "skipped_steps": skipped,
                **config_execution(config),
            })  # fmt: skip
            print(f"throughput {model_name} {precision}: {rows[-1]['images_per_s']} img/s")
            del side
            if device.type == "cuda":
                torch.cuda.empty_cache()
    synchronize(device)
    return rows


def lab3(*args: str) -> None:
    """A lab3 command in a child process, as a user runs it; its failure stops the check."""
    subprocess.run([sys.executable, "-m", "lab3", *args], check=True)


def train_phase(sizes: Sizes, scratch: Path, results: Path) -> None:
    data = scratch / "course"
    train, valid, test = sizes.course
    write_synthetic_dataset(data, train=train, valid=valid, test=test, progress=False)
    runs = scratch / "train_runs"
    flags = ["--model", "resnet18", "--profile", "full", "--data", str(data), *sizes.train_flags]
    lab3("train", *flags, "--out", str(runs / "resnet18"))
    recipe_results.RESULTS = results
    recipe_results.main([
        "--data", str(data), "--runs", str(runs), "--name", "gpu_check_train",
        "--command", f"lab3 train {' '.join(flags)}",
        "--note", f"ResNet18, full profile, course-sized synthetic set {train}/{valid}/{test}.",
    ])  # fmt: skip


def workbook_phase(sizes: Sizes, scratch: Path, results: Path) -> None:
    data = scratch / "default"
    if sizes.workbook_data is None:
        lab3("synth", "--out", str(data))
    else:
        train, valid, test = sizes.workbook_data
        write_synthetic_dataset(data, train=train, valid=valid, test=test, progress=False)
    run = scratch / "workbook"
    command = ["run", "--data", str(data), *sizes.workbook_flags, "--out", str(run)]
    lab3(*command)
    lab3("report", "--run", str(run))
    workbook_results.RESULTS = results
    workbook_results.main([
        "--run", str(run), "--name", "gpu_check_workbook",
        "--command", f"lab3 {' '.join(command)}",
    ])  # fmt: skip


def write_summary(
    rows: list[dict[str, Any]], seconds: dict[str, float], sizes: Sizes, results: Path
) -> Path:
    lines = [
        "| model | precision | training images/s | steps skipped (fp16) |",
        "|---|---|---:|---:|",
        *(f"| {r['model']} | {r['precision']} | {r['images_per_s']:.1f} | {r['skipped_steps']} |"
          for r in rows),
        "",
        "| phase | seconds |",
        "|---|---:|",
        *(f"| {name} | {value:.0f} |" for name, value in seconds.items()),
    ]  # fmt: skip
    body = (
        f"Throughput: the engine's training step at {sizes.image_size} px, batch "
        f"{sizes.batch_size}, eager, {sizes.timed_steps} timed steps after "
        f"{sizes.warmup_steps} warm-up steps, batches already on the device.\n\n"
        + "\n".join(lines)
        + "\n\nTraining: gpu_check_train.md; the quick workbook: gpu_check_workbook.md.\n"
    )
    header = provenance(command_line(__file__), sizes.device, {"bf16": "per row"})
    json_path, md_path = write_results(
        results / "gpu_check", header, {"throughput": rows, "seconds": seconds},
        "GPU check", body,
    )  # fmt: skip
    return md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--phases", default="throughput,train,workbook", help="a comma list of the phases to run"
    )
    args = parser.parse_args(argv)
    sizes = DRY if args.dry_run else REAL
    if sizes.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible; run it on the GPU machine, or --dry-run here")
    phases = args.phases.split(",")
    args.results.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lab3-gpu-check-") as scratch:
        for phase in phases:
            started = time.perf_counter()
            if phase == "throughput":
                rows = throughput(sizes)
            elif phase == "train":
                train_phase(sizes, Path(scratch), args.results)
            elif phase == "workbook":
                workbook_phase(sizes, Path(scratch), args.results)
            else:
                parser.error(f"unknown phase {phase!r}; choose from throughput, train, workbook")
            seconds[phase] = time.perf_counter() - started
    summary = write_summary(rows, seconds, sizes, args.results)
    print(f"GPU check: {sum(seconds.values()) / 60:.1f} min; {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
