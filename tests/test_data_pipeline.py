"""Preprocessing steps, the decode-once cache, the device loader and the course-style Dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import copy_cnmc_cells

from lab3.data.cache import cache_folder, load_or_build
from lab3.data.dataset import LeukemiaDataset, getData
from lab3.data.layouts import load_layout
from lab3.data.loader import DeviceLoader
from lab3.data.preprocess import (
    Augment,
    Pipeline,
    apply_augmentation,
    dihedral_views,
    equalize_foreground,
    foreground_mask,
    load_image,
    tight_crop,
)
from lab3.errors import UserError


def _real_cell(fixtures: Path) -> np.ndarray:
    return load_image(str(fixtures / "cnmc" / "UID_1_1_1_all.bmp"))


def test_tight_crop_keeps_the_whole_cell_square(fixtures: Path) -> None:
    image = _real_cell(fixtures)
    crop = tight_crop(image, margin=0.05)
    assert crop.shape[0] == crop.shape[1] < 350  # the cell fills about a fifth of the frame
    assert foreground_mask(crop).sum() == foreground_mask(image).sum()  # nothing of the cell lost
    mask = foreground_mask(crop)
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any()  # margin


def test_tight_crop_of_an_edge_cell_pads_with_black() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[0:30, 80:100] = 200
    crop = tight_crop(image, margin=0.1)
    assert crop.shape[:2] == (36, 36) and foreground_mask(crop).sum() == 600


def test_equalize_spreads_cell_pixels_and_keeps_background(fixtures: Path) -> None:
    image = _real_cell(fixtures)
    out = equalize_foreground(image)
    mask = foreground_mask(image)
    assert (out[~mask] == 0).all()
    assert out[mask].std() > image[mask].std() * 1.5


def test_pipeline_parsing_and_output() -> None:
    pipeline = Pipeline.for_config("tightcrop:0.1, gray, equalise", 64)
    assert str(pipeline) == "tightcrop:0.1,grey,equalize,resize:64"
    assert pipeline.channels == 1 and pipeline.output_size == 64
    image = np.zeros((120, 90, 3), np.uint8)
    image[30:60, 20:50] = (120, 40, 130)
    assert pipeline(image).shape == (64, 64, 1)
    assert str(Pipeline.for_config("none", 32)) == "resize:32"
    with pytest.raises(UserError, match="unknown preprocessing step 'blur'"):
        Pipeline.parse("tightcrop,blur")
    with pytest.raises(UserError, match="needs a size"):
        Pipeline.parse("resize")


def test_corrupt_and_truncated_images_name_the_file(fixtures: Path, tmp_path: Path) -> None:
    data = (fixtures / "cnmc" / "UID_1_1_1_all.bmp").read_bytes()
    truncated = tmp_path / "truncated.bmp"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.bmp"
    garbage.write_bytes(b"BM" + os.urandom(200))
    for path in (truncated, garbage):
        with pytest.raises(UserError, match=f"{path.name}: cannot decode image"):
            load_image(str(path))


def test_cache_builds_once_and_rebuilds_on_change(fixtures: Path, tmp_path: Path) -> None:
    root = copy_cnmc_cells(fixtures / "cnmc", tmp_path / "cnmc")
    layout = load_layout(root, valid_fraction=0.3, test_fraction=0.2)
    pipeline = Pipeline.for_config("tightcrop", 32)
    cache = load_or_build(layout, pipeline, cache_root=tmp_path / "cache", progress=False)
    assert cache.rebuilt and cache.shape == (11, 32, 32, 3) and cache.images.dtype == np.uint8
    assert all(0 < m < 1 for m in cache.mean) and all(0 < s < 1 for s in cache.std)
    np.testing.assert_array_equal(cache.images[3], pipeline(load_image(layout.table["path"][3])))
    again = load_or_build(layout, pipeline, cache_root=tmp_path / "cache", progress=False)
    assert not again.rebuilt
    # touching one image changes the fingerprint: rebuilt
    target = Path(layout.table["path"][0])
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_or_build(layout, pipeline, cache_root=tmp_path / "cache", progress=False).rebuilt
    # a different pipeline is a different cache
    other = Pipeline.for_config("none", 32)
    assert cache_folder(layout, other, tmp_path / "cache") != cache.folder


def test_corrupt_image_leaves_no_cache_behind(fixtures: Path, tmp_path: Path) -> None:
    root = copy_cnmc_cells(fixtures / "cnmc", tmp_path / "cnmc")
    bad = root / "UID_3_4_2_all.bmp"
    bad.write_bytes(bad.read_bytes()[:5000])
    layout = load_layout(root, valid_fraction=0.3, test_fraction=0.2)
    with pytest.raises(UserError, match="UID_3_4_2_all.bmp: cannot decode image"):
        load_or_build(
            layout,
            Pipeline.for_config("tightcrop", 32),
            cache_root=tmp_path / "cache",
            workers=1,
            progress=False,
        )
    leftovers = list((tmp_path / "cache").iterdir()) if (tmp_path / "cache").exists() else []
    assert leftovers == []


def _loader(images: np.ndarray, seed: int, **kwargs) -> DeviceLoader:
    labels = np.arange(len(images)) % 2
    return DeviceLoader(
        images,
        labels,
        np.arange(len(images)),
        batch_size=8,
        device="cpu",
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        seed=seed,
        **kwargs,
    )


def test_loader_is_reproducible_per_seed_and_epoch() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8)
    a, b, c = (_loader(images, s, augment=Augment(), shuffle=True) for s in (1, 1, 2))
    batches_a = [(x, r) for x, _, r in a]
    batches_b = [(x, r) for x, _, r in b]
    assert all(
        torch.equal(x1, x2) and (r1 == r2).all()
        for (x1, r1), (x2, r2) in zip(batches_a, batches_b, strict=True)
    )
    assert not np.array_equal(
        np.concatenate([r for _, r in batches_a]), np.concatenate([r for _, _, r in c])
    )
    a.set_epoch(1)
    assert not np.array_equal(a.epoch_order(), b.epoch_order())
    assert sorted(np.concatenate([r for _, _, r in a]).tolist()) == list(
        range(20)
    )  # every image once


def test_loader_shards_cover_the_epoch_once() -> None:
    images = np.zeros((21, 4, 4, 3), np.uint8)
    shards = [
        _loader(images, 0, shuffle=True, rank=r, world_size=3).epoch_order() for r in range(3)
    ]
    assert sorted(np.concatenate(shards).tolist()) == list(range(21))


def test_loader_normalises_with_given_statistics() -> None:
    images = np.full((4, 8, 8, 3), 128, np.uint8)
    x, y, rows = next(iter(_loader(images, 0)))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, (128 / 255 - 0.5) / 0.25), atol=1e-6)


def test_augmentation_parameters_differ_per_image() -> None:
    image = torch.zeros(1, 3, 16, 16)
    image[:, :, 2:6, 3:9] = 0.8  # an asymmetric blob
    batch = image.repeat(32, 1, 1, 1)
    out = Augment()(batch, torch.Generator().manual_seed(0))
    distinct = {tuple(o.flatten().round(decimals=3).tolist()) for o in out}
    assert len(distinct) > 20  # one draw per image, not one per batch
    assert out[:, :, 0, 0].abs().max() == 0  # corners stay black (zero padding, gain keeps 0)


def test_dihedral_augmentation_is_lossless() -> None:
    batch = torch.rand(16, 3, 10, 10)
    params = Augment(affine=False, color=False).draw(16, torch.Generator().manual_seed(1))
    out = apply_augmentation(batch, params)
    views = dihedral_views(batch, 8)
    for i in range(16):
        assert any(torch.equal(out[i], v[i]) for v in views)
    assert (
        len({int(q) * 2 + int(f) for q, f in zip(params["quarter"], params["flip"], strict=True)})
        > 4
    )


def test_augment_spec_parsing() -> None:
    assert Augment.parse("none") is None
    aug = Augment.parse("dihedral,color")
    assert aug is not None and aug.dihedral and aug.color and not aug.affine
    with pytest.raises(UserError, match="unknown augmentation"):
        Augment.parse("dihedral,warp")


def test_dataset_follows_the_course_skeleton(small_synthetic: Path) -> None:
    train = LeukemiaDataset(small_synthetic, "train")
    paths, labels = train.getData("train")
    assert len(train) == len(paths) == len(labels) == 48
    image, label = train[0]
    assert image.shape == (3, 160, 160) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and label in (0, 1)
    test_paths, test_labels = getData("test", small_synthetic)
    assert len(test_paths) == 12 and set(test_labels) <= {0, 1}  # the synthetic set ships its truth
    resized = LeukemiaDataset(small_synthetic, "valid", transform=lambda im: im.resize((64, 64)))
    assert resized[0][0].shape == (3, 64, 64)
    own = LeukemiaDataset(small_synthetic, "valid", transform=Pipeline.for_config("tightcrop", 48))
    assert own[0][0].shape == (3, 48, 48)
    loader = torch.utils.data.DataLoader(train, batch_size=4, shuffle=True)
    images, batch_labels = next(iter(loader))
    assert images.shape == (4, 3, 160, 160) and batch_labels.shape == (4,)


def test_test_mode_without_truth_returns_minus_one(small_synthetic: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_synthetic, copy)
    (copy / "test_labels.csv").unlink()
    test = LeukemiaDataset(copy, "test")
    assert set(test.label) == {-1} and test[0][1] == -1


def test_a_built_cache_is_read_back_without_decoding(
    fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decode once: opening an up-to-date cache reads the stored pixels and decodes nothing.

    Catches a cache that silently decodes every image again (the slow path it exists to avoid)
    or serves pixels other than the decoded ones."""
    import lab3.data.cache as cache_module

    root = copy_cnmc_cells(fixtures / "cnmc", tmp_path / "cnmc")
    layout = load_layout(root, valid_fraction=0.3, test_fraction=0.2)
    pipeline = Pipeline.for_config("tightcrop", 32)
    built = load_or_build(layout, pipeline, cache_root=tmp_path / "c", progress=False)
    decoded = np.stack([pipeline(load_image(p)) for p in layout.table["path"]])

    def no_decoding(path: str) -> np.ndarray:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(cache_module, "load_image", no_decoding)
    again = load_or_build(layout, pipeline, cache_root=tmp_path / "c", progress=False)
    assert built.rebuilt and not again.rebuilt
    np.testing.assert_array_equal(np.asarray(again.images), decoded)


