"""`lab3 data summary`: what a dataset folder holds, and a full decode of it through the cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from lab3.data.cache import load_or_build
from lab3.data.layouts import Layout, load_layout
from lab3.data.preprocess import Pipeline


def counts_table(layout: Layout) -> pd.DataFrame:
    """Images per split and class (`unlabelled` for test images without a label)."""
    table = layout.table.assign(
        cls=layout.table["label"].map(lambda v: layout.class_names[v] if v >= 0 else "unlabelled")
    )
    counts = table.pivot_table(
        index="split", columns="cls", values="path", aggfunc="count", fill_value=0
    )
    counts = counts.reindex([s for s in ("train", "valid", "test") if s in counts.index])
    counts["total"] = counts.sum(axis=1)
    return counts


def image_sizes(layout: Layout, sample: int = 50) -> pd.Series:
    """Sizes and modes of a sample of the images (opening headers only)."""
    paths = layout.table["path"].sample(min(sample, len(layout.table)), random_state=0)
    sizes = []
    for path in paths:
        with Image.open(path) as img:
            sizes.append(f"{img.width}x{img.height} {img.mode}")
    return pd.Series(sizes).value_counts()


def dataset_summary(
    data: str | Path,
    image_size: int = 64,
    preprocess: str = "tightcrop",
    split_mode: str = "stratified",
) -> str:
    """The folder's layout, counts per split (as `split_mode` splits a layout without a split of
    its own) and the cache's state, after building the cache at `image_size` and `preprocess`."""
    layout = load_layout(data, split_mode=split_mode)
    pipeline = Pipeline.for_config(preprocess, image_size)
    cache = load_or_build(layout, pipeline)
    lines = [
        f"data: {layout.root}",
        f"layout: {layout.name} ({layout.num_classes} classes: {', '.join(layout.class_names)})",
        "",
        counts_table(layout).to_string(),
        "",
        f"share of label 1 in train: {(layout.split('train')['label'] == 1).mean():.1%}",
        "image sizes (sample): " + ", ".join(f"{k} ({v})" for k, v in image_sizes(layout).items()),
    ]
    if layout.table["subject"].astype(bool).any():
        per_split = layout.table.groupby("split")["subject"].nunique().to_dict()
        lines.append(f"subjects per split: {per_split}")
    if layout.test_csvs:
        lines.append("test CSVs: " + ", ".join(p.name for p in layout.test_csvs.values()))
    state = "built" if cache.rebuilt else "up to date"
    lines.append(
        f"cache ({pipeline}): {state}, {cache.shape[0]} images of {cache.shape[1]}x{cache.shape[2]}"
        f"x{cache.shape[3]} at {cache.folder}"
    )
    lines.append(
        "train channel mean/std: "
        + ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(cache.mean, cache.std, strict=True))
    )
    return "\n".join(lines)
