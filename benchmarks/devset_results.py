"""The recipe on real cells: finished runs on the lymphocytes development set (or any labelled
course-layout set) against the classical-features baseline, paired on the same images.

    LAB3_DEVSET=<the lymphocytes development set> \\
    python benchmarks/devset_results.py --name devset_cpu_fp32 \\
        --reference r18_none_48 RUN [RUN ...] --command "lab3 train ..."

Each RUN is a run folder with a best.pt (`lab3 train --out`, or a workbook's `runs/<model>`).
Each is evaluated on valid and test with its config's TTA views, as the report does; each row
gives accuracy and balanced accuracy, the paired lead in balanced accuracy over the baseline
(`lab3.workbook.classical`, fitted on train) with its 95 % interval, and, against the
`--reference` run, the paired difference in test accuracy. The data folder is read from
`--data` or `$LAB3_DEVSET` and never named in the results file (it lives outside the
repository); run folders are named by their folder name. Writes
``benchmarks/results/<name>.{json,md}`` with the provenance header.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path

import pandas as pd

from lab3.bench.provenance import (
    EXECUTION,
    NOT_RECORDED,
    execution_summary,
    provenance,
    write_results,
)
from lab3.engine.evaluate import LoadedCheckpoint, Predictions
from lab3.metrics import paired_difference
from lab3.workbook.classical import DESCRIPTION, ClassicalBaseline, fit_classical, paired_lead

RESULTS = Path(__file__).resolve().parent / "results"
SPLITS = ("valid", "test")


def interval(lead: tuple[float, float, float]) -> str:
    mean, lo, hi = (100 * v for v in lead)
    return f"{mean:+.1f} ({lo:+.1f} to {hi:+.1f})"


def evaluate(run: Path, data: Path) -> tuple[dict, dict[str, Predictions]]:
    """One run's settings, cost and metrics on both splits, and its predictions."""
    start = time.perf_counter()
    loaded = LoadedCheckpoint.open(run / "best.pt", data=str(data), device="cpu")
    evaluations = {s: loaded.evaluate(s) for s in SPLITS}
    history = pd.read_csv(run / "history.csv")
    config = loaded.config
    row = {
        "run": run.name,
        "model": config.model,
        "preprocess": config.preprocess,
        "size": config.image_size,
        "epochs": int(history["epoch"].max()),
        "train_min": round(float(history["seconds"].sum()) / 60, 1),
        "tta": config.tta,
        "eval_s": round(time.perf_counter() - start, 1),
    }
    for split, evaluation in evaluations.items():
        row[f"{split}_acc"] = round(evaluation.metrics["accuracy"], 4)
        row[f"{split}_bal"] = round(evaluation.metrics["balanced_accuracy"], 4)
    return row, {s: e.predictions for s, e in evaluations.items()}


def compare(
    rows: list[dict],
    predictions: dict[str, dict[str, Predictions]],
    baseline: ClassicalBaseline,
    reference: str | None,
) -> None:
    """Add each run's paired leads over the baseline (balanced) and the reference (accuracy)."""
    for row in rows:
        mine = predictions[row["run"]]
        for split in SPLITS:
            row[f"{split}_bal_vs_classical"] = interval(
                paired_lead(mine[split], baseline.predictions[split])
            )
        if reference is not None and reference in predictions and reference != row["run"]:
            other = predictions[reference]["test"]
            same = (mine["test"].rows == other.rows).all()
            row["test_acc_vs_reference"] = (
                interval(
                    paired_difference(
                        mine["test"].predicted == mine["test"].labels,
                        other.predicted == other.labels,
                    )
                )
                if same
                else "not the same images"
            )


def baseline_row(baseline: ClassicalBaseline) -> dict:
    row: dict = {"run": "classical features", "model": "logistic regression"}
    for split in SPLITS:
        row[f"{split}_acc"] = round(baseline.metrics[split]["accuracy"], 4)
        row[f"{split}_bal"] = round(baseline.metrics[split]["balanced_accuracy"], 4)
    row["fit_s"] = round(baseline.seconds, 1)
    return row


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def run_execution(run: Path) -> dict:
    recorded = json.loads((run / "config.json").read_text()).get("execution") or {}
    return {k: recorded.get(k, NOT_RECORDED) for k in EXECUTION}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding best.pt")
    parser.add_argument("--data", type=Path, default=os.environ.get("LAB3_DEVSET"))
    parser.add_argument("--name", required=True)
    parser.add_argument("--reference", help="the run (folder name) others are paired against")
    parser.add_argument("--command", default="", help="the commands that produced the runs")
    parser.add_argument("--note", default="", help="the conditions of the runs, in words")
    args = parser.parse_args(argv)
    if args.data is None or not (args.data / "test_labels.csv").is_file():
        parser.error("pass --data or set LAB3_DEVSET to a course-layout folder with test labels")
    missing = [str(r) for r in args.runs if not (r / "best.pt").is_file()]
    if missing:
        parser.error(f"no best.pt in {', '.join(missing)}; pass finished run folders")
    baseline = fit_classical(str(args.data), "stratified", 0, SPLITS)
    rows, predictions = [], {}
    for run in args.runs:
        row, predictions[run.name] = evaluate(run, args.data)
        rows.append(row)
    compare(rows, predictions, baseline, args.reference)
    rows.append(baseline_row(baseline))
    names = " ".join(shlex.quote(r.name) for r in args.runs)
    reference = f" --reference {args.reference}" if args.reference else ""
    script = f"python benchmarks/devset_results.py --name {args.name}{reference} {names}"
    command = "; ".join(filter(None, [args.command, script]))
    execution = execution_summary({r.name: run_execution(r) for r in args.runs}, "run")
    table = markdown(rows)
    body = (f"{args.note}\n\n" if args.note else "") + (
        "Data: the lymphocytes development set (230 valid, 230 test images, patient-disjoint). "
        f"Classical features: {DESCRIPTION}. *_acc, *_bal: accuracy and balanced accuracy of "
        "best.pt with the config's TTA views; *_bal_vs_classical: the run's balanced accuracy "
        "minus the baseline's on the same images, in points, with its paired 95 % interval; "
        "test_acc_vs_reference: test accuracy minus the reference run's, paired.\n\n" + table
    )
    write_results(
        RESULTS / args.name,
        provenance(command, "cpu", execution),
        {"note": args.note, "rows": rows},
        f"Development set: {args.name}",
        body,
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
