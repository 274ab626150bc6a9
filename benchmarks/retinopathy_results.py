"""The retinopathy edition's targets, read from a finished workbook run: each depth's accuracy
on the labelled test split against the majority grade, quadratic-weighted kappa, balanced
accuracy, its 5x5 confusion matrix, and the training cost per epoch.

    python benchmarks/retinopathy_results.py --run RUN --name retinopathy_quick_cpu \\
        --command "lab3 synth --kind retinopathy; lab3 run --data data/retinopathy --profile quick"

Each depth's best.pt is evaluated as notebook 05 evaluates it
(`lab3.workbook.results.evaluate_runs`, the run's TTA). Writes
``benchmarks/results/<name>.{json,md}`` with the commands given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lab3.bench.provenance import provenance, write_results
from lab3.metrics import standard_error
from lab3.workbook.folders import read_record
from lab3.workbook.results import evaluate_runs

RESULTS = Path(__file__).resolve().parent / "results"


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which the project does not install)."""
    head = [str(frame.index.name or ""), *map(str, frame.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for index, row in frame.astype(object).iterrows():  # ints stay ints
        lines.append("| " + " | ".join([str(index), *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished `lab3 run` folder")
    parser.add_argument("--name", required=True, help="results file name, without extension")
    parser.add_argument("--command", required=True, help="the commands that made the run")
    args = parser.parse_args()
    run = Path(args.run)
    record = read_record(run)
    evaluated = evaluate_runs(run, record["models"], record["data"], device="cpu")
    rows, confusions = [], {}
    for model, result in evaluated.items():
        test = result.evaluations["test"]
        labels = test.predictions.labels
        majority = float(np.bincount(labels).max() / len(labels))
        history = result.history
        rows.append(
            {
                "model": model,
                "test_acc": round(test.metrics["accuracy"], 4),
                "majority_grade_share": round(majority, 4),
                "two_standard_errors": round(2 * standard_error(majority, len(labels)), 4),
                "kappa_quadratic": round(test.metrics["kappa_quadratic"], 4),
                "balanced_acc": round(test.metrics["balanced_accuracy"], 4),
                "best_valid_acc": round(float(history["valid_acc"].max()), 4),
                "epochs": len(history),
                "median_epoch_s": round(float(history["seconds"].median()), 1),
                "test_images": len(labels),
                "tta_views": int(test.metrics["tta_views"]),
            }
        )
        confusions[model] = test.confusion.tolist()
    document = {
        "profile": record["profile"],
        "notebook_minutes": round(record.get("seconds", float("nan")) / 60, 1),
        "results": rows,
        "confusion_test": confusions,
    }
    config = json.loads((run / "runs" / record["models"][0] / "config.json").read_text())
    header = provenance(args.command, "cpu", config.get("execution"))
    table = markdown(pd.DataFrame(rows).set_index("model"))
    matrices = "\n\n".join(
        f"{model} (rows: true grade 0-4, columns: predicted):\n\n"
        + markdown(pd.DataFrame(cm).rename_axis("true"))
        for model, cm in confusions.items()
    )
    body = (
        f"{record['profile']} profile, {document['notebook_minutes']} min of notebooks\n\n"
        f"{table}\n\nConfusion matrices on the test split:\n\n{matrices}\n"
    )
    write_results(RESULTS / args.name, header, document, args.name, body)
    print(table)


if __name__ == "__main__":
    main()
