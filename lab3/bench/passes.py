"""The things `lab3 bench` times: passes over the data, with or without a training step.

A pass takes at most `batches` batches (None: the whole epoch) and returns the images it saw,
counted from the batches, so the two sides of a comparison can be checked to have done the same
work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from lab3.bench.timing import Pass
from lab3.config import TrainConfig
from lab3.data.loader import DeviceLoader
from lab3.engine.optim import WeightAverage, make_optimizer
from lab3.engine.step import TrainStep, grad_scaler

Consume = Callable[[torch.Tensor, torch.Tensor], None]


class EngineSide:
    """A model trained as `fit` trains it under `config`: channels_last, compile and autocast
    (with fp16's loss scaling) where the config turns them on, its optimizer, label smoothing
    and weight average, metrics accumulated on the device. The learning rate stays at its peak
    (setting it per step is a Python assignment, nothing to time)."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device):
        self.model = model.to(device)
        if config.use_channels_last():
            self.model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(self.model, config)
        self.ema = WeightAverage(self.model, config.ema) if config.ema > 0 else None
        self.compiled = config.use_compile()
        train_model = torch.compile(self.model) if self.compiled else self.model
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.step = TrainStep(
            train_model, optimizer, criterion, config.autocast(), scaler=grad_scaler(config)
        )
        self.model.train()
        self.steps = 0
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        logits, loss = self.step(images, labels)
        if self.ema is not None:
            self.ema.update(self.model, self.steps)
        self.steps += 1
        self.loss_sum += loss * labels.shape[0]
        self.correct += (logits.argmax(1) == labels).sum()


def _take(batches: int | None) -> Callable[[int], bool]:
    return lambda i: batches is not None and i >= batches


def loader_pass(loader: DeviceLoader, consume: Consume | None = None) -> Pass:
    """lab3's loader over the cache, a new epoch (order, augmentation) on every pass."""
    epochs = itertools.count(1)

    def run(batches: int | None) -> int:
        loader.set_epoch(next(epochs))
        images_seen, done = 0, _take(batches)
        for i, (images, labels, _) in enumerate(loader):
            if done(i):
                break
            if consume is not None:
                consume(images, labels)
            images_seen += labels.shape[0]
        return images_seen

    return run


def usual_pass(loader: DataLoader, device: torch.device, consume: Consume | None = None) -> Pass:
    """The usual DataLoader; without a step, its batches are moved to the device as delivered."""

    def run(batches: int | None) -> int:
        images_seen, done = 0, _take(batches)
        for i, (images, labels) in enumerate(loader):
            if done(i):
                break
            if consume is not None:
                consume(images, labels)
            else:
                images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            images_seen += labels.shape[0]
        return images_seen

    return run


def staged_pass(
    staged: list[tuple[torch.Tensor, torch.Tensor]], steps: int, consume: Consume
) -> Pass:
    """`steps` training steps over batches already on the device (cycled): compute only."""

    def run(batches: int | None) -> int:
        images_seen = 0
        for k in range(steps if batches is None else min(batches, steps)):
            images, labels = staged[k % len(staged)]
            consume(images, labels)
            images_seen += labels.shape[0]
        return images_seen

    return run


def stage(loader: DeviceLoader, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `count` batches of the loader's epoch 0, kept on the device."""
    loader.set_epoch(0)
    return [(images, labels) for images, labels, _ in itertools.islice(loader, count)]
