"""One optimizer step as training takes it, shared by `fit` and `lab3 bench`.

Kept apart from the fit loop so the benchmark times the engine's own step, not a copy of it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class TrainStep:
    """Forward under the run's autocast, loss in float32, fresh gradients, one update.

    Returns detached logits and loss and never reads them back to the host: metrics accumulate
    on the device, so a CUDA step queues its kernels and returns without waiting for them.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: nn.Module,
        autocast: contextlib.AbstractContextManager | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.autocast = autocast or contextlib.nullcontext()

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast:
            logits = self.model(images)
            loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return logits.detach(), loss.detach()
