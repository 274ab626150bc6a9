"""Percentages, name lists and styled tables, formatted the same in every notebook and the report.

Generated prose, tables and figures share these few helpers, so '93.1 %', 'a, b and c' and
'ResNet152' read alike wherever they appear; they import nothing else of lab3, so every layer
may use them (the models' reference check included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def pct(value: float | None, digits: int = 1) -> str:
    """0.9312 -> '93.1 %'; missing values read as 'n/a' in generated prose."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f} %"


def seconds_text(value: float) -> str:
    """An epoch's time as prose prints it: whole seconds from 10 s, one decimal below
    (45.3 -> '45 s', 9.75 -> '9.8 s', 0.5 -> '0.5 s')."""
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def style_table(
    frame: pd.DataFrame,
    percent: Sequence[str] = (),
    decimals: Mapping[str, int] | None = None,
    scientific: Sequence[str] = (),
) -> Any:
    """A pandas Styler with percentages as '93.1 %', fixed decimals (with thousands separators)
    and scientific notation where asked, so notebooks and the report show the same tidy table;
    missing values read as an en dash."""
    numeric = {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}
    formats: dict[str, Any] = {c: pct for c in percent if c in numeric}
    for column, digits in (decimals or {}).items():
        if column in numeric:
            formats[column] = f"{{:,.{digits}f}}"
    for column in scientific:
        if column in numeric:
            formats[column] = "{:.1e}"
    return frame.style.format(formats, na_rep="–").hide(axis="index", names=True)


def join_names(names: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(names)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def pretty_model_name(name: str) -> str:
    """'resnet152' -> 'ResNet152', so legends read like the lab handout; a run from ImageNet
    weights ('resnet18-imagenet') and torchvision's networks say so."""
    if name.endswith("-imagenet"):
        return pretty_model_name(name.removesuffix("-imagenet")) + " (ImageNet)"
    if name.startswith("torchvision:"):
        return name.removeprefix("torchvision:") + " (torchvision)"
    if name.lower().startswith("resnet"):
        return "ResNet" + name[len("resnet") :]
    return name
