"""Interleaved timing: every side of a comparison runs in turn, round after round.

A shared machine speeds up and slows down (other jobs, clocks, heat); running the sides in
rotating order within each round lets such drift hit all of them alike, and the median over the
rounds ignores a round that another process spoiled. Warm-up (and with it `torch.compile`) runs
before the first round and is reported apart from throughput.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# A pass over the data: given at most how many batches to take (None: all), it returns the number
# of images it processed, counted from the batches themselves.
Pass = Callable[[int | None], int]


@dataclass
class Timing:
    """One side's timed rounds."""

    warmup_seconds: float
    rates: list[float] = field(default_factory=list)  # images/s of each round
    images: int = 0  # images processed over all timed rounds

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read covers it (CUDA is asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Pass, device: torch.device, batches: int | None = None) -> tuple[int, float]:
    synchronize(device)
    started = time.perf_counter()
    images = run(batches)
    synchronize(device)
    return images, time.perf_counter() - started


def interleave(
    passes: dict[str, Pass],
    rounds: int,
    device: torch.device,
    warmup_batches: int = 2,
    report: Callable[[str], None] = lambda _: None,
) -> dict[str, Timing]:
    """Warm every side up, then time `rounds` full passes of each in rotating order."""
    timings = {}
    for name, run in passes.items():
        _, seconds = timed(run, device, warmup_batches)
        timings[name] = Timing(warmup_seconds=seconds)
        report(f"{name}: warm-up {seconds:.1f} s")
    names = list(passes)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            images, seconds = timed(passes[name], device)
            timings[name].rates.append(images / seconds)
            timings[name].images += images
            report(f"round {r + 1}/{rounds} {name}: {images / seconds:.1f} images/s")
    return timings
