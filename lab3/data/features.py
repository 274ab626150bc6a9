"""Hand-measured cell features: what a haematologist's checklist, or a classical image-analysis
pipeline, would measure on one cell. The classical baseline every report sets the networks against
(`lab3.workbook.classical`) and the synthetic generator's difficulty benchmark
(`lab3.data.synthetic.baselines`) both fit a linear classifier on them.

The cell is found as the crop finds it (`lab3.data.locate.cell_mask`), so the same features work
on a black frame and on a smear's own background.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image, ImageFilter

from lab3.data.locate import cell_mask
from lab3.data.preprocess import load_image

FEATURE_NAMES = (
    "area",  # the cell's pixels: blasts and reactive cells are larger
    "roughness",  # perimeter^2 / area: an irregular, notched outline scores high
    "elongation",  # the ratio of the outline's principal axes (1 = round)
    "fill",  # the cell's share of its bounding square
    "dark share",  # the darker bulk (nucleus) among the cell's pixels
    "mean red", "mean green", "mean blue",  # the stain's colour
    "spread red", "spread green", "spread blue",  # how uneven it is
    "texture fine", "texture mid", "texture coarse",  # luminance energy between blur scales
    "dark spots", "bright spots",  # clumped chromatin, pale vacuoles or nucleoli
)  # fmt: skip
BLUR_SCALES = (1.5, 4.0, 10.0)  # pixels: the three texture bands lie between these blurs
CONTEXT = 14  # pixels kept around the cell's box: the blurs need a little of the surround
CORE_EROSION = 12  # pixels: texture is read away from the outline, whose edge would dominate it


def cell_features(image: np.ndarray) -> np.ndarray:
    """The `FEATURE_NAMES` of one HxWx3 uint8 image (zeros when no cell is found)."""
    mask = cell_mask(image)
    if not mask.any():
        return np.zeros(len(FEATURE_NAMES))
    ys, xs = np.nonzero(mask)
    y0, x0 = max(ys.min() - CONTEXT, 0), max(xs.min() - CONTEXT, 0)
    window = (slice(y0, ys.max() + CONTEXT + 1), slice(x0, xs.max() + CONTEXT + 1))
    image, mask = image[window], mask[window]
    rgb = image.astype(np.float32)
    lum = (rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) / 3
    core = erode(mask, CORE_EROSION)
    core = core if core.any() else mask
    return np.array([*_shape(mask), *_colour(rgb, lum, mask), *_texture(lum, core)])


def _shape(mask: np.ndarray) -> list[float]:
    area = float(mask.sum())
    pad = np.pad(mask, 1)
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    perimeter = float((mask & ~interior).sum())  # cell pixels with a background 4-neighbour
    ys, xs = np.nonzero(mask)
    eigen = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float)) + 1e-6 * np.eye(2))
    side = max(np.ptp(ys), np.ptp(xs)) + 1
    return [area, perimeter**2 / area, float(np.sqrt(eigen[1] / eigen[0])), area / side**2]


def _colour(rgb: np.ndarray, lum: np.ndarray, mask: np.ndarray) -> list[float]:
    cell_lum = lum[mask]
    dark = float((cell_lum < np.percentile(cell_lum, 60) * 1.08).mean())
    return [dark, *rgb[mask].mean(axis=0), *rgb[mask].std(axis=0)]


def _texture(lum: np.ndarray, core: np.ndarray) -> list[float]:
    grey = Image.fromarray(np.round(lum).astype(np.uint8))  # one channel: a third of the work
    blurred = [lum] + [
        np.asarray(grey.filter(ImageFilter.GaussianBlur(s)), dtype=np.float32) for s in BLUR_SCALES
    ]
    energies = [
        float((fine - coarse)[core].std())
        for fine, coarse in zip(blurred[:-1], blurred[1:], strict=True)
    ]
    detail = (lum - blurred[2])[core]  # the fine and mid bands: spots a few pixels across
    spread = max(float(lum[core].std()), 1.0)
    return [*energies, float((detail < -spread).mean()), float((detail > spread).mean())]


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by a (2 steps + 1) square, via an integral image (fast, no SciPy)."""
    w = 2 * steps + 1
    total = np.pad(mask.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    out = np.zeros_like(mask)
    if mask.shape[0] < w or mask.shape[1] < w:
        return out
    box = total[w:, w:] - total[:-w, w:] - total[w:, :-w] + total[:-w, :-w]
    out[steps:-steps, steps:-steps] = box == w * w
    return out


def features_of(path: str) -> np.ndarray:
    """`cell_features` of one image file (a broken file is a UserError naming it)."""
    return cell_features(load_image(path))


def feature_matrix(paths: Sequence[str], workers: int | None = None) -> np.ndarray:
    """N x features for the images at `paths`, in their order, over `workers` processes."""
    workers = min(workers or os.cpu_count() or 1, max(len(paths) // 64, 1))
    if workers <= 1:
        rows = [features_of(p) for p in paths]
    else:
        with ProcessPoolExecutor(workers) as pool:  # as the cache decodes: no main guard
            rows = list(pool.map(features_of, paths, chunksize=16))
    return np.stack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))
