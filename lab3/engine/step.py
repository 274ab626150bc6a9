"""One optimizer step as training takes it, shared by `fit` and `lab3 bench`.

Kept apart from the fit loop so the benchmark times the engine's own step, not a copy of it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import torch
from torch import nn

from lab3.config import TrainConfig


def grad_scaler(config: TrainConfig) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 training needs (`TrainConfig.uses_loss_scaling`), else None."""
    if not config.uses_loss_scaling():
        return None
    return torch.amp.GradScaler(config.resolved_device().type)


class TrainStep:
    """Forward under the run's autocast, loss in float32, fresh gradients, one update.

    With a `scaler` (fp16), the loss is scaled before backward and the update skipped when a
    gradient overflowed; `skipped` counts those steps on the device (no host sync per step).

    Returns detached logits and loss and never reads them back to the host: metrics accumulate
    on the device, so a CUDA step queues its kernels and returns without waiting for them.

    When `model` is compiled, pass the module it wraps as `eager`: if compiling fails (torch
    compiles on the first step: no C compiler, an unsupported GPU, a Triton error), the step
    says so in one line and runs, now and from then on, without compilation.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: nn.Module,
        autocast: contextlib.AbstractContextManager | None = None,
        eager: nn.Module | None = None,
        report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
        scaler: torch.amp.GradScaler | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.autocast = autocast or contextlib.nullcontext()
        self.eager = eager  # set while the compiled model has not yet run a step
        self.report = report
        self.scaler = scaler
        self.skipped: torch.Tensor | None = None  # steps skipped for an overflow, see `_update`

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.eager is None:
            return self._step(images, labels)
        try:
            result = self._step(images, labels)
        except torch._dynamo.exc.TorchDynamoException as err:
            first = (str(err).strip().splitlines() or [""])[0][:160]
            self.report(
                f"torch.compile failed ({type(err).__name__}: {first}); training continues "
                "without it (--compile off skips the attempt)"
            )
            self.model = self.eager
            result = self._step(images, labels)
        self.eager = None
        return result

    def _step(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast:
            logits = self.model(images)
            loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self._scaled_update(loss)
        return logits.detach(), loss.detach()

    def _scaled_update(self, loss: torch.Tensor) -> None:
        """backward and step through the scaler. It skips the step and halves the scale when a
        gradient is inf or nan, so a smaller scale after `update` marks a skipped step; the
        comparison stays on the device (get_scale() would read the scale back every step)."""
        scaler = self.scaler
        scaler.scale(loss).backward()
        scaler.step(self.optimizer)
        before = scaler._scale.clone()  # the scale tensor get_scale() reads
        scaler.update()
        skipped = (scaler._scale < before).long().squeeze()
        self.skipped = skipped if self.skipped is None else self.skipped + skipped

    def take_skipped(self) -> int:
        """Steps skipped for an overflow since the last call (one host sync: once an epoch)."""
        count = 0 if self.skipped is None else int(self.skipped.item())
        self.skipped = None
        return count
