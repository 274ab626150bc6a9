"""What notebook 05's section "What the networks look at" costs on a finished workbook run, and
what its bounded maps change in the numbers: each phase timed with the workbook's defaults
(the report split only, at most `MAPS_PER_GROUP` right and wrong images per depth,
`ABLATION_MAPS` per ablation run) and with every evaluated image mapped (the first version),
beside the evaluation that opens the notebook for scale.

    python benchmarks/bench_attention.py --run outputs/latest --name attention_cpu \
        --notebooks outputs/latest/notebooks/05_evaluation_and_report.ipynb

The two ways are timed one after the other in one process on the same loaded checkpoints.
`--notebooks` adds what the section took inside executed copies of notebook 05 (papermill
records each cell's seconds): the cells under its heading against all cells of the notebook.
Writes ``benchmarks/results/<name>.{json,md}`` with its provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_results import markdown  # noqa: E402

from lab3 import plots  # noqa: E402
from lab3.bench.provenance import (  # noqa: E402
    command_line,
    config_execution,
    execution_summary,
    provenance,
    write_results,
)
from lab3.formatting import pretty_model_name  # noqa: E402
from lab3.workbook import attention, results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = work()
    return value, round(time.perf_counter() - started, 2)


def figures(evaluated: dict, frames: attention.Frames, split: str, folder: Path) -> None:
    """The panels and the depth figure, as notebook 05 draws and saves them."""
    for name, result in evaluated.items():
        args = attention.attention_panel(result, frames[name][split], split)
        plt.close(plots.plot_attention(**args, path=folder / f"attention_{name}.png"))
    if len(evaluated) > 1:
        args = attention.depth_comparison(evaluated, frames, split)
        plt.close(plots.plot_attention_depths(**args, path=folder / "attention_depths.png"))


def section(evaluated: dict, run: Path, data: str, split: str, bounded: bool) -> dict:
    """One way of computing the section: its phases' seconds and its numbers."""
    frames, maps_s = timed(
        lambda: (
            attention.explain_runs(evaluated, splits=[split])
            if bounded
            else attention.explain_runs(evaluated, per_group=None)
        )
    )
    maps = attention.ABLATION_MAPS if bounded else None
    ablation, ablation_s = timed(
        lambda: attention.ablation_attention(run, data, device="cpu", maps=maps)
    )
    with tempfile.TemporaryDirectory() as folder:
        _, figures_s = timed(lambda: figures(evaluated, frames, split, Path(folder)))
    summary = attention.summarise(frames)
    return {
        "way": "bounded (workbook)" if bounded else "every image (first version)",
        "maps_s": maps_s,
        "ablation_s": ablation_s,
        "figures_s": figures_s,
        "section_s": round(maps_s + ablation_s + figures_s, 2),
        "shares": {
            pretty_model_name(model): {
                title: round(float(getattr(splits[split], attention.COLUMNS[title])), 4)
                for title in ("map on cell", "right", "wrong", "maps")
            }
            for model, splits in summary.items()
        },
        "ablation": None
        if ablation is None
        else {v: round(shares.on_cell, 4) for v, shares in ablation.items()},
    }


SECTION = "## What the networks look at"


def notebook_share(path: Path) -> dict:
    """The seconds of the section's cells (its heading up to the next `## ` heading) and of all
    cells in one executed notebook 05."""
    cells = json.loads(path.read_text())["cells"]
    inside, section_s, total_s = False, 0.0, 0.0
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and source.startswith("## "):
            inside = source.startswith(SECTION)
        seconds = cell["metadata"].get("papermill", {}).get("duration") or 0.0
        total_s += seconds
        section_s += seconds if inside else 0.0
    if section_s == 0.0:
        raise SystemExit(f"{path}: no timed cells under {SECTION!r}; pass an executed notebook 05")
    return {"notebook": path.parent.parent.name, "section_s": round(section_s, 2),
            "cells_s": round(total_s, 1), "share": round(section_s / total_s, 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="a finished workbook run")
    parser.add_argument("--name", default="attention_cpu")
    parser.add_argument("--note", default="", help="what else the reader should know")
    parser.add_argument(
        "--notebooks", type=Path, nargs="*", default=[], help="executed copies of notebook 05"
    )
    args = parser.parse_args(argv)
    run = args.run.resolve()
    record = json.loads((run / "workbook.json").read_text())
    data, models = record["data"], record["models"]
    evaluated, evaluate_s = timed(lambda: results.evaluate_runs(run, models, data, device="cpu"))
    split = results.report_split(evaluated)
    ways = [section(evaluated, run, data, split, bounded) for bounded in (True, False)]
    notebook = next(
        (n["seconds"] for n in record["notebooks"] if n["notebook"].startswith("05_")), None
    )
    rows = [
        {
            "way": way["way"],
            "maps_s": way["maps_s"],
            "ablation_s": way["ablation_s"],
            "figures_s": way["figures_s"],
            "section_s": way["section_s"],
            "ratio_to_evaluation": round(way["section_s"] / evaluate_s, 3),
        }
        for way in ways
    ]
    shares = [
        {"way": way["way"], "model": model, **values}
        for way in ways
        for model, values in way["shares"].items()
    ]
    in_notebooks = [notebook_share(path) for path in args.notebooks]
    print(markdown(rows))
    print(markdown(shares))
    if in_notebooks:
        print(markdown(in_notebooks))
    checkpoints = {m: r.config for m, r in evaluated.items()}
    execution = execution_summary({m: config_execution(c) for m, c in checkpoints.items()})
    header = provenance(command_line(), "cpu", execution)
    body = (
        f"{args.note}\n\nRun: `{run.name}`, report split `{split}`; evaluating the three depths "
        f"(TTA, notebook 05's first cell) took {evaluate_s} s here; the run's own notebook 05 "
        f"took {notebook} s.\n\n## Seconds per phase\n\n{markdown(rows)}\n\n"
        f"## The shares each way gives ({split} split)\n\n{markdown(shares)}\n\n"
        "## The ablation's share on the cell (validation)\n\n"
        + "\n".join(f"- {w['way']}: {w['ablation']}" for w in ways)
    )
    if in_notebooks:
        body += (
            "\n\n## The section inside notebook 05 (executed copies)\n\nThe cells under "
            f"{SECTION[3:]!r} against all of the notebook's cells (papermill's per-cell seconds; "
            f"the kernel's start is not in either).\n\n{markdown(in_notebooks)}"
        )
    document = {"run": run.name, "split": split, "evaluate_s": evaluate_s, "ways": ways,
                "notebooks": in_notebooks}  # fmt: skip
    write_results(RESULTS / args.name, header, document, "Cost of the Grad-CAM section", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
