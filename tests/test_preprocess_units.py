"""Preprocessing on images small enough to check pixel by pixel: the crop's box and margin, the
resize, grey, equalisation, the step spec, the views and the normalisation of augmentation.
Fast, so mutation runs map data/preprocess.py to them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lab3.data.preprocess import (
    AUGMENTATIONS,
    Augment,
    Pipeline,
    Step,
    affine_grid,
    affine_matrices,
    apply_augmentation,
    apply_geometry,
    center_crop,
    color_factor,
    dihedral_batch,
    dihedral_views,
    equalize_foreground,
    foreground_mask,
    load_image,
    resize,
    tight_crop,
    to_device,
    to_grey,
)
from lab3.errors import UserError


def _cell(h: int = 20, w: int = 20, box: tuple[int, int, int, int] = (5, 7, 9, 13)) -> np.ndarray:
    """Black frame with a grey block at rows box[0]:box[1], columns box[2]:box[3]."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    top, bottom, left, right = box
    image[top:bottom, left:right] = 100
    return image


def test_foreground_is_any_channel_above_the_threshold() -> None:
    image = np.zeros((1, 4, 3), dtype=np.uint8)
    image[0, 1] = (12, 12, 12)  # at the threshold: background
    image[0, 2] = (0, 13, 0)  # one channel above: cell
    image[0, 3] = (200, 0, 0)
    assert foreground_mask(image).tolist() == [[False, False, True, True]]


def test_tight_crop_is_the_square_box_plus_margin() -> None:
    image = _cell()  # box 2 rows x 4 columns at rows 5-6, columns 9-12
    out = tight_crop(image, margin=0.0)
    assert out.shape == (4, 4, 3), "square on the longer side"
    assert (out[1:3, :] == 100).all() and (out[0] == 0).all() and (out[3] == 0).all()
    wide = tight_crop(image, margin=0.5)
    assert wide.shape == (8, 8, 3), "side * (1 + 2 * margin)"
    assert int((wide == 100).all(axis=2).sum()) == 8, "the whole cell kept"
    blank = np.zeros((6, 6, 3), dtype=np.uint8)
    assert tight_crop(blank) is blank, "nothing to crop to"
    edge = _cell(box=(0, 4, 0, 2))  # in the corner: padded with black, not shifted
    out = tight_crop(edge, margin=0.25)
    assert out.shape == (6, 6, 3)
    assert int((out == 100).all(axis=2).sum()) == 8
    assert (out[:, 0] == 0).all() and (out[:, -1] == 0).all()
    assert tight_crop(_cell(box=(5, 10, 5, 10)), margin=0.0).shape == (5, 5, 3)


def test_center_crop_and_resize() -> None:
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    out = center_crop(image, 4)
    assert out.shape == (4, 4, 3) and np.array_equal(out, image[1:5, 2:6])
    assert center_crop(image, 10).shape == (6, 6, 3), "never larger than the image"
    flat = np.full((8, 8, 3), 50, dtype=np.uint8)
    assert resize(flat, 8) is flat
    small = resize(flat, 4)
    assert small.shape == (4, 4, 3) and (small == 50).all()
    big = resize(flat, 16)
    assert big.shape == (16, 16, 3) and (big == 50).all()
    grey = np.full((8, 8, 1), 7, dtype=np.uint8)
    assert resize(grey, 4).shape == (4, 4, 1)
    halves = np.zeros((4, 4, 3), dtype=np.uint8)
    halves[:, :2] = 200
    assert resize(halves, 2)[:, :, 0].tolist() == [[200, 0], [200, 0]], "area-averaged"


def test_grey_is_the_luminance() -> None:
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    out = to_grey(image)
    assert out.shape == (1, 4, 1)
    expected = [round(0.299 * 255), round(0.587 * 255), round(0.114 * 255),
                round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)]  # fmt: skip
    assert out[0, :, 0].tolist() == expected
    assert to_grey(out) is out


