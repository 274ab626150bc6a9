"""What precise BN is worth on checkpoints trained without it: validation accuracy of the same
weights with the BatchNorm running statistics training left behind, and after re-estimating them
over training images (train mode, no gradients, cumulative average), as `precise_bn` does.

    python benchmarks/bench_precise_bn.py --name precise_bn_cpu RUN/best.pt [RUN/best.pt ...]

Writes ``benchmarks/results/<name>.{json,md}`` with the provenance header.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from torch.optim.swa_utils import update_bn

from lab3.bench.provenance import (
    command_line,
    config_execution,
    execution_summary,
    provenance,
    write_results,
)
from lab3.engine.evaluate import LoadedCheckpoint

RESULTS = Path(__file__).resolve().parent / "results"


def measure(checkpoint: Path, images: int) -> tuple[dict, dict]:
    """Valid accuracy (one view) before and after re-estimating the BN statistics, and how the
    evaluations ran (bf16, channels_last; never compiled)."""
    loaded = LoadedCheckpoint.open(checkpoint, device="cpu")
    execution = {**config_execution(loaded.config), "compile": False}
    before = loaded.evaluate("valid", tta=1).metrics["accuracy"]
    loaded.data.config = dataclasses.replace(loaded.config, precise_bn=images)
    update_bn(loaded.data.statistics_loader(), loaded.model)
    loaded._predictions.clear()
    after = loaded.evaluate("valid", tta=1).metrics["accuracy"]
    history_epochs = len(loaded.state.get("history", []))
    return {
        "checkpoint": f"{checkpoint.parent.name}/{checkpoint.name}",
        "model": loaded.state["arch"],
        "train_images": int(len(loaded.data.rows("train"))),
        "epoch": int(loaded.state["epoch"]),
        "epochs_in_history": history_epochs,
        "valid_images": int(len(loaded.data.rows("valid"))),
        "valid_acc_running_stats": round(before, 4),
        "valid_acc_precise_bn": round(after, 4),
        "bn_images": images,
    }, execution


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--images", type=int, default=256, help="training images for the stats")
    parser.add_argument("--name", default="precise_bn_cpu")
    args = parser.parse_args(argv)
    measured = [measure(c, args.images) for c in args.checkpoints]
    rows = [row for row, _ in measured]
    execution = execution_summary({row["checkpoint"]: ex for row, ex in measured}, "checkpoint")
    table = write(RESULTS / args.name, command_line(__file__, argv), rows, execution)
    print(table)
    return 0


def markdown(rows: list[dict]) -> str:
    columns = list(rows[0])
    return "\n".join(
        ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        + ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    )


def write(stem: Path, command: str, rows: list[dict], execution: dict) -> str:
    """`stem`.json and .md with the provenance header; returns the table."""
    table = markdown(rows)
    write_results(
        stem,
        provenance(command, "cpu", execution),
        {"rows": rows},
        "Precise BN on checkpoints trained without it",
        "Validation accuracy, one view, of the same weights: with the running statistics "
        "training left, then with statistics re-estimated over the training images "
        "(bf16 and channels_last: the evaluations', as each checkpoint's settings resolve on "
        "this machine; the re-estimation itself runs in float32).\n\n" + table,
    )
    return table


if __name__ == "__main__":
    raise SystemExit(main())
