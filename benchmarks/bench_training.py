"""Train each depth end to end and report how fast and how well: the numbers a user asks first.

    python benchmarks/bench_training.py --synth 8000,1600,1067 --profile full --device cuda
    python benchmarks/bench_training.py --data data/synthetic --profile quick

The image cache is built once, before any model is timed (its time is reported on its own as
``cache_seconds``), so every model's times cover the same work: ``epoch_seconds`` is the sum of
its epochs (training and evaluation), ``first_epoch_seconds`` includes torch.compile, and
``wall_seconds`` adds opening the cache and building the model.

Prints a markdown table (per model: epochs, times, training images/s, best valid accuracy,
test accuracy with TTA, the first epoch reaching the target) and writes
``benchmarks/results/training_<device>_<profile>.{json,md}`` with the provenance header (command,
date, commit, device, versions, bf16/compile/channels_last as the models ran).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lab3.bench.provenance import (
    command_line,
    config_execution,
    execution_summary,
    provenance,
    write_results,
)
from lab3.config import TrainConfig, make_config
from lab3.data.synthetic import write_synthetic_dataset
from lab3.engine.data import prepare_data
from lab3.engine.evaluate import evaluate_checkpoint
from lab3.engine.loop import fit

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="an existing dataset folder")
    source.add_argument("--synth", help="generate a synthetic set first: TRAIN,VALID,TEST")
    parser.add_argument("--models", default="resnet18,resnet50,resnet152")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--epochs", type=int, help="override the profile's epochs")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--target", type=float, default=0.90, help="valid accuracy to time")
    parser.add_argument("--work", help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="lab3-bench-"))
    rows = []
    setup: dict[str, float] = {}
    executions: dict[str, dict] = {}  # bf16, compile, channels_last per model
    data = Path(args.data) if args.data else work / "synthetic"
    if args.synth:
        train, valid, test = (int(v) for v in args.synth.split(","))
        started = time.perf_counter()
        write_synthetic_dataset(data, train=train, valid=valid, test=test, progress=False)
        setup["synth_seconds"] = round(time.perf_counter() - started, 1)
    for model in args.models.split(","):
        config = make_config(
            args.profile,
            model=model,
            data=str(data),
            out=str(work / "runs" / model),
            epochs=args.epochs,
            image_size=args.image_size,
            device=args.device,
        )
        if "cache_seconds" not in setup:
            setup["cache_seconds"] = build_cache(config)
        executions[model] = config_execution(config)
        started = time.perf_counter()
        result = fit(config, progress=False)
        wall = time.perf_counter() - started
        history = result.history
        steady = history["images_per_s"].iloc[1:] if len(history) > 1 else history["images_per_s"]
        reached = history.index[history["valid_acc"] >= args.target]
        row = {
            "model": model,
            "epochs": int(len(history)),
            "image_size": config.image_size,
            "batch_size": config.batch_size,
            "wall_seconds": round(wall, 1),
            "epoch_seconds": round(float(history["seconds"].sum()), 1),
            "first_epoch_seconds": round(float(history["seconds"].iloc[0]), 1),
            "train_images_per_s": round(float(steady.median()), 1),
            "best_valid_acc": round(result.best_valid_acc, 4),
            "best_epoch": result.best_epoch,
            f"first_epoch_valid_ge_{args.target:g}": int(history["epoch"][reached[0]])
            if len(reached)
            else None,
        }
        evaluation = (
            evaluate_checkpoint(
                result.run_dir / "best.pt", split="test", tta=config.tta, device=args.device
            )
            if "test_acc" in history
            else None
        )
        if evaluation is not None:
            row["test_acc_tta"] = round(evaluation.metrics["accuracy"], 4)
            row["test_weighted_f1"] = round(evaluation.metrics["weighted_f1"], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)

    device = torch.device(
        "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    )
    meta = {
        "profile": args.profile,
        "data": "synthetic " + args.synth if args.synth else str(args.data),
        **setup,
    }
    print(markdown_table(rows))
    header = provenance(
        command_line(__file__, argv), device.type, execution_summary(executions, "model")
    )
    write(args.results / f"training_{device.type}_{args.profile}", header, meta, rows)
    return 0


def write(stem: Path, header: dict[str, str], meta: dict, rows: list[dict]) -> tuple[Path, Path]:
    """`stem`.json and .md: the provenance header, the run's settings, then the table."""
    settings = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    body = f"{settings}\n\n{markdown_table(rows)}"
    return write_results(stem, header, {"meta": meta, "rows": rows}, "Training benchmark", body)


def build_cache(config: TrainConfig) -> float:
    """Decode the images into the cache every model then reuses; its seconds, timed apart."""
    started = time.perf_counter()
    prepare_data(config, progress=False)
    return round(time.perf_counter() - started, 1)


def markdown_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
