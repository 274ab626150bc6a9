"""What notebook 01 (data exploration) computes: class balance, subjects per split, sample
pickers, image statistics and one batch through the course-style loader.

Kept out of the notebook so that each cell is one readable, tested call.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lab3.data.layouts import Layout
from lab3.data.preprocess import Pipeline, foreground_mask, load_image
from lab3.errors import UserError


def class_name(layout: Layout, label: int) -> str:
    return layout.class_names[label] if label >= 0 else "unlabelled"


def class_balance(layout: Layout) -> pd.DataFrame:
    """Images per split and the share of each class: the imbalance a 68 % baseline comes from."""
    table = layout.table
    rows = []
    for split in ("train", "valid", "test"):
        part = table[table["split"] == split]
        if part.empty:
            continue
        row: dict[str, Any] = {"split": split, "images": len(part)}
        for label, name in enumerate(layout.class_names):
            row[name] = float((part["label"] == label).mean())
        row["unlabelled"] = float((part["label"] < 0).mean())
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("split")
    if not (frame["unlabelled"] > 0).any():
        frame = frame.drop(columns="unlabelled")
    return frame


def subjects_per_split(layout: Layout) -> pd.DataFrame | None:
    """Distinct subjects per split and how many of them also appear in train; None if unknown.

    The course CSVs carry no subjects; C-NMC file names do, and `lab3 synth` writes them to
    metadata.csv, so the leakage of a per-image split can be shown.
    """
    table = layout.table.assign(subject=layout.table["subject"].astype(str))
    if not table["subject"].astype(bool).any():
        return None
    train = set(table.loc[table["split"] == "train", "subject"])
    rows = []
    for split in ("train", "valid", "test"):
        names = set(table.loc[table["split"] == split, "subject"]) - {""}
        if names:
            rows.append(
                {"split": split, "subjects": len(names), "also in train": len(names & train)}
            )
    return pd.DataFrame(rows).set_index("split")


def pick_samples(
    layout: Layout, split: str = "train", per_class: int = 4, seed: int = 0
) -> pd.DataFrame:
    """A few rows of each class (seeded), class by class, for sample grids."""
    part = layout.split(split)
    picked = [
        group.sample(min(per_class, len(group)), random_state=seed)
        for _label, group in part.groupby("label", sort=True)
    ]
    if not picked:
        raise UserError(f"the {split} split has no images to show", layout.root)
    return pd.concat(picked).reset_index(drop=True)


def load_images(paths: Sequence[str]) -> list[np.ndarray]:
    return [load_image(p) for p in paths]


def sample_titles(layout: Layout, samples: pd.DataFrame) -> list[str]:
    return [class_name(layout, int(label)) for label in samples["label"]]


def _image_stats(path: str) -> tuple[int, int, float, float]:
    image = load_image(path)
    black = 1.0 - float(foreground_mask(image).mean())
    return image.shape[1], image.shape[0], float(image.mean()), black


def image_statistics(layout: Layout, per_group: int = 150, seed: int = 0) -> pd.DataFrame:
    """Size, mean pixel value and black-background fraction of up to `per_group` images per
    split and class: how much of each frame is cell, and whether brightness alone tells classes
    apart (it should not, or a model could learn a staining shortcut)."""
    table = layout.table
    sample = pd.concat(
        g.sample(min(per_group, len(g)), random_state=seed)
        for _key, g in table.groupby(["split", "label"], sort=True)
    )
    with ThreadPoolExecutor(max_workers=4) as pool:  # decoding releases the GIL
        stats = list(pool.map(_image_stats, sample["path"]))
    frame = pd.DataFrame(stats, columns=["width", "height", "mean_pixel", "black_fraction"])
    return pd.concat(
        [sample[["split", "label", "id"]].reset_index(drop=True), frame], axis=1
    ).reset_index(drop=True)


def statistics_by_class(layout: Layout, stats: pd.DataFrame) -> pd.DataFrame:
    """Mean of the image statistics per class (labelled images only)."""
    labelled = stats[stats["label"] >= 0]
    grouped = labelled.groupby("label")[["mean_pixel", "black_fraction"]].mean()
    grouped.index = [class_name(layout, int(i)) for i in grouped.index]
    grouped.index.name = "class"
    grouped.insert(0, "images", labelled.groupby("label").size().to_numpy())
    return grouped


def course_dataloader_batch(
    data_dir: str | Path, preprocess: str, image_size: int, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One batch from the course-style Dataset through a plain torch DataLoader.

    This is exactly how the course skeleton uses its loader; lab3's training reads the decoded
    cache instead, so every image is decoded once rather than once per epoch.
    """
    from torch.utils.data import DataLoader

    from lab3.data.dataset import LeukemiaDataset

    dataset = LeukemiaDataset(
        data_dir, "train", transform=Pipeline.for_config(preprocess, image_size)
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    images, labels = next(iter(loader))
    return images, labels, len(dataset)