def _label_coded_images(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images that carry their own label (a bright square in the red or green channel, which
    survives every augmentation) and their row number (the blue channel, unaugmented)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.7).astype(np.int64)
    images = np.zeros((n, 12, 12, 3), np.uint8)
    images[..., 2] = np.arange(n, dtype=np.uint8)[:, None, None]
    for i, label in enumerate(labels):
        images[i, 2:10, 2:10, label] = 200
    return images, labels


@pytest.mark.parametrize("on_device", [False, True], ids=["memmap", "tensor"])
@pytest.mark.parametrize(
    "options",
    [{}, {"shuffle": True}, {"shuffle": True, "augment": Augment()}, {"balanced": True}],
    ids=["ordered", "shuffled", "augmented", "balanced"],
)
def test_loader_labels_belong_to_their_images(options: dict, on_device: bool) -> None:
    """Every batch's labels are those of its own images, in the same row order.

    Catches pairing labels with the rows before the batch is sorted for reading (half the
    training labels wrong, invisible to any test on a majority-class model)."""
    images, labels = _label_coded_images()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    loader = DeviceLoader(
        torch.from_numpy(images) if on_device else images,
        labels,
        np.arange(3, len(images)),  # not every row: the loader's rows index the whole cache
        batch_size=8,
        device="cpu",
        mean=mean,
        std=std,
        seed=1,
        **options,
    )
    seen = []
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        for x, y, rows in loader:
            pixels = x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
            assert torch.equal(y, torch.as_tensor(labels[rows])), f"epoch {epoch}"
            assert torch.equal(pixels[:, :2].sum((2, 3)).argmax(1), y), f"epoch {epoch}"
            if "augment" not in options:
                blue = (pixels[:, 2] * 255).round().long()
                assert torch.equal(blue, torch.as_tensor(rows).view(-1, 1, 1).expand_as(blue))
            seen.extend(rows.tolist())
    assert set(seen) <= set(range(3, len(images))) and len(set(seen)) > len(images) // 2
