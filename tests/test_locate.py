"""The cell locator: on a black frame it is the tight crop it always was (so the synthetic default,
C-NMC and the course's data crop exactly as before); on a smear it finds the stained cell."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from lab3.data.locate import cell_box, cell_mask, foreground_mask, has_black_frame
from lab3.data.preprocess import load_image, tight_crop
from lab3.data.synthetic.render import make_subjects, render_cell
from lab3.data.synthetic.retinopathy import draw_fundus

# sha256 of the tight crops of the 12 synthetic cells below, recorded with the tight crop of
# before the locator (the bounding box of the non-black pixels): the same bytes now
BLACK_FRAME_CROPS = "bca129d9c6755e2fa812e31f0ce4385b298946524cbd8ccd5002a1dff187c82e"


def _synthetic_cells() -> list[np.ndarray]:
    styles = make_subjects(0)
    return [
        render_cell(np.random.default_rng(seed), seed % 2, styles[seed % len(styles)], 160)
        for seed in range(12)
    ]


def _non_black_box(image: np.ndarray) -> tuple[float, float, int]:
    """The oracle: centre and square side of the non-black pixels' bounding box."""
    rows = np.flatnonzero(foreground_mask(image).any(axis=1))
    cols = np.flatnonzero(foreground_mask(image).any(axis=0))
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    return (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2, int(side)


def test_black_frame_crops_are_byte_identical_to_the_tight_crop_before_the_locator() -> None:
    digest = hashlib.sha256()
    for image in _synthetic_cells():
        assert has_black_frame(image)
        digest.update(tight_crop(image).tobytes())
    assert digest.hexdigest() == BLACK_FRAME_CROPS


def test_on_a_black_frame_the_cell_is_every_non_black_pixel(fixtures: Path) -> None:
    images = [load_image(str(p)) for p in sorted((fixtures / "cnmc").glob("*.bmp"))]
    images += [draw_fundus(np.random.default_rng(grade), grade, 128) for grade in range(3)]
    assert images
    for image in images:
        assert has_black_frame(image)
        assert (cell_mask(image) == foreground_mask(image)).all()
        assert cell_box(image) == _non_black_box(image)


def _smear(size: int = 120, centre: tuple[int, int] = (60, 60), radius: int = 20) -> np.ndarray:
    """A pale smear background with a pinkish red cell, a platelet and a dark purple nucleus."""
    yy, xx = np.mgrid[:size, :size]
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (225, 200, 190)
    image[(yy - 15) ** 2 + (xx - 100) ** 2 <= 12**2] = (190, 150, 165)  # a red cell
    image[(yy - 105) ** 2 + (xx - 10) ** 2 <= 3**2] = (100, 30, 120)  # a platelet, off centre
    nucleus = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    image[nucleus] = (75, 30, 115)
    image[nucleus & (yy % 5 == 2) & (xx % 5 == 2)] = (230, 215, 205)  # pale chromatin: holes
    return image


def test_on_a_smear_the_stained_nucleus_near_the_centre_is_found() -> None:
    image = _smear(centre=(55, 65))
    assert not has_black_frame(image)
    mask = cell_mask(image)
    assert mask.sum() == pytest.approx(np.pi * 20**2, rel=0.1), "the nucleus, holes filled"
    cy, cx, side = cell_box(image)
    assert (cy, cx) == pytest.approx((55.5, 65.5), abs=1)
    assert side == round(41 * 1.4), "the nucleus's box grown by the cytoplasm's ring"
    crop = tight_crop(image, margin=0.0)
    assert crop.shape == (side, side, 3) and crop.min() < 100, "the crop holds the nucleus"


def test_a_smear_with_nothing_stained_is_left_uncropped() -> None:
    plain = np.full((40, 40, 3), 220, np.uint8)
    assert cell_box(plain) is None and tight_crop(plain) is plain
