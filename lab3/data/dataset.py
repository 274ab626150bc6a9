"""The custom Dataset, with the course skeleton's contract: `getData`, `__len__`, `__getitem__`.

A student can use it exactly as the course's ``dataloader.py`` is used::

    train = LeukemiaDataset("data/synthetic", "train")
    image, label = train[0]        # CHW float tensor in [0, 1], int label
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)

The course's three test CSVs list the same images in three different orders, and each depth's
Kaggle submission follows its own. ``LeukemiaDataset(root, "test", model="resnet50")`` yields the
images in the order of ``resnet_50_test.csv``, so predictions made in dataset order (a
``DataLoader`` without shuffling) pair row by row with that CSV. Without `model`, the test split
follows the first test CSV present.

Training in lab3 itself goes through the decoded cache (`lab3.data.cache`) instead, which reads
each image once rather than once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lab3.data.formats import SPLITS
from lab3.data.layouts import Layout, load_layout
from lab3.data.preprocess import Pipeline, load_image
from lab3.errors import UserError


def getData(  # noqa: N802 (course name)
    mode: str, root: str | Path = ".", model: str | None = None
) -> tuple[list[str], list[int]]:
    """Image paths and labels of one split (`train`, `valid` or `test`); -1 marks unknown labels.
    For `test`, `model` ("resnet18", "resnet50", "resnet152") picks that depth's CSV order."""
    return LeukemiaDataset(root, mode, model=model).getData(mode)


class LeukemiaDataset(Dataset):
    def __init__(
        self,
        root: str | Path,
        mode: str,
        transform: Callable[[Any], Any] | None = None,
        layout: Layout | None = None,
        model: str | None = None,
    ):
        """`transform` receives a PIL image (torchvision transforms work) or, for lab3's own
        `Pipeline`, any callable; its result is turned into a CHW float tensor. `model` orders
        the test split as that depth's test CSV lists it (``resnet_50_test.csv`` for
        "resnet50"), so predictions line up with the CSV's rows."""
        if mode not in SPLITS:
            raise UserError(f"unknown mode {mode!r}; use one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.mode = mode
        self.transform = transform
        self.model = model
        self.layout = layout or load_layout(root)
        self.img_name, self.label = self.getData(mode)
        print(f"> Found {len(self.img_name)} images ({mode})")

    def getData(self, mode: str) -> tuple[list[str], list[int]]:  # noqa: N802 (course name)
        split = self.layout.split(mode, self.model if mode == "test" else None)
        return split["path"].tolist(), split["label"].astype(int).tolist()

    def __len__(self) -> int:
        return len(self.img_name)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.img_name[index]
        image: Any = load_image(path)
        if self.transform is not None:
            image = self.transform(_as_transform_input(image, self.transform))
        return to_chw_tensor(image), self.label[index]


def _as_transform_input(image: np.ndarray, transform: Callable[[Any], Any]) -> Any:
    return image if isinstance(transform, Pipeline) else Image.fromarray(image)


def to_chw_tensor(image: Any) -> torch.Tensor:
    """PIL image, HWC uint8 array or tensor -> CHW float tensor in [0, 1]."""
    if isinstance(image, torch.Tensor):
        return image.float() if image.dtype != torch.uint8 else image.float() / 255
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return tensor.float() / 255 if tensor.dtype == torch.uint8 else tensor.float()
