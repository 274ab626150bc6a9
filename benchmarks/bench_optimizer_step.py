"""What the optimizer's update costs per step on the CPU: AdamW and Nesterov SGD over each
depth's parameters, torch's default implementation (a loop over the tensors), `foreach` and
`fused` (what `lab3.engine.optim.make_optimizer` uses), beside the forward and backward pass
of the quick profile's batch for scale.

    python benchmarks/bench_optimizer_step.py --models resnet18,resnet50,resnet152 --rounds 5

Implementations are interleaved round by round, so a drifting load hits them alike. Writes
``benchmarks/results/optimizer_step_cpu.{json,md}`` with its provenance.
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
KINDS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def optimizers(model: nn.Module, name: str) -> dict[str, torch.optim.Optimizer]:
    params = list(model.parameters())
    if name == "adamw":
        return {k: torch.optim.AdamW(params, lr=1e-3, **v) for k, v in KINDS.items()}
    return {
        k: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, **v)
        for k, v in KINDS.items()
    }


def forward_backward(model: nn.Module, batch: int, size: int) -> float:
    """Seconds of one forward and backward pass of a random batch (after a warm-up)."""
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 2, (batch,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()

    step()
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def bench_model(name: str, args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(name, num_classes=2).train()
    compute = forward_backward(model, args.batch_size, args.image_size)
    rows = []
    for optimizer_name in ("adamw", "sgd"):
        candidates = optimizers(model, optimizer_name)
        for optimizer in candidates.values():
            optimizer.step()  # states allocated, kernels warmed up
        times: dict[str, list[float]] = {k: [] for k in candidates}
        for _ in range(args.rounds):
            for kind, optimizer in candidates.items():
                started = time.perf_counter()
                optimizer.step()
                times[kind].append(time.perf_counter() - started)
        default = statistics.median(times["default"])
        for kind, values in times.items():
            median = statistics.median(values)
            rows.append(
                {
                    "model": name,
                    "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                    "optimizer": optimizer_name,
                    "implementation": kind,
                    "update_s": round(median, 4),
                    "ratio_to_default": round(median / default, 2),
                    "share_of_step": round(median / (median + compute), 3),
                    "forward_backward_s": round(compute, 3),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet18,resnet50,resnet152")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "optimizer_step_cpu")
    args = parser.parse_args(argv)
    rows = [row for name in args.models.split(",") for row in bench_model(name, args)]
    table = markdown(rows)
    print(table)
    execution = {"bf16": False, "compile": False, "channels_last": False}
    header = provenance(command_line(), "cpu", execution)
    body = (
        f"Median seconds of one update over {args.rounds} interleaved rounds, float32, "
        f"{torch.get_num_threads()} threads; share_of_step: the update's share of a training "
        f"step with the forward and backward pass of a batch of {args.batch_size} at "
        f"{args.image_size} px.\n\n{table}"
    )
    write_results(args.out, header, {"rows": rows}, "Optimizer update on the CPU", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
