"""The pipeline the course's students write, as the reference side of `lab3 bench`.

What the torchvision tutorials teach and the lab's skeleton invites: a Dataset that opens and
decodes each BMP with PIL on every access, per-sample torchvision transforms, a DataLoader with
one worker per core and pinned memory, and torchvision's ResNet in float32 NCHW with PyTorch's
default settings, trained by the tutorial's loop (which reads the loss back every step).

Its augmentation mirrors lab3's in kind and range (`usual_transform`). Two choices are generous
to this side: its workers persist between epochs (the tutorials restart them every epoch), and
its rotations keep torchvision's default nearest-neighbour interpolation (lab3 interpolates
bilinearly).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lab3.data.preprocess import Augment
from lab3.errors import UserError


def _torchvision() -> Any:
    """torchvision, imported only here: lab3 itself never needs it."""
    try:
        import torchvision
    except ImportError:
        raise UserError(
            "lab3 bench compares against torchvision, which is not installed; "
            "install the project's environment (environment.yml)"
        ) from None
    return torchvision


class UsualDataset(Dataset):
    """Decode with PIL on every access, then the per-sample transforms."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], transform: Callable):
        self.paths = list(paths)
        self.labels = list(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            rgb = image.convert("RGB")
        return self.transform(rgb), self.labels[index]


def usual_transform(
    size: int, mean: Sequence[float], std: Sequence[float], augment: Augment | None
) -> Callable:
    """Resize, then per-sample random transforms mirroring lab3's `augment` the way the
    tutorials write them, then ToTensor and Normalize. lab3's dihedral views become random
    flips and quarter turns; its affine jitter `RandomAffine` with the same ranges; its colour
    jitter a brightness jitter. torchvision's default nearest-neighbour interpolation is kept
    (lab3 interpolates bilinearly, which costs more)."""
    transforms = _torchvision().transforms
    steps: list[Callable] = [transforms.Resize((size, size))]
    if augment is not None and augment.dihedral:
        steps += [
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.RandomChoice([transforms.RandomRotation((a, a)) for a in (0, 90)]),
        ]
    if augment is not None and augment.affine:
        steps.append(
            transforms.RandomAffine(
                augment.max_rotation,
                translate=(augment.max_shift, augment.max_shift),
                scale=(1 - augment.max_scale, 1 + augment.max_scale),
            )
        )
    if augment is not None and augment.color:
        steps.append(transforms.ColorJitter(brightness=augment.max_brightness))
    steps += [transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]
    return transforms.Compose(steps)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def usual_loader(
    dataset: UsualDataset, batch_size: int, device: torch.device, workers: int = 0
) -> DataLoader:
    """Shuffled batches from `workers` processes (0: one per core), pinned for a GPU."""
    workers = workers or cores()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
    )


def torchvision_resnet(name: str, num_classes: int) -> nn.Module:
    """torchvision's ResNet of that depth, untrained (same architecture as lab3's)."""
    return getattr(_torchvision().models, name)(weights=None, num_classes=num_classes)


class TutorialStep:
    """The training step of the PyTorch tutorials: fp32, and metrics read back every step."""

    def __init__(self, model: nn.Module, lr: float, device: torch.device):
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        self.criterion = nn.CrossEntropyLoss()
        self.device = device
        self.running_loss = 0.0
        self.correct = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        images, labels = images.to(self.device), labels.to(self.device)
        self.optimizer.zero_grad()
        outputs = self.model(images)
        loss = self.criterion(outputs, labels)
        loss.backward()
        self.optimizer.step()
        self.running_loss += loss.item() * labels.shape[0]
        self.correct += (outputs.argmax(1) == labels).sum().item()