def test_equalize_spreads_the_cell_over_1_to_255_and_keeps_black() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:4, :] = 50
    image[4:6, :] = 60
    out = equalize_foreground(image)
    assert (out[6:] == 0).all(), "background stays black"
    assert (out[:4] == 1).all() and (out[4:6] == 255).all(), "lowest to 1, highest to 255"
    three = image.copy()
    three[5, :] = 70
    mid = equalize_foreground(three)[4, 0, 0]
    # cumulative counts 32 (50), 40 (60), 48 (70): (40 - 32) / (48 - 32) of the way up
    assert mid == 1 + round(254 * 8 / 16), "the cumulative share of the cell's pixels"
    few = np.zeros((8, 8, 3), dtype=np.uint8)
    few[0, :3] = 90
    assert equalize_foreground(few) is few, "too few cell pixels to equalise"
    sixteen = np.zeros((8, 8, 3), dtype=np.uint8)
    sixteen[:2, :] = 90
    sixteen[0, 0] = 40
    assert equalize_foreground(sixteen) is not sixteen


def test_step_and_pipeline_spec() -> None:
    assert str(Step("resize", 224.0)) == "resize:224"
    assert str(Step("tightcrop", 0.1)) == "tightcrop:0.1"
    assert str(Step("grey")) == "grey"
    pipeline = Pipeline.parse(" Crop , gray,HISTEQ, centercrop:30 ,resize:16")
    assert str(pipeline) == "tightcrop,grey,equalize,centercrop:30,resize:16"
    assert str(Pipeline.parse("none")) == "none" and str(Pipeline.parse("")) == "none"
    assert str(Pipeline.for_config("tightcrop", 48)) == "tightcrop,resize:48"
    assert str(Pipeline.for_config("resize:32", 48)) == "resize:32", "its own resize wins"
    assert Pipeline.parse("grey").channels == 1 and Pipeline.parse("tightcrop").channels == 3
    assert Pipeline.parse("resize:20,resize:10").output_size == 10
    assert Pipeline.parse("tightcrop").output_size is None
    with pytest.raises(UserError, match="unknown preprocessing step 'blur'"):
        Pipeline.parse("tightcrop,blur")
    with pytest.raises(UserError, match="needs a size"):
        Pipeline.parse("resize")
    with pytest.raises(UserError, match="bad argument 'x'"):
        Pipeline.parse("resize:x")


def test_pipeline_runs_its_steps_in_order() -> None:
    image = _cell(box=(4, 8, 4, 8))
    out = Pipeline.parse("tightcrop:0,resize:8")(image)
    assert out.shape == (8, 8, 3) and (out == 100).all(), "cropped to the cell, then enlarged"
    out = Pipeline.parse("tightcrop,grey,resize:8")(image[..., 0])
    assert out.shape == (8, 8, 1), "a 2-d image gets a channel axis"
    assert Pipeline.parse("centercrop:10")(image).shape == (10, 10, 3)
    assert Pipeline.parse("tightcrop:1")(image).shape == (12, 12, 3), "the margin is passed on"
    assert out.flags["C_CONTIGUOUS"]


def test_dihedral_batch_applies_each_images_own_element() -> None:
    image = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)
    batch = image.repeat(8, 1, 1, 1)
    quarter = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    flip = torch.tensor([False] * 4 + [True] * 4)
    out = dihedral_batch(batch, quarter, flip)
    for i in range(8):
        x = torch.flip(image, dims=(3,)) if flip[i] else image
        assert torch.equal(out[i], torch.rot90(x, k=int(quarter[i]), dims=(2, 3))[0]), i
    assert torch.equal(batch[1], image[0]), "the input is not changed"


def _params(n: int, **values: torch.Tensor) -> dict[str, torch.Tensor]:
    params = {
        "quarter": torch.zeros(n, dtype=torch.long),
        "flip": torch.zeros(n, dtype=torch.bool),
        "angle": torch.zeros(n),
        "scale": torch.ones(n),
        "shift": torch.zeros(n, 2),
        "gain": torch.ones(n, 3),
        "brightness": torch.ones(n),
    }
    return {**params, **values}


