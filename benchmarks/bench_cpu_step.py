"""What pays on the CPU for the quick profile: threads, channels_last, bf16 autocast and
torch.compile, measured
as the time of one training step (forward, backward, AdamW) at the quick profile's size.

    python benchmarks/bench_cpu_step.py --models resnet18,resnet50,resnet152 --image-size 48

Settings are interleaved round by round, so a machine whose load drifts affects them alike; the
table gives each setting's median step time and its ratio to the default (all threads,
contiguous, eager). Writes ``benchmarks/results/cpu_step.{json,md}`` with the provenance
header (command, date, commit, machine, versions).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from lab3.bench.provenance import command_line, provenance, write_results
from lab3.models import build_model

RESULTS = Path(__file__).resolve().parent / "results"


def make_step(model: nn.Module, setting: dict, batch: int, size: int):
    """One AdamW training step on a fixed random batch, in the setting's memory format and
    precision (bf16 autocast as the engine uses it: weights and optimizer stay float32)."""
    channels_last = setting["channels_last"]
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory).train()
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=memory)
    y = torch.randint(0, 2, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting["bf16"]):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def settings(threads: int, compile_too: bool) -> list[dict]:
    plain = {"threads": threads, "channels_last": False, "bf16": False, "compile": False}
    out = [
        plain,
        {**plain, "channels_last": True},
        {**plain, "bf16": True},
        {**plain, "channels_last": True, "bf16": True},
        {**plain, "threads": 1},
    ]
    if compile_too:
        out.append({**plain, "compile": True})
    return out


def bench_model(name: str, args: argparse.Namespace) -> list[dict]:
    threads = torch.get_num_threads()
    rows = []
    steps = {}
    for setting in settings(threads, args.compile):
        torch.manual_seed(0)
        model = build_model(name)
        if setting["compile"]:
            model = torch.compile(model)
        torch.set_num_threads(setting["threads"])
        started = time.perf_counter()
        step = make_step(model, setting, args.batch_size, args.image_size)
        step()  # warm-up (and compilation)
        rows.append({"model": name, **setting, "first_s": time.perf_counter() - started})
        steps[len(rows) - 1] = step
    times: dict[int, list[float]] = {i: [] for i in steps}
    for _ in range(args.rounds):
        for i, step in steps.items():
            torch.set_num_threads(rows[i]["threads"])
            started = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - started)
    torch.set_num_threads(threads)
    base = statistics.median(times[0])
    for i, row in enumerate(rows):
        row["step_s"] = round(statistics.median(times[i]), 4)
        row["ratio"] = round(row["step_s"] / base, 3)
        row["first_s"] = round(row["first_s"], 2)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | threads | channels_last | bf16 | compile | median step s | ratio "
        "| first step s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['channels_last']} | {r['bf16']} "
            f"| {r['compile']} | "
            f"{r['step_s']:.3f} | {r['ratio']:.2f} | {r['first_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet18,resnet50,resnet152")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", default=str(RESULTS / "cpu_step"))
    args = parser.parse_args(argv)
    rows = [row for name in args.models.split(",") for row in bench_model(name, args)]
    table = markdown(rows)
    print(table)
    write(Path(args.out), rows, args, argv)
    return 0


def write(out: Path, rows: list[dict], args: argparse.Namespace, argv: list[str] | None) -> None:
    """cpu_step.{json,md}: the provenance header, then the rows; the execution settings vary
    row by row."""
    execution = {
        "bf16": "per row",
        "channels_last": "per row",
        "compile": "per row" if args.compile else False,
    }
    header = provenance(command_line(__file__, argv), "cpu", execution)
    write_results(
        out,
        header,
        {"rounds": args.rounds, "rows": rows},
        "CPU training step: threads, channels_last, bf16, torch.compile",
        f"Medians of {args.rounds} interleaved rounds; "
        "ratio = step time / the first row's of the same model.\n\n" + markdown(rows),
    )


if __name__ == "__main__":
    raise SystemExit(main())
