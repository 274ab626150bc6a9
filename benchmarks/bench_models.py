"""Training-step throughput of lab3's ResNets against torchvision's, depth by depth.

If the architectures are the same, the speed must be the same too; a gap beyond noise would mean
a different layout (strides, extra copies, missed in-place ops). Both models get identical weights
and inputs, and their timed repeats alternate (ours, tv, tv, ours, ...) so that drift in clock
speed or thermal state hits both equally; the medians are compared.

    python benchmarks/bench_models.py --device cpu --image-size 112 --batch-size 8
    python benchmarks/bench_models.py --device cuda --batch-size 64 --channels-last --amp

Prints a markdown table and writes ``benchmarks/results/models_<device>[_<tag>].json`` and
``.md``, each opening with the provenance header (command, date, commit, device, versions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torchvision
from torch import nn

from lab3.bench.machine import device_name
from lab3.bench.provenance import command_line, provenance, write_results
from lab3.models import build_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--depths", type=int, nargs="+", default=[18, 50, 152])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per model")
    p.add_argument("--steps", type=int, default=None, help="steps per repeat (cpu 1, cuda 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (cpu 1, cuda 5)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (meant for cuda)")
    p.add_argument("--tag", default="", help="suffix for the results file names")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool):
    """One forward+backward, as in training (no optimizer step: it is identical for both)."""
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16) if amp else nullcontext()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()

    return step


def time_steps(step, steps: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - start


def bench_depth(depth: int, args: argparse.Namespace, device: torch.device) -> dict:
    arch = f"resnet{depth}"
    torch.manual_seed(0)
    ref = getattr(torchvision.models, arch)(weights=None, num_classes=args.num_classes)
    ours = build_model(arch, num_classes=args.num_classes)
    ours.load_state_dict(ref.state_dict(), strict=True)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    steps = {}
    for name, model in (("ours", ours), ("torchvision", ref)):
        model.to(device=device, memory_format=fmt).train()
        steps[name] = make_step(model, x, y, args.amp)
        for _ in range(args.warmup):
            steps[name]()
    sync(device)

    rates: dict[str, list[float]] = {"ours": [], "torchvision": []}
    for r in range(args.repeats):
        order = ("ours", "torchvision") if r % 2 == 0 else ("torchvision", "ours")
        for name in order:
            seconds = time_steps(steps[name], args.steps, device)
            rates[name].append(args.steps * args.batch_size / seconds)
        print(
            f"  {arch} repeat {r + 1}/{args.repeats}: ours {rates['ours'][-1]:.1f} img/s, "
            f"torchvision {rates['torchvision'][-1]:.1f} img/s",
            file=sys.stderr,
        )
    del ours, ref, steps
    if device.type == "cuda":
        torch.cuda.empty_cache()

    med_ours, med_tv = statistics.median(rates["ours"]), statistics.median(rates["torchvision"])
    pair_ratios = [a / b for a, b in zip(rates["ours"], rates["torchvision"], strict=True)]
    return {
        "arch": arch,
        "ours_img_s": rates["ours"],
        "torchvision_img_s": rates["torchvision"],
        "ours_median": med_ours,
        "torchvision_median": med_tv,
        "ratio": med_ours / med_tv,
        # Best-of ratio: robust to another process stealing the CPU during some repeats.
        "ratio_best": max(rates["ours"]) / max(rates["torchvision"]),
        # Ratio within each adjacent (ours, tv) pair, then the median: cancels slow drift.
        "ratio_paired": statistics.median(pair_ratios),
        "ratio_min": min(pair_ratios),
        "ratio_max": max(pair_ratios),
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| model | ours (img/s) | torchvision (img/s) | ours / tv | paired | best / best "
        "| pair range |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['ours_median']:.1f} | {r['torchvision_median']:.1f} "
            f"| {r['ratio']:.3f} | {r['ratio_paired']:.3f} | {r['ratio_best']:.3f} "
            f"| {r['ratio_min']:.3f} - {r['ratio_max']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.steps is None:
        args.steps = 20 if device.type == "cuda" else 1
    if args.warmup is None:
        args.warmup = 5 if device.type == "cuda" else 1
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    command = command_line(__file__, argv)
    setup = {
        "device": device.type,
        "torchvision": torchvision.__version__,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "num_classes": args.num_classes,
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "warmup_steps": args.warmup,
        "channels_last": args.channels_last,
        "amp_bf16": args.amp,
    }
    print(f"{command}\n{device_name(device)}, torch {torch.__version__}", file=sys.stderr)
    rows = [bench_depth(d, args, device) for d in args.depths]
    print(markdown_table(rows))
    stem = f"models_{device.type}" + (f"_{args.tag}" if args.tag else "")
    json_path, _ = write(args.out_dir / stem, command, setup, rows, args)
    print(f"wrote {json_path} and .md", file=sys.stderr)
    return 0


def write(
    stem: Path, command: str, setup: dict, rows: list[dict], args: argparse.Namespace
) -> tuple[Path, Path]:
    """`stem`.json and .md: the provenance header (command, date, commit, device, versions,
    bf16 and channels_last as set; never compiled), the settings and the table."""
    execution = {"bf16": args.amp, "compile": False, "channels_last": args.channels_last}
    header = provenance(command, setup["device"], execution)
    settings = (
        f"batch {args.batch_size}, {args.image_size}x{args.image_size} px, "
        f"{args.num_classes} classes, {args.repeats} interleaved repeats x {args.steps} steps "
        f"(after {args.warmup} warm-up), channels_last={args.channels_last}, bf16={args.amp}"
    )
    body = (
        f"- torchvision {setup['torchvision']}\n"
        f"- settings: {settings}\n\n"
        "Medians of images/s over the interleaved repeats; a ratio > 1 means ours is faster. "
        "'paired' is the median of the ratios within adjacent (ours, tv) repeats and "
        "'best / best' compares the fastest repeat of each; both resist other processes "
        "taking the machine during some repeats.\n\n"
        f"{markdown_table(rows)}\n"
    )
    title = f"ResNet forward+backward throughput: lab3 vs torchvision ({setup['device']})"
    return write_results(stem, header, {**setup, "results": rows}, title, body)


if __name__ == "__main__":
    sys.exit(main())
