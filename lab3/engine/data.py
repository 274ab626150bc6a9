"""From a TrainConfig to loaders: layout -> cache -> per-split device loaders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lab3.config import TrainConfig
from lab3.data.cache import ImageCache, load_or_build
from lab3.data.layouts import Layout, load_layout
from lab3.data.loader import DeviceLoader
from lab3.data.preprocess import Augment, Pipeline
from lab3.engine.distributed import Distributed
from lab3.errors import UserError
from lab3.models import IMAGENET_MEAN, IMAGENET_STD

GPU_CACHE_FRACTION = 0.3  # hold the whole cache on the GPU when it takes at most this much memory


def split_rows(layout: Layout, config: TrainConfig, split: str) -> np.ndarray:
    """The table rows of one split; `train_limit` keeps a seeded subset of the training rows."""
    rows = np.flatnonzero((layout.table["split"] == split).to_numpy())
    if split == "train" and config.train_limit:
        rng = np.random.default_rng(config.seed)
        rows = np.sort(rng.permutation(rows)[: config.train_limit])
    return rows


def check_trainable(config: TrainConfig, world_size: int = 1) -> Layout:
    """Refuse, before anything is written, a data folder this config cannot train on: one
    class only among the training images, or fewer of them than one (global) batch needs."""
    layout = load_layout(config.data, split_mode=config.split_mode, seed=config.seed)
    rows = split_rows(layout, config, "train")
    labels = layout.table["label"].to_numpy()[rows]
    classes = sorted({int(label) for label in labels if label >= 0})
    if len(classes) < 2:
        held = f"label {classes[0]} only" if classes else "no labels"
        raise UserError(
            f"the training images hold one class only ({held}); training needs images of at "
            "least two classes",
            layout.root,
        )
    batch = config.batch_size * max(world_size, 1)
    if len(rows) < batch:
        per = f" ({config.batch_size} x {world_size} processes)" if world_size > 1 else ""
        raise UserError(
            f"{len(rows)} training images, fewer than one batch of {batch}{per} needs; lower "
            "--batch-size or add images",
            layout.root,
        )
    return layout


@dataclass
class PreparedData:
    config: TrainConfig
    layout: Layout
    pipeline: Pipeline
    cache: ImageCache
    images: np.ndarray | torch.Tensor  # the cache, on the device when it fits there
    labels: np.ndarray
    device: torch.device
    group: Distributed = Distributed()  # loaders serve this process's shard

    def rows(self, split: str) -> np.ndarray:
        return split_rows(self.layout, self.config, split)

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) the loaders normalise with: ImageNet's for ImageNet weights (the inputs
        those weights learned on), the training split's own otherwise."""
        if self.config.init == "imagenet":
            return IMAGENET_MEAN, IMAGENET_STD
        return self.cache.mean, self.cache.std

    def has_labels(self, split: str) -> bool:
        rows = self.rows(split)
        return len(rows) > 0 and bool((self.labels[rows] >= 0).all())

    def loader(
        self, split: str, train: bool = False, batch_size: int | None = None
    ) -> DeviceLoader:
        return self._loader(self.rows(split), train, batch_size)

    def rows_loader(self, rows: np.ndarray) -> DeviceLoader:
        """Evaluation's loader over some rows of the layout (e.g. a sample of a split)."""
        return self._loader(np.asarray(rows), train=False, batch_size=None)

    def _loader(self, rows: np.ndarray, train: bool, batch_size: int | None) -> DeviceLoader:
        config = self.config
        batch = batch_size or (config.batch_size if train else config.batch_size * 2)
        per_rank = len(rows) // self.group.world_size  # a training shard (see loader.shard)
        return DeviceLoader(
            self.images,
            self.labels,
            rows,
            batch_size=batch,
            device=self.device,
            mean=self.normalisation[0],
            std=self.normalisation[1],
            augment=Augment.parse(config.augment) if train else None,
            shuffle=train,
            balanced=train and config.class_balance == "sampler",
            drop_last=train and per_rank > batch,
            seed=config.seed,
            channels_last=config.use_channels_last(),
            rank=self.group.rank,
            world_size=self.group.world_size,
        )

    def statistics_loader(self) -> DeviceLoader | None:
        """Training images, unaugmented like evaluation's, for re-estimating BatchNorm
        statistics ("precise BN"): a fixed subset of `config.precise_bn` of them."""
        if not self.config.precise_bn:
            return None
        rows = self.rows("train")
        rng = np.random.default_rng(self.config.seed + 1)
        rows = np.sort(rng.permutation(rows)[: self.config.precise_bn])
        return self._loader(rows, train=False, batch_size=None)


def prepare_data(
    config: TrainConfig,
    progress: bool = True,
    group: Distributed | None = None,
    layout: Layout | None = None,
) -> PreparedData:
    """The config's data on its device; `layout` is the folder already parsed with the config's
    data, split mode and seed (read again when not given)."""
    if layout is None:
        layout = load_layout(config.data, split_mode=config.split_mode, seed=config.seed)
    pipeline = Pipeline.for_config(config.preprocess, config.image_size)
    cache = load_or_build(layout, pipeline, workers=config.workers or None, progress=progress)
    device = config.resolved_device()
    if device.type == "cuda" and group is not None and group.enabled:
        device = torch.device("cuda", group.local_rank)
    images: np.ndarray | torch.Tensor = cache.images
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if cache.images.nbytes < GPU_CACHE_FRACTION * free:
            images = torch.from_numpy(np.ascontiguousarray(cache.images)).to(device)
    labels = layout.table["label"].to_numpy(dtype=np.int64)
    return PreparedData(
        config, layout, pipeline, cache, images, labels, device, group or Distributed.single()
    )
