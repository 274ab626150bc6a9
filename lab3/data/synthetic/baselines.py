"""How hard the synthetic task is without deep learning: the numbers a CNN must beat.

`feature_baseline` fits logistic regression on hand-crafted features of the images;
`latent_ceiling` fits a flexible classifier on the latent cues themselves, the most any image
model can reach. Benchmarks and tests use them; the workbook does not.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from lab3.data.synthetic.render import CUE_SCALES, sample_cell_params
from lab3.data.synthetic.write import assign_labels


def cell_features(img: np.ndarray) -> np.ndarray:
    """Summary features a non-deep baseline would use: size, outline roughness, nucleus
    fraction, mean colour, brightness spread and texture energy at three scales."""
    any_channel = img.max(axis=2) > 0
    if not any_channel.any():
        return np.zeros(10)
    ys, xs = np.nonzero(any_channel)
    margin = 14  # crop to the cell: the same numbers, a third of the work
    y0, x0 = max(ys.min() - margin, 0), max(xs.min() - margin, 0)
    img = np.ascontiguousarray(img[y0 : ys.max() + margin + 1, x0 : xs.max() + margin + 1])
    rgb = img.astype(np.float32)
    mask = img.max(axis=2) > 0
    area = float(mask.sum())
    lum = rgb.mean(axis=2)
    # Boundary pixels: cell pixels with a background 4-neighbour; roughness = perimeter^2 / area.
    pad = np.pad(mask, 1)
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    perimeter = float((mask & ~interior).sum())
    core = _erode(mask, 12)
    if not core.any():
        core = mask
    cell_lum = lum[mask]
    # The nucleus is the darker bulk; the pale rim and halo are cytoplasm.
    nucleus = float((cell_lum < np.percentile(cell_lum, 60) * 1.08).mean())
    im = Image.fromarray(img)
    blurred = [lum] + [
        np.asarray(im.filter(ImageFilter.GaussianBlur(s)), dtype=np.float32).mean(axis=2)
        for s in (1.5, 4.0, 10.0)
    ]
    energies = [
        float((fine - coarse)[core].std())
        for fine, coarse in zip(blurred[:-1], blurred[1:], strict=True)
    ]
    return np.array(
        [
            area,
            perimeter**2 / area,
            nucleus,
            *rgb[core].mean(axis=0),
            float(lum[core].std()),
            *energies,
        ]
    )


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by a (2 steps + 1) square, via an integral image (fast, no SciPy)."""
    w = 2 * steps + 1
    total = np.pad(mask.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    box = total[w:, w:] - total[:-w, w:] - total[w:, :-w] + total[:-w, :-w]
    out = np.zeros_like(mask)
    out[steps:-steps, steps:-steps] = box == w * w
    return out


def _features_of(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return cell_features(np.asarray(im.convert("RGB")))


def feature_table(
    meta: pd.DataFrame, root: Path, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels for every row of `meta` (paths relative to `root`)."""
    paths = [str(Path(root) / p) for p in meta["path"]]
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        feats = [_features_of(p) for p in paths]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            feats = pool.map(_features_of, paths, chunksize=8)
    return np.stack(feats), meta["label"].to_numpy()


def feature_baseline(meta: pd.DataFrame, root: Path, workers: int | None = None) -> float:
    """Accuracy of logistic regression on hand-crafted features: train split -> valid+test.

    The number deep models must beat; on this generator it sits well above the 68 % majority
    class and well below what a CNN reaches.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = feature_table(meta, root, workers)
    train = (meta["split"] == "train").to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x[train], y[train])
    return float(model.score(x[~train], y[~train]))


def latent_ceiling(
    n: int = 20000, seed: int = 0, scales: tuple[str, ...] = ("global", "mid", "fine")
) -> float:
    """Accuracy of a flexible classifier on the latent cues themselves (no rendering).

    An estimate of the best any image model can do on this generator when it sees the cues of
    `scales` perfectly: ("global", "mid") is the most a model that cannot resolve the fine
    cues can reach. The cues overlap and a few cells are drawn from the other class.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns = [i for i, scale in enumerate(CUE_SCALES) if scale in scales]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCE11]))
    labels = assign_labels(rng, n)
    x = np.stack([sample_cell_params(rng, int(y)).vector()[columns] for y in labels])
    half = n // 2
    model = HistGradientBoostingClassifier(max_iter=300).fit(x[:half], labels[:half])
    return float(model.score(x[half:], labels[half:]))
