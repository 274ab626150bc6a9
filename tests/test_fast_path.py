"""The loader's fast path gives the batches the plain formula gives, and on CUDA never makes
the host wait for the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lab3.data.loader import DeviceLoader
from lab3.data.preprocess import Augment, affine_grid

MEAN, STD = (0.2, 0.3, 0.4), (0.25, 0.2, 0.15)


def _images(n: int = 12, size: int = 24) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _loader(
    images: np.ndarray | torch.Tensor,
    device: str,
    augment: Augment | None,
    channels_last: bool = False,
):
    labels = np.arange(len(images)) % 2
    return DeviceLoader(
        images,
        labels,
        np.arange(len(images)),
        batch_size=len(images),
        device=device,
        mean=MEAN,
        std=STD,
        augment=augment,
        channels_last=channels_last,
    )


@pytest.mark.parametrize("height,width", [(7, 7), (5, 9), (224, 224)])
def test_affine_grid_matches_torch(height: int, width: int) -> None:
    """Catches a swapped axis, a wrong pixel-centre convention or a misplaced shift."""
    theta = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(height))
    expected = F.affine_grid(theta, [6, 3, height, width], align_corners=False)
    assert torch.allclose(affine_grid(theta, height, width), expected, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("spec", ["dihedral,affine,color", "dihedral", "none"])
def test_loader_batch_equals_the_plain_formula(spec: str, channels_last: bool) -> None:
    """The loader scales by 1/255 inside its normalisation and clamps colour at 255; the plain
    way scales first and clamps at 1. Catches a clamp at the wrong white level (bright pixels
    would go black or unclamped) or a scale folded in twice."""
    images = _images()
    augment = Augment.parse(spec)
    batch, _, rows = next(iter(_loader(images, "cpu", augment, channels_last)))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert batch.is_contiguous(memory_format=layout)
    x = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float() / 255
    if augment is not None:
        x = augment(x, torch.Generator().manual_seed(0))  # the loader's seed for epoch 0
    expected = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(batch, expected, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("on_gpu", [True, False])
def test_loader_never_synchronises_with_the_gpu(on_gpu: bool) -> None:
    """A blocking copy (pageable memory, a tensor built on the device from host data) makes
    the host wait for every queued kernel each batch; sync debug mode turns that into an error."""
    images = torch.from_numpy(_images(64)).cuda() if on_gpu else _images(64)
    loader = _loader(images, "cuda", Augment())
    loader.batch_size = 16
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for augment in (Augment(), Augment(affine=False, color=False)):
            loader.augment = augment
            assert sum(labels.shape[0] for _, labels, _ in loader) == 64
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_weight_average_moves_each_tensor_towards_the_model() -> None:
    """The fused update is the per-tensor lerp it replaced: catches a weight of `decay` where
    `1 - decay` belongs, or integer buffers (BatchNorm's batch count) left behind."""
    from torch import nn

    from lab3.engine.optim import WeightAverage

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    average = WeightAverage(model, decay=0.9)
    before = {k: v.clone() for k, v in average.model.state_dict().items()}
    model(torch.randn(2, 3, 8, 8))  # moves the running statistics and the batch count
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update(model, step=1000)  # past the warm-up: decay 0.9
    for name, value in average.model.state_dict().items():
        current = model.state_dict()[name]
        if value.dtype.is_floating_point:
            expected = before[name] + 0.1 * (current - before[name])
            assert torch.allclose(value, expected, atol=1e-6), name
        else:
            assert torch.equal(value, current), name
