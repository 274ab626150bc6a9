"""A finished workbook run as a results file: the time of each notebook against the estimate
`lab3 run` printed before it, the ablation, and each depth's scored submission.

    python benchmarks/workbook_results.py --run outputs/latest --name workbook_cpu_bf16 \\
        --command "make run" --note "fresh clone, quiet machine"

Reads the run's workbook.json (notebook seconds, the estimates), runs/<model>/ (history,
best.pt, config.json with the machine's choices) and ablation/ablation.csv; the data folder is
the one the run recorded. Writes ``benchmarks/results/<name>.{json,md}`` with its provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_results import depth_row, markdown  # noqa: E402

from lab3.bench.provenance import provenance, write_results  # noqa: E402
from lab3.workbook.cpu_time import weighted_share  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def notebook_rows(record: dict) -> list[dict]:
    """Each notebook's seconds, and what the first estimate of the run said it would take."""
    estimate = record.get("estimates", [{}])[0].get("seconds", {})
    rows = []
    for entry in record["notebooks"]:
        name = entry["notebook"].removesuffix(".ipynb")
        planned = estimate.get(name)
        rows.append(
            {
                "notebook": name,
                "seconds": entry["seconds"],
                "estimate_s": planned,
                "estimate_error": None if not planned else round(planned / entry["seconds"] - 1, 3),
                "cpu_busy": entry.get("cpu_busy"),
                "cpu_steal": entry.get("cpu_steal"),
            }
        )
    total, planned = record["seconds"], sum(estimate.values())
    rows.append(
        {
            "notebook": "all",
            "seconds": total,
            "estimate_s": round(planned, 1) if planned else None,
            "estimate_error": round(planned / total - 1, 3) if planned else None,
            "cpu_busy": weighted_share(record["notebooks"], "cpu_busy"),
            "cpu_steal": weighted_share(record["notebooks"], "cpu_steal"),
        }
    )
    return rows


def phase_rows(run: Path, record: dict, least: float = 2.0) -> list[dict]:
    """Where each notebook's time went: every cell that took `least` seconds or more (papermill
    records each cell's duration), named by its first line; the rest of the notebook in one row."""
    rows = []
    for entry in record["notebooks"]:
        name = entry["notebook"]
        cells = json.loads((run / "notebooks" / name).read_text())["cells"]
        timed = [(c["metadata"].get("papermill", {}).get("duration") or 0.0, c) for c in cells]
        long = [(seconds, c) for seconds, c in timed if seconds >= least]
        for seconds, cell in long:
            first = "".join(cell["source"]).strip().splitlines()[0][:70]
            rows.append({"notebook": name.removesuffix(".ipynb"), "cell": first,
                         "seconds": round(seconds, 1)})  # fmt: skip
        rest = entry["seconds"] - sum(seconds for seconds, _ in long)
        rows.append({"notebook": name.removesuffix(".ipynb"), "cell": "(the rest: kernel start, "
                     "short cells)", "seconds": round(rest, 1)})  # fmt: skip
    return rows


def ablation_rows(run: Path) -> list[dict]:
    path = run / "ablation" / "ablation.csv"
    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    columns = ("variant", "views", "valid_acc", "balanced_acc", "gain", "gain_low", "gain_high")
    keep = [c for c in (*columns, "tta_gain", "tta_gain_low", "tta_gain_high") if c in frame]
    return frame[keep].round(4).to_dict("records")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path, help="a finished workbook run")
    parser.add_argument("--name", required=True)
    parser.add_argument("--command", required=True, help="the command that made the run")
    parser.add_argument("--note", default="", help="a sentence on the conditions of the run")
    args = parser.parse_args(argv)
    run = args.run.resolve()
    record = json.loads((run / "workbook.json").read_text())
    if "finished" not in record:
        raise SystemExit(f"{run}: the run has not finished; finish it with lab3 run --resume")
    data = Path(record["data"])
    models = [m for m in record["models"] if (run / "runs" / m / "best.pt").is_file()]
    with tempfile.TemporaryDirectory() as scratch:
        # the submissions the run handed in, as its own precision predicted them
        depths = [
            depth_row(run / "runs" / m, data, m, Path(scratch), run / "submissions" / f"{m}.csv")
            for m in models
        ]
    execution = json.loads((run / "runs" / models[0] / "config.json").read_text())["execution"]
    notebooks, ablation = notebook_rows(record), ablation_rows(run)
    phases = phase_rows(run, record)
    header = provenance(args.command, execution["device"], execution)
    document = {
        "note": args.note,
        "notebooks": notebooks,
        "phases": phases,
        "depths": depths,
        "ablation": ablation,
    }
    body = "\n\n".join(
        part
        for part in (
            args.note,
            f"Data: `{data.name}`, profile {record['profile']}; bf16 {execution['bf16_reason']}.",
            "## Time per notebook (seconds; estimate_error = estimate / actual - 1; cpu_busy and "
            "cpu_steal: shares of the machine's CPU time busy and stolen by the hypervisor)",
            markdown(notebooks),
            "## Where the time went: cells of 2 s or more",
            markdown(phases),
            "## Each depth's submission, scored against test_labels.csv",
            markdown(depths),
            "## Preprocessing ablation (notebook 02)" if ablation else "",
            markdown(ablation) if ablation else "",
        )
        if part
    )
    json_path, md_path = write_results(
        RESULTS / args.name, header, document, f"Workbook run: {args.name}", body
    )
    print(body)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
