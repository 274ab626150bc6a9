"""The recipe's targets, read from finished training runs: what `lab3 score` gives each depth's
submission, the majority-class baseline, the share of the most predicted class, normal-cell recall,
and the training cost per epoch.

    python benchmarks/recipe_results.py --data DATA --runs RUNS --name recipe_cpu_small \\
        --command "lab3 synth ...; lab3 train ..."

RUNS holds run folders: one per depth (resnet18/, resnet50/, resnet152/, as `lab3 run` leaves
them), or any number of `lab3 train --out` folders, e.g. one depth at several epochs and seeds;
each row names its folder, and the model and seed its config.json records. Each submission is
written with `predict_submission` in its own test CSV's order and scored against the data's
``test_labels.csv``, as `lab3 score` does. Writes ``benchmarks/results/<name>.{json,md}`` with
the provenance header; its command is the commands given, then this script's.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import pandas as pd

from lab3.bench.provenance import (
    EXECUTION,
    NOT_RECORDED,
    command_line,
    execution_summary,
    provenance,
    write_results,
)
from lab3.data.formats import TRUTH_CSV
from lab3.engine.evaluate import predict_submission
from lab3.submission import score, write_submission

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("resnet18", "resnet50", "resnet152")


def run_folders(runs: Path) -> list[Path]:
    """The finished runs under `runs` (those with a best.pt), shallow depths first."""
    folders = [p for p in runs.iterdir() if (p / "best.pt").is_file()]
    depth = {m: i for i, m in enumerate(MODELS)}
    return sorted(folders, key=lambda p: (depth.get(saved_config(p).get("model"), 99), p.name))


def saved_config(run: Path) -> dict:
    config = run / "config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def run_row(run: Path, data: Path, scratch: Path) -> dict:
    """`depth_row`, after the run folder's name and the seed it trained with."""
    config = saved_config(run)
    model = config.get("model", run.name)
    row = depth_row(run, data, model, scratch)
    return {"run": run.name, "seed": config.get("seed", NOT_RECORDED), **row}


def depth_row(
    run: Path, data: Path, model: str, scratch: Path, submission: Path | None = None
) -> dict:
    """One run's scored submission and training cost: `submission` where the run wrote one (a
    workbook's), else one predicted here from best.pt, in this machine's precision."""
    history = pd.read_csv(run / "history.csv")
    if submission is None:
        submission = write_submission(
            predict_submission(run / "best.pt", str(data), device="cpu"),
            scratch / f"{run.name}.csv",
        )
    metrics = score(submission, data / TRUTH_CSV)
    truth = pd.read_csv(data / TRUTH_CSV)["label"]
    predicted = pd.read_csv(submission)["label"]
    n = int(metrics["n"])
    accuracy = metrics["accuracy"]
    return {
        "model": model,
        "epochs": int(history["epoch"].max()),
        "median_epoch_s": round(float(history["seconds"].median()), 1),
        "best_valid_acc": round(float(history["valid_acc"].max()), 4),
        "test_acc_tta": round(accuracy, 4),
        "standard_error": round(math.sqrt(accuracy * (1 - accuracy) / n), 4),
        "normal_recall": round(metrics["specificity"], 4),
        "majority_class": round(float(truth.value_counts(normalize=True).max()), 4),
        "most_predicted_share": round(float(predicted.value_counts(normalize=True).max()), 4),
        "test_images": n,
    }


def markdown(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--runs", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--command", default="", help="the commands that produced the runs")
    parser.add_argument("--note", default="", help="a sentence on the conditions of the run")
    args = parser.parse_args(argv)
    folders = run_folders(args.runs)
    if not folders:
        parser.error(f"no finished run (a folder with best.pt) in {args.runs}")
    with tempfile.TemporaryDirectory() as scratch:
        rows = [run_row(run, args.data, Path(scratch)) for run in folders]
    execution = execution_summary({p.name: run_execution(p) for p in folders}, "run")
    command = "; ".join(filter(None, [args.command, command_line(__file__, argv)]))
    table = write(RESULTS / args.name, command, args.note, rows, execution)
    print(table)
    return 0


def run_execution(run: Path) -> dict:
    """bf16, torch.compile and channels_last as the run's config.json records them (its
    "execution", resolved on the machine that trained it); "not recorded" for runs from before
    that record."""
    recorded = saved_config(run).get("execution") or {}
    return {k: recorded.get(k, NOT_RECORDED + " (run predates the record)") for k in EXECUTION}


def write(stem: Path, command: str, note: str, rows: list[dict], execution: dict) -> str:
    """`stem`.json and .md with the provenance header (the command: the runs' commands, then
    this script's); returns the table."""
    table = markdown(rows)
    write_results(
        stem,
        provenance(command, "cpu", execution),
        {"note": note, "rows": rows},
        f"Recipe results: {stem.name}",
        (f"{note}\n\n" if note else "")
        + "test_acc_tta: the submission (best.pt, the profile's TTA views, the depth's own test "
        "CSV order) scored against test_labels.csv; normal_recall: recall of class 0; "
        "most_predicted_share: the share of the test images given the most frequent answer.\n\n"
        + table,
    )
    return table


if __name__ == "__main__":
    raise SystemExit(main())
