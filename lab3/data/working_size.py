"""The working size (pixels a side the networks see) chosen from the data, within a profile's time
budget, instead of one number for every set.

What an image needs is its cell's resolution: the crop (`tightcrop`) cuts the located cell out,
and resizing it to the working size averages `side / size` native pixels into one. A profile
states how many native pixels one working pixel may average at most (`max_blur`, the finest
texture it still resolves, in the cell's own pixels) and the range its time budget allows
(`smallest`, `largest`): the size is the smallest multiple of 16 that keeps within `max_blur`,
held inside that range. The cells are measured on a fixed sample of training images.

On the synthetic default and the course's data (cells about 250 px a side) the quick profile's
48 px average about 5 native pixels: within its limit of 6, so 48 it stays, its recipe's size.
On a smear's lymphocytes (about 120 px a side), 48 px average 2.5: there is nothing finer to
gain by a larger size at that limit, and the full profile no longer blows a 120 px cell up to
224 px (4 times the pixels for no detail).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab3.data.locate import cell_box
from lab3.data.preprocess import load_image

SAMPLE = 48  # training images measured: the median of 48 moves by a few pixels at most
STEP = 16  # sizes are multiples of this: every ResNet stage halves it evenly down to 1 px


@dataclass(frozen=True)
class SizeRule:
    """A profile's budget for the working size (see the module docstring)."""

    max_blur: float  # native pixels one working pixel may average, at most
    smallest: int  # the recipe's own size: never below it (its times and accuracy were tuned)
    largest: int  # the time budget: never above it


def median_cell_side(table: pd.DataFrame, sample: int = SAMPLE, seed: int = 0) -> float | None:
    """The median side, in native pixels, of the cell's square box over a fixed random sample of
    the training rows of a layout table (None when no cell is found)."""
    train = table[table["split"] == "train"]
    chosen = train.sample(min(sample, len(train)), random_state=seed) if len(train) else train
    sides = [box[2] for p in chosen["path"] if (box := cell_box(load_image(p))) is not None]
    return float(np.median(sides)) if sides else None


def choose_size(side: float, rule: SizeRule) -> tuple[int, str]:
    """The working size for cells of median `side` native pixels, and why, in one sentence."""
    needed = STEP * math.ceil(side / rule.max_blur / STEP)
    size = min(max(needed, rule.smallest), rule.largest)
    why = (
        f"the cells measure {side:.0f} px a side (median of the training sample); at {size} px "
        f"one working pixel averages {side / size:.1f} of theirs"
    )
    if size == rule.smallest and needed < size:
        return size, f"{why}, within the limit of {rule.max_blur:g}: the profile's own size"
    if size == rule.largest and needed > size:
        return size, f"{why}, over the limit of {rule.max_blur:g}: the time budget's largest"
    return size, f"{why}, the smallest size within the limit of {rule.max_blur:g}"
