"""Behaviour kept through a refactoring: the same training histories, bit for bit, from this
checkout and from another one (an earlier commit), on the same data and machine.

    git worktree add ../before <commit>
    python benchmarks/same_histories.py --before ../before --data <dataset> --name same_histories

Trains with each checkout's code (`python -m lab3 train` with PYTHONPATH at the checkout): a
2-epoch run of each depth, and a ResNet18 run SIGKILLed after its first checkpoint, then resumed
with `--resume`. Compares every history column but the timings (seconds, images_per_s) and the
final weights, and writes ``benchmarks/results/<name>.{json,md}``. The kill uses each
checkout's own fault hook: the environment variable alone before the fit loop's seam existed,
tests/fault_site on PYTHONPATH after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lab3.bench.provenance import command_line, provenance, write_results

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
KILL = "LAB3_KILL_AFTER_EPOCH"
TIMINGS = ("seconds", "images_per_s")
RUNS = {  # name: (model, killed after epoch 1 and resumed)
    "resnet18": ("resnet18", False),
    "resnet50": ("resnet50", False),
    "resnet152": ("resnet152", False),
    "resnet18_resumed": ("resnet18", True),
}
FLAGS = ["--profile", "quick", "--epochs", "2", "--min-steps", "0", "--device", "cpu"]


def train(checkout: Path, data: Path, out: Path, model: str, *extra: str, kill: bool = False):
    paths = [str(checkout), str(checkout / "tests" / "fault_site")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    if kill:
        env[KILL] = "1"
    command = [sys.executable, "-m", "lab3", "train", "--model", model, "--data", str(data)]
    command += ["--out", str(out), *FLAGS, *extra]
    # run outside both checkouts: the working directory comes first on sys.path
    return subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, cwd=out.parent
    )


def run_all(checkout: Path, data: Path, folder: Path) -> dict[str, Path]:
    """Each run of RUNS trained with `checkout`'s code under `folder`."""
    made = {}
    folder.mkdir(parents=True)
    for name, (model, resumed) in RUNS.items():
        out = folder / name
        if resumed:
            killed = train(checkout, data, out, model, kill=True)
            if killed.returncode >= 0 or not (out / "last.pt").is_file():
                raise SystemExit(f"{checkout}: the kill after epoch 1 did not happen ({name})")
            done = train(checkout, data, out, model, "--resume")
        else:
            done = train(checkout, data, out, model)
        if done.returncode != 0:
            raise SystemExit(f"{checkout}: {name} failed: {done.stderr[-2000:]}")
        made[name] = out
    return made


def compare(before: Path, after: Path) -> dict[str, object]:
    """Whether the two runs' histories (timings aside) and best weights are identical."""
    rows = [json.loads((run / "history.json").read_text()) for run in (before, after)]
    kept = [[{k: v for k, v in row.items() if k not in TIMINGS} for row in h] for h in rows]
    weights = [torch.load(run / "best.pt", weights_only=True) for run in (before, after)]
    same_weights = all(
        torch.equal(weights[0][key][name], weights[1][key][name])
        for key in ("model", "ema")
        if weights[0].get(key) is not None
        for name in weights[0][key]
    )
    return {
        "epochs": len(rows[1]),
        "history_identical": kept[0] == kept[1],
        "best_weights_identical": same_weights,
        "valid_acc": [row["valid_acc"] for row in rows[1]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--name", default="same_histories")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab3-histories-") as folder:
        data = args.data.resolve()
        old = run_all(args.before.resolve(), data, Path(folder) / "before")
        new = run_all(ROOT, data, Path(folder) / "after")
        rows = [{"run": name, **compare(old[name], new[name])} for name in RUNS]
    table = ["| run | epochs | history identical | best.pt weights identical | valid acc |"]
    table.append("|---|---|---|---|---|")
    for row in rows:
        table.append(
            f"| {row['run']} | {row['epochs']} | {row['history_identical']} | "
            f"{row['best_weights_identical']} | {row['valid_acc']} |"
        )
    body = (
        f"{args.note}\n\nBefore: `{args.before.name}` checkout; after: this one. Settings: "
        f"`{' '.join(FLAGS)}` on `{args.data.name}`; timings excluded.\n\n" + "\n".join(table)
    )
    header = provenance(command_line())
    write_results(RESULTS / args.name, header, {"runs": rows}, "Same histories", body)
    print("\n".join(table))
    if not all(row["history_identical"] and row["best_weights_identical"] for row in rows):
        raise SystemExit("histories or weights differ")


if __name__ == "__main__":
    main()
