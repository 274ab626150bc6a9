"""Batches from the uint8 cache to the device, augmented there, with per-image random parameters.

The same code serves the CPU and CUDA. The epoch's order depends only on (seed, epoch), so a
resumed run sees the batches an uninterrupted one would, and under several processes each rank
takes its own shard of the same permutation (``rank::world_size``; for training, shards of equal
length, see `shard`). Augmentation parameters are
drawn on the CPU from a generator seeded by (seed, epoch, rank), so CPU and CUDA runs agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from lab3.data.preprocess import Augment, apply_geometry, color_factor, to_device


def shard(rows: np.ndarray, rank: int, world_size: int, equal: bool) -> np.ndarray:
    """This rank's share of an epoch's rows: every `world_size`-th row from `rank` on.

    `equal` cuts the rows to a multiple of `world_size` first (fewer than `world_size` images wait
    for the next epoch's permutation, as `drop_last` does within a rank): every rank then runs the
    same number of steps, as DistributedDataParallel's collectives need, and no image is seen
    twice in an epoch. Evaluation keeps every row (`equal=False`) and gathers the shards.
    """
    if equal:
        rows = rows[: len(rows) - len(rows) % world_size]
    return rows[rank::world_size]


class DeviceLoader:
    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray,
        indices: np.ndarray,
        *,
        batch_size: int,
        device: torch.device | str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: Augment | None = None,
        shuffle: bool = False,
        balanced: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        """`images` is the whole cache (N x H x W x C uint8, memmap or a tensor already on the
        device); `indices` are the rows this loader serves; `labels` are aligned with `images`."""
        self.images = images
        self.labels = torch.tensor(np.array(labels), dtype=torch.long)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.device = torch.device(device)
        channels = images.shape[-1]
        self.mean = torch.tensor(mean[:channels], device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std[:channels], device=self.device).view(1, -1, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the unscaled pixels
        self.scale = 1 / (255 * self.std)
        self.shift = -self.mean / self.std
        self.white = 255 * self.scale + self.shift  # a full pixel, normalised
        self.augment = augment
        self.shuffle = shuffle
        self.balanced = balanced
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_order(self) -> np.ndarray:
        """The rows of this epoch, in order, for this rank."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.indices)
        if self.balanced:
            labels = self.labels[torch.as_tensor(self.indices)]
            counts = torch.bincount(labels).float()
            weights = 1.0 / counts[labels]
            order = torch.multinomial(weights, n, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        return shard(self.indices[order.numpy()], self.rank, self.world_size, self.equal_shards)

    @property
    def equal_shards(self) -> bool:
        """Training loaders (shuffled or balanced) give every rank the same number of batches."""
        return self.shuffle or self.balanced

    def __len__(self) -> int:
        n = len(shard(np.arange(len(self.indices)), self.rank, self.world_size, self.equal_shards))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _host_batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        rows = np.sort(rows)  # memmap reads are fastest in file order; batch order is irrelevant
        if isinstance(self.images, torch.Tensor):
            index = to_device(torch.as_tensor(rows), self.images.device)
            return self.images.index_select(0, index), self.labels[torch.as_tensor(rows)], rows
        batch = torch.from_numpy(np.ascontiguousarray(self.images[rows]))
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return batch, self.labels[torch.as_tensor(rows)], rows

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """Yield (images N x C x H x W normalised float32, labels, cache rows) on the device."""
        order = self.epoch_order()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch) * 64 + self.rank
        )
        with ThreadPoolExecutor(max_workers=1) as prefetch:
            pending = prefetch.submit(self._host_batch, batches[0]) if batches else None
            for i in range(len(batches)):
                assert pending is not None
                batch, labels, rows = pending.result()
                if i + 1 < len(batches):
                    pending = prefetch.submit(self._host_batch, batches[i + 1])
                yield (
                    self._to_device(batch, labels, generator),
                    to_device(labels, self.device),
                    rows,
                )

    def _to_device(
        self, batch: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        # uint8 N x H x W x C -> N x C x H x W in channels_last strides (no copy to reorder);
        # float after the geometry, unscaled: 1/255 and the colour jitter join the normalisation
        x = batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        factor = None
        if self.augment is not None:
            params = self.augment.draw(x.shape[0], generator)
            x = apply_geometry(x, params)
            factor = color_factor(params, x.shape[1])
        scale = self.scale
        if factor is not None:
            scale = to_device(factor.float(), x.device)[:, :, None, None] * scale
        x = x.float()
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.addcmul(self.shift, x, scale, out=torch.empty_like(x, memory_format=layout))
        if factor is None:
            return out
        # jittered colour saturates at white (255 unscaled), as `apply_augmentation` does
        return out.clamp_(min=self.shift, max=self.white)