def test_affine_matrices() -> None:
    theta = affine_matrices(_params(1, quarter=torch.tensor([1])))
    torch.testing.assert_close(theta[0], torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]))
    theta = affine_matrices(_params(1, flip=torch.tensor([True]), scale=torch.tensor([2.0]),
                                    shift=torch.tensor([[0.1, -0.2]])))  # fmt: skip
    torch.testing.assert_close(theta[0], torch.tensor([[-0.5, 0.0, 0.1], [0.0, 0.5, -0.2]]))
    theta = affine_matrices(_params(1, angle=torch.tensor([90.0])))
    torch.testing.assert_close(theta[0], torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_geometry_is_exact_without_affine_and_resamples_with_it() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    params = _params(2, quarter=torch.tensor([1, 0]), flip=torch.tensor([False, True]))
    out = apply_geometry(images, params)
    assert out.dtype == torch.uint8, "exact: in the images' own dtype"
    assert torch.equal(out[0], torch.rot90(images[0], 1, dims=(1, 2)))
    assert torch.equal(out[1], torch.flip(images[1], dims=(2,)))
    shifted = apply_geometry(images, _params(2, shift=torch.full((2, 2), 0.5)))
    assert shifted.dtype == torch.float32 and not torch.equal(shifted, images.float())
    same = apply_geometry(images.float(), _params(2, scale=torch.full((2,), 1.0 + 1e-7)))
    torch.testing.assert_close(same, images.float(), atol=1e-3, rtol=0)


def test_colour_jitter_scales_channels_and_saturates_at_white() -> None:
    assert color_factor(_params(2), 3) is None, "no jitter: no factor"
    params = _params(2, gain=torch.tensor([[2.0, 1.0, 0.5], [1.0, 1.0, 1.0]]),
                     brightness=torch.tensor([1.0, 0.5]))  # fmt: skip
    factor = color_factor(params, 3)
    torch.testing.assert_close(factor, torch.tensor([[2.0, 1.0, 0.5], [0.5, 0.5, 0.5]]))
    torch.testing.assert_close(color_factor(params, 1), torch.tensor([[2.0], [0.5]]))
    images = torch.full((2, 3, 2, 2), 0.6)
    out = apply_augmentation(images, params, white=1.0)
    assert out[0, 0].max() == 1.0, "saturates at white"
    torch.testing.assert_close(out[0, 2], torch.full((2, 2), 0.3))
    torch.testing.assert_close(out[1], torch.full((3, 2, 2), 0.3))
    assert torch.equal(apply_augmentation(images, _params(2)), images)


def test_augment_draw_ranges_and_switches() -> None:
    generator = torch.Generator().manual_seed(0)
    params = Augment().draw(400, generator)
    assert set(params["quarter"].tolist()) == {0, 1, 2, 3}
    assert set(params["flip"].tolist()) == {False, True}
    assert params["angle"].abs().max() <= 15 and params["angle"].abs().max() > 10
    assert (params["scale"] - 1).abs().max() <= 0.1 and (params["scale"] - 1).abs().max() > 0.07
    assert params["shift"].abs().max() <= 0.12 and params["shift"].abs().max() > 0.1
    assert (params["gain"] - 1).abs().max() <= 0.1 and (params["gain"] - 1).abs().max() > 0.07
    assert (params["brightness"] - 1).abs().max() <= 0.15
    assert (params["brightness"] - 1).abs().max() > 0.1
    none = Augment(dihedral=False, affine=False, color=False).draw(50, generator)
    assert (none["quarter"] == 0).all() and not none["flip"].any()
    assert (none["angle"] == 0).all() and (none["scale"] == 1).all()
    assert (none["shift"] == 0).all() and (none["gain"] == 1).all()
    assert (none["brightness"] == 1).all()
    assert Augment.parse("off") is None and Augment.parse(" , ") is None
    assert Augment.parse("Dihedral, COLOR") == Augment(dihedral=True, affine=False, color=True)
    with pytest.raises(UserError, match="unknown augmentation 'blur'"):
        Augment.parse("dihedral,blur")


def test_tight_crop_centres_the_cell_and_keeps_a_default_margin() -> None:
    block = np.zeros((100, 100, 3), dtype=np.uint8)
    block[11:31, 50:90] = 100  # 20 rows x 40 columns: odd bounds, so an off-by-one shows
    out = tight_crop(block, margin=0.0)
    rows = np.flatnonzero(foreground_mask(out).any(axis=1))
    assert out.shape == (40, 40, 3) and (rows[0], rows[-1]) == (10, 29), "10 black rows each side"
    assert tight_crop(block).shape == (44, 44, 3), "default margin 5 % of the side, each side"
    assert Pipeline.parse("tightcrop")(block).shape == (44, 44, 3)
    assert Pipeline.parse("tightcrop:0.25")(block).shape == (60, 60, 3), "a fractional margin"
    wide = np.zeros((50, 120, 3), dtype=np.uint8)
    wide[30:50, 10:30] = 100  # at the bottom edge of a frame wider than high
    out = tight_crop(wide, margin=0.25)
    assert out.shape == (30, 30, 3) and (out[-5:] == 0).all(), "padded below, not shifted"
    assert int(foreground_mask(out).sum()) == 400


def test_center_crop_and_resize_of_frames_that_are_not_square() -> None:
    tall = np.zeros((100, 40, 3), dtype=np.uint8)
    assert center_crop(tall, 64).shape == (40, 40, 3), "never wider than the image"
    for h, w in ((32, 64), (64, 32)):
        assert resize(np.zeros((h, w, 3), dtype=np.uint8), 32).shape == (32, 32, 3)
    stripes = np.zeros((32, 64, 3), dtype=np.uint8)
    stripes[::2] = 255  # upscaled rows are interpolated (bilinear), not repeated (box)
    assert len(np.unique(resize(stripes, 64))) > 2
    checker = np.kron([[0, 255], [255, 0]], np.ones((2, 2))).astype(np.uint8)[..., None]
    assert len(np.unique(resize(checker, 8))) > 2


def test_grey_keeps_black_and_white() -> None:
    image = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    assert to_grey(image)[0, :, 0].tolist() == [0, 255]


def test_equalize_maps_the_cumulative_counts_exactly() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    values = [20, 21] + [100] * 6 + [200] * 8  # 16 cell pixels; cumulative 1, 2, 8, 16
    image.reshape(-1, 3)[: len(values)] = np.array(values)[:, None]
    out = equalize_foreground(image).reshape(-1, 3)[: len(values), 0]
    # (count up to the value - count of the darkest) / (all - count of the darkest) * 254 + 1
    expected = {20: 1, 21: 1 + round(254 / 15), 100: 1 + round(254 * 7 / 15), 200: 255}
    assert dict(zip(values, out.tolist(), strict=True)) == expected
    two = np.zeros((8, 8, 3), dtype=np.uint8)
    two.reshape(-1, 3)[:16] = 50
    two.reshape(-1, 3)[15] = 60  # one pixel above fifteen: the whole range in one step
    assert sorted(set(equalize_foreground(two).reshape(-1).tolist())) == [0, 1, 255]


def test_spec_spaces_and_no_op_names() -> None:
    assert str(Pipeline.parse("tight crop , resize : 64")) == "tightcrop,resize:64"
    assert str(Pipeline.parse("plain")) == "none" and str(Pipeline.parse("PLAIN,none")) == "none"
    assert str(Pipeline.parse("none,tightcrop")) == "tightcrop", "a no-op name is skipped"
    assert repr(Pipeline.parse("grey")) == "Pipeline('grey')"
    with pytest.raises(UserError, match="unknown preprocessing step ''"):
        Pipeline.parse(":224")
    with pytest.raises(UserError) as error:
        Pipeline.parse("blur")
    assert str(error.value).endswith("known: tightcrop, centercrop, resize, grey, equalize")


def test_augment_parse_turns_on_exactly_what_it_names() -> None:
    assert Augment.parse("none,off") is None
    for name in AUGMENTATIONS:
        expected = {k: k == name for k in AUGMENTATIONS}
        assert Augment.parse(name) == Augment(**expected), name
    with pytest.raises(UserError) as error:
        Augment.parse("blur")
    assert str(error.value) == "unknown augmentation 'blur'; known: dihedral, affine, color"


def test_augment_draw_is_seeded_symmetric_and_shaped_alike() -> None:
    def draw(augment: Augment, n: int = 4000) -> dict[str, torch.Tensor]:
        return augment.draw(n, torch.Generator().manual_seed(3))

    on, again = draw(Augment()), draw(Augment())
    assert all(torch.equal(on[k], again[k]) for k in on), "the generator decides every value"
    assert 0.45 < on["flip"].float().mean() < 0.55, "a flip half of the time"
    assert on["angle"].min() < -10 and on["angle"].max() > 10, "both directions"
    off = draw(Augment(dihedral=False, affine=False, color=False))
    for key, value in on.items():
        assert (value.dtype, value.shape) == (off[key].dtype, off[key].shape), key


def test_augment_call_is_seeded_saturates_at_white_and_does_not_warn() -> None:
    images = torch.full((16, 3, 8, 8), 0.95)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Augment()(images, torch.Generator().manual_seed(1))
    assert torch.equal(out, Augment()(images, torch.Generator().manual_seed(1)))
    assert out.max() == 1.0, "white by default is 1"
    scaled = Augment(dihedral=False, affine=False)(images * 255, torch.Generator(), white=255.0)
    assert scaled.max() == 255.0 and scaled.min() < 240


def test_augmentation_keeps_the_images_dtype() -> None:
    images = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    params = _params(2, angle=torch.tensor([10.0, -5.0]), gain=torch.full((2, 3), 1.1))
    assert apply_augmentation(images, params).dtype == torch.float64
    assert apply_augmentation(images.bfloat16(), params).dtype == torch.bfloat16
    assert apply_augmentation(images, params).max() == 1.0, "white by default is 1"
    grey = apply_augmentation(images[:, :1], params)
    assert grey.shape == (2, 1, 8, 8), "one channel stays one channel under colour jitter"
    theta = affine_matrices(params).double()
    grid = affine_grid(theta, 7, 5)  # sides whose pixel centres float32 cannot hold exactly
    assert grid.dtype == torch.float64
    expected = torch.nn.functional.affine_grid(theta, [2, 3, 7, 5], align_corners=False)
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-12)


