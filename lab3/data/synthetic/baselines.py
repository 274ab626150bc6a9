"""How hard the synthetic task is without deep learning: the numbers a CNN must beat.

`feature_baseline` fits logistic regression on hand-measured features of the images (the
classical baseline's, `lab3.data.features`);
`latent_ceiling` fits a flexible classifier on the latent cues themselves, the most any image
model can reach. Benchmarks and tests use them; the workbook does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lab3.data.features import feature_matrix
from lab3.data.synthetic.render import CUE_SCALES, sample_cell_params
from lab3.data.synthetic.write import assign_labels


def feature_table(
    meta: pd.DataFrame, root: Path, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features (`lab3.data.features`) and labels for every row of `meta` (paths relative to
    `root`)."""
    paths = [str(Path(root) / p) for p in meta["path"]]
    return feature_matrix(paths, workers), meta["label"].to_numpy()


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
