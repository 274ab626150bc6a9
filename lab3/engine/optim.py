"""What turns gradients into weights: the optimizer, the learning-rate schedule and the EMA.

`fit` builds them and `lab3 bench` times them, so both take them from here.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lab3.config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BatchNorm weights and biases (1-d tensors): it only fights the norm."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD, fused: one kernel over all parameters instead of a loop over them
    (on the CPU the fused AdamW update of ResNet50/152 takes about a fifth of the loop's time;
    benchmarks/results/optimizer_step_cpu.md).

    Not fused under fp16's loss scaling: a fused optimizer takes the scaler's overflow flag
    into its kernel instead of being skipped, and the fused SGD then still writes the overflowed
    gradient into its momentum, so the next step turns the weights into nan (seen on the CPU,
    tests/test_precision.py). Unfused, the scaler skips the whole step itself."""
    groups = parameter_groups(model, config.weight_decay)
    fused = not config.uses_loss_scaling()
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=fused)
    return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True, fused=fused)


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Learning-rate multiplier at `step` of `total`: one-cycle, or warm-up then cosine."""
    if kind == "onecycle":
        peak = max(1, int(0.25 * total))
        if step < peak:
            return 0.04 + 0.96 * (1 - math.cos(math.pi * step / peak)) / 2
        progress = (step - peak) / max(1, total - peak)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * progress)) / 2
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return (1 + math.cos(math.pi * min(progress, 1.0))) / 2


class WeightAverage:
    """Exponential moving average of weights and BN buffers, evaluated instead of the raw model."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short runs: do not lag behind
        pairs = list(
            zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        )
        floats = [(avg, cur) for avg, cur in pairs if avg.dtype.is_floating_point]
        with torch.no_grad():
            # one fused update, not a kernel per tensor (hundreds a step for ResNet152)
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1 - decay)
            for avg, cur in pairs:
                if not avg.dtype.is_floating_point:
                    avg.copy_(cur)


@dataclass
class Schedule:
    """The learning rate of every step; its position is what a checkpoint's lr_scheduler holds."""

    peak_lr: float
    total: int
    warmup: int
    kind: str
    step: int = 0

    def lr(self, step: int) -> float:
        return self.peak_lr * lr_factor(step, self.total, self.warmup, self.kind)

    def advance(self, optimizer: torch.optim.Optimizer) -> None:
        """Set the rate for the coming step, then count it."""
        for group in optimizer.param_groups:
            group["lr"] = self.lr(self.step)
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "total": self.total, "kind": self.kind}