def test_affine_matrices_stay_on_the_parameters_device() -> None:
    params = {k: v.to("meta") for k, v in _params(2, angle=torch.tensor([1.0, 2.0])).items()}
    assert affine_matrices(params).device.type == "meta"


def test_affine_matrices_scale_a_rotation_and_a_flip() -> None:
    params = _params(1, angle=torch.tensor([90.0]), scale=torch.tensor([2.0]),
                     flip=torch.tensor([True]))  # fmt: skip
    theta = affine_matrices(params)[0]
    torch.testing.assert_close(theta, torch.tensor([[0.0, -0.5, 0.0], [-0.5, 0.0, 0.0]]))


def test_dihedral_views_are_the_eight_distinct_elements() -> None:
    image = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)
    views = dihedral_views(image)
    assert len(views) == 8 and torch.equal(views[0], image)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8


class _Recorder:
    """Stands in for a tensor: records how `to_device` moves it."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def pin_memory(self) -> _Recorder:
        self.calls.append("pin")
        return self

    def to(self, device: torch.device, **options: object) -> _Recorder:
        self.calls.append(("to", device, options))
        return self


def test_to_device_pins_and_copies_asynchronously_only_to_a_gpu() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert to_device(_Recorder(), cuda).calls == ["pin", ("to", cuda, {"non_blocking": True})]
    assert to_device(_Recorder(), cpu).calls == [("to", cpu, {})]


def test_load_image_is_rgb_and_names_a_missing_or_broken_file(tmp_path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 5), 80, dtype=np.uint8)).save(grey)
    assert load_image(str(grey)).shape == (4, 5, 3)
    missing = tmp_path / "missing.bmp"
    with pytest.raises(UserError) as error:
        load_image(str(missing))
    assert str(error.value) == f"{missing}: image not found; restore it or remove it from the CSV"
    assert error.value.path == missing
    broken = tmp_path / "broken.bmp"
    broken.write_bytes(b"BM not an image")
    with pytest.raises(UserError) as error:
        load_image(str(broken))
    assert str(error.value).startswith(f"{broken}: cannot decode image (")
    assert str(error.value).endswith("); the file is truncated or corrupt, replace it")
    assert error.value.path == broken
