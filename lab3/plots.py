"""Every figure of the lab, drawn in one place so the notebooks and the report look alike.

Each function returns the matplotlib Figure and, given `path`, also saves it as a PNG (atomically,
so an interrupted run never leaves half an image behind). Figures are made with pyplot so that they
show inline in Jupyter; in a notebook assign the result (``fig = plots.plot_...(...)``) or end the
line with ``;``, otherwise Jupyter shows the figure twice. Scripts that make many figures should
``plt.close(fig)`` when done. No backend is forced here: Jupyter keeps its inline backend and a
headless process falls back to Agg on its own (set ``MPLBACKEND=Agg`` to be explicit).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from lab3.fileio import atomic_path
from lab3.formatting import pretty_model_name

DPI = 130
UNLABELLED = "unlabelled"
# The titles of image tiles sit just above them (the axes are off, no ticks to clear). A fixed
# height spares matplotlib placing each title anew at every draw: half a panel's drawing time.
IMAGE_TITLE_Y = 1.0
SPLIT_ORDER = ("train", "valid", "test")

# Fixed colours per depth so that ResNet50 is the same orange in every figure of a run.
MODEL_COLORS = {
    "resnet18": "C0",
    "resnet34": "C4",
    "resnet50": "C1",
    "resnet101": "C5",
    "resnet152": "C2",
}
CLASS_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")
UNLABELLED_COLOR = "#9A9A9A"

_STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linestyle": "-",
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}

F = TypeVar("F", bound=Callable[..., Figure])

_percent = FuncFormatter(lambda v, _pos: f"{v:.0f}%")


def _styled(func: F) -> F:
    """Draw inside the project style without changing the caller's rcParams."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        # The first figure of a Jupyter session resolves the backend, and the inline backend turns
        # interactive mode on; rc_context would restore the old "off" and stop inline display.
        with plt.rc_context(_STYLE):
            fig = func(*args, **kwargs)
            interactive = matplotlib.is_interactive()
        matplotlib.interactive(interactive)
        return fig

    return wrapper  # type: ignore[return-value]


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Save `fig` so that readers see the old image or the new one, never a truncated file."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def model_color(name: str, index: int) -> str:
    return MODEL_COLORS.get(name.lower().removesuffix("-imagenet"), f"C{index % 10}")


def _label_name(value: Any, class_names: Sequence[str] | None) -> str:
    """Readable class name; NaN or negative labels are the unlabelled test rows."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNLABELLED
    try:
        index = int(value)
    except (TypeError, ValueError):
        return str(value)
    if index < 0:
        return UNLABELLED
    if class_names is not None and index < len(class_names):
        return str(class_names[index])
    return str(index)


def _label_order(names: Sequence[str], class_names: Sequence[str] | None) -> list[str]:
    """Class order, then any other labels, unlabelled last."""
    unique = list(dict.fromkeys(names))
    known = [str(c) for c in class_names] if class_names is not None else []
    ordered = [c for c in known if c in unique]
    rest = sorted((n for n in unique if n not in ordered and n != UNLABELLED), key=_natural_key)
    return ordered + rest + ([UNLABELLED] if UNLABELLED in unique else [])


def _natural_key(text: str) -> tuple[Any, ...]:
    parts = []
    for chunk in re.split(r"(\d+)", str(text)):
        parts.append((0, int(chunk)) if chunk.isdigit() else (1, chunk))
    return tuple(parts)


def _class_color(name: str, order: Sequence[str]) -> str:
    if name == UNLABELLED:
        return UNLABELLED_COLOR
    return CLASS_COLORS[list(order).index(name) % len(CLASS_COLORS)]


def _message_figure(
    message: str, title: str | None = None, figsize: tuple[float, float] = (6.0, 2.0)
) -> Figure:
    fig, ax = plt.subplots(figsize=figsize)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#555555")
    if title:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- data exploration


@_styled
def plot_class_counts(
    table: pd.DataFrame,
    path: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Images per split and class",
) -> Figure:
    """Grouped bars of images per split and class; shows the class imbalance at a glance."""
    for column in ("split", "label"):
        if column not in table.columns:
            raise ValueError(f"plot_class_counts needs a '{column}' column")
    labels = table["label"].map(lambda v: _label_name(v, class_names))
    splits_present = list(dict.fromkeys(table["split"].astype(str)))
    splits = [s for s in SPLIT_ORDER if s in splits_present]
    splits += [s for s in splits_present if s not in splits]
    order = _label_order(list(labels), class_names)
    counts = (
        pd.crosstab(table["split"].astype(str), labels)
        .reindex(index=splits, columns=order)
        .fillna(0)
        .astype(int)
    )

    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(splits) + 2), 4.0))
    width = 0.8 / max(1, len(order))
    x = np.arange(len(splits))
    for i, name in enumerate(order):
        heights = counts[name].to_numpy()
        offsets = x - 0.4 + width * (i + 0.5)
        bars = ax.bar(offsets, heights, width * 0.95, label=name, color=_class_color(name, order))
        totals = counts.sum(axis=1).to_numpy()
        for bar, h, total in zip(bars, heights, totals, strict=True):
            if h == 0:
                continue
            share = f"\n{h / total:.0%}" if len(order) > 1 and total else ""
            ax.annotate(
                f"{h:,}{share}",
                (bar.get_x() + bar.get_width() / 2, h),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks(x, [f"{s}\n(n={counts.loc[s].sum():,})" for s in splits])
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.set_ylim(0, max(1, counts.to_numpy().max()) * 1.22)
    ax.grid(axis="x", visible=False)
    ax.legend(title="class", loc="upper right")
    fig.tight_layout()
    return _finish(fig, path)


@_styled
def plot_image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    path: str | Path | None = None,
    suptitle: str | None = None,
    cell_size: float = 2.2,
    title_colors: Sequence[str] | None = None,
) -> Figure:
    """Images side by side: samples, preprocessing steps, augmentation views.

    Accepts HxWx3 or HxW arrays (uint8, or floats in 0..1); HxW are shown in grey.
    """
    images = list(images)
    if not images:
        return _finish(_message_figure("no images", suptitle), path)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    title_space = 0.35 if titles is not None else 0.0
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(cell_size * ncols, (cell_size + title_space) * nrows + (0.5 if suptitle else 0)),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        image = np.asarray(images[i])
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            vmax = 255 if image.dtype == np.uint8 else None
            ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        if titles is not None:
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(
                str(titles[i]), fontsize=9, fontweight="normal", color=color, y=IMAGE_TITLE_Y
            )
    if suptitle:
        fig.suptitle(suptitle, fontsize=12, fontweight="bold")
    fig.tight_layout()
    return _finish(fig, path)


@_styled
def plot_intensity_histograms(
    stats: pd.DataFrame,
    path: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    columns: Sequence[str] = ("mean_pixel", "black_fraction"),
    bins: int = 40,
) -> Figure:
    """Per-class distributions of simple image statistics: do classes differ before any model?"""
    columns = [c for c in columns if c in stats.columns]
    if "label" not in stats.columns or not columns:
        raise ValueError(
            "plot_intensity_histograms needs a 'label' column and one of "
            + "mean_pixel, black_fraction"
        )
    labels = stats["label"].map(lambda v: _label_name(v, class_names))
    order = _label_order(list(labels), class_names)
    axis_labels = {
        "mean_pixel": "mean pixel value (0-255)",
        "black_fraction": "fraction of black pixels",
    }
    fig, axes = plt.subplots(1, len(columns), figsize=(5.0 * len(columns), 3.6), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=True):
        values = pd.to_numeric(stats[column], errors="coerce")
        finite = values[np.isfinite(values)]
        edges = np.histogram_bin_edges(finite, bins=bins) if len(finite) else bins
        for name in order:
            v = values[(labels == name).to_numpy()].dropna()
            if v.empty:
                continue
            color = _class_color(name, order)
            ax.hist(
                v, bins=edges, density=True, alpha=0.35, color=color, label=f"{name} (n={len(v):,})"
            )
            ax.hist(v, bins=edges, density=True, histtype="step", color=color, linewidth=1.4)
            ax.axvline(v.mean(), color=color, linestyle="--", linewidth=1)
        ax.set_xlabel(axis_labels.get(column, column))
        ax.set_ylabel("density")
        ax.set_title(column.replace("_", " "))
        ax.legend(title="class (dashed = mean)", loc="best")
    fig.tight_layout()
    return _finish(fig, path)


# --------------------------------------------------------------------------- training curves


def _epochs(history: pd.DataFrame) -> np.ndarray:
    if "epoch" in history.columns:
        return history["epoch"].to_numpy()
    return np.arange(1, len(history) + 1)


_SPLIT_STYLES = (("train", "-"), ("valid", "--"), ("test", ":"))


def _plot_curves(
    histories: Mapping[str, pd.DataFrame],
    metric: str,
    ylabel: str,
    title: str,
    as_percent: bool,
) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(8.6, 4.6))
    _draw_curves(ax, histories, metric, ylabel, title, as_percent)
    if ax.lines:
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            title="solid train · dashed valid\ndotted test",
        )
    fig.tight_layout()
    return fig, ax


def _draw_curves(
    ax: Any,
    histories: Mapping[str, pd.DataFrame],
    metric: str,
    ylabel: str,
    title: str,
    as_percent: bool,
) -> None:
    """Each history's `<split>_<metric>` columns on `ax`: one colour per model, one line style
    per split (solid train, dashed valid, dotted test)."""
    for index, (name, history) in enumerate(histories.items()):
        color = model_color(name, index)
        epochs = _epochs(history)
        for split, style in _SPLIT_STYLES:
            column = f"{split}_{metric}"
            if column not in history.columns:
                continue
            values = pd.to_numeric(history[column], errors="coerce").to_numpy(dtype=float)
            keep = np.isfinite(values)
            if not keep.any():
                continue
            y = values[keep] * (100.0 if as_percent else 1.0)
            ax.plot(
                epochs[keep],
                y,
                linestyle=style,
                color=color,
                linewidth=1.8,
                marker="o" if keep.sum() == 1 else None,
                label=f"{pretty_model_name(name)} {split}",
            )
    if not ax.lines:
        ax.text(0.5, 0.5, "no history yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if as_percent:
        ax.yaxis.set_major_formatter(_percent)


@_styled
def plot_accuracy_curves(
    histories: Mapping[str, pd.DataFrame],
    path: str | Path | None = None,
    title: str = "Accuracy per epoch: ResNet18 / 50 / 152",
) -> Figure:
    """The lab's comparison figure: train/valid(/test) accuracy of every depth in one axes.

    One colour per model; solid = train, dashed = valid, dotted = test (drawn only when the history
    has a `test_acc` column with values). Accuracies are stored as 0..1 and shown in %.
    """
    fig, ax = _plot_curves(histories, "acc", "accuracy", title, as_percent=True)
    for index, (name, history) in enumerate(histories.items()):
        if "valid_acc" not in history.columns:
            continue
        values = pd.to_numeric(history["valid_acc"], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).any():
            continue
        best = int(np.nanargmax(values))
        ax.scatter(
            _epochs(history)[best],
            values[best] * 100,
            s=36,
            color=model_color(name, index),
            edgecolor="black",
            linewidth=0.6,
            zorder=5,
        )
    if any("valid_acc" in h.columns for h in histories.values()):
        ax.text(
            0.99,
            0.02,
            "● best valid epoch",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="#444444",
        )
    return _finish(fig, path)


@_styled
def plot_live_curves(
    history: pd.DataFrame, model: str, epochs: int, path: str | Path | None = None
) -> Figure:
    """Accuracy and loss of the depth being trained, side by side, redrawn after every epoch
    (notebook 04). The x axis spans the planned `epochs` from the first, so each redraw adds a
    point instead of rescaling the picture the student is watching."""
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    _draw_curves(acc, {model: history}, "acc", "accuracy", "Accuracy", as_percent=True)
    _draw_curves(loss, {model: history}, "loss", "cross-entropy loss", "Loss", as_percent=False)
    for ax in (acc, loss):
        ax.set_xlim(0.5, max(epochs, len(history), 1) + 0.5)
    if acc.lines:
        acc.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{pretty_model_name(model)}: epoch {len(history)} of {epochs}", fontsize=11)
    fig.tight_layout()
    return _finish(fig, path)


@_styled
def plot_scratch_vs_pretrained(
    scratch: Mapping[str, pd.DataFrame],
    pretrained: Mapping[str, pd.DataFrame],
    path: str | Path | None = None,
    title: str = "Accuracy per epoch: from scratch vs from ImageNet weights",
) -> Figure:
    """Each depth's accuracy from scratch (solid) and from ImageNet weights (dashed), one colour
    per depth: validation accuracy bold, training accuracy thin. Outside the course's rules."""
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for index, model in enumerate(scratch):
        color = model_color(model, index)
        for label, history, style in (
            ("scratch", scratch[model], "-"),
            ("ImageNet", pretrained.get(model), "--"),
        ):
            if history is None:
                continue
            epochs = _epochs(history)
            name = f"{pretty_model_name(model)} {label}"
            valid = pd.to_numeric(history["valid_acc"], errors="coerce") * 100
            marker = "o" if len(history) == 1 else None  # one epoch: a point, not a line
            ax.plot(
                epochs, valid, style, color=color, linewidth=2.0, marker=marker,
                label=f"{name} (valid)",
            )  # fmt: skip
            train = pd.to_numeric(history["train_acc"], errors="coerce") * 100
            ax.plot(epochs, train, style, color=color, linewidth=0.9, alpha=0.5, marker=marker)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right", title="thin: training accuracy", title_fontsize=8)
    return _finish(fig, path)


@_styled
def plot_loss_curves(
    histories: Mapping[str, pd.DataFrame],
    path: str | Path | None = None,
    title: str = "Loss per epoch",
) -> Figure:
    """Cross-entropy per epoch, same layout as the accuracy figure (to spot over-fitting)."""
    fig, _ax = _plot_curves(histories, "loss", "cross-entropy loss", title, as_percent=False)
    return _finish(fig, path)


@_styled
def plot_lr_schedule(
    history: pd.DataFrame, path: str | Path | None = None, title: str = "Learning rate"
) -> Figure:
    """Learning rate per epoch; log scale when it spans more than a decade (cosine, step decay)."""
    if "lr" not in history.columns:
        raise ValueError("plot_lr_schedule needs an 'lr' column")
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    lr = pd.to_numeric(history["lr"], errors="coerce").to_numpy(dtype=float)
    ax.plot(_epochs(history), lr, color="C3", linewidth=1.8, marker="o", markersize=3)
    positive = lr[np.isfinite(lr) & (lr > 0)]
    if positive.size and positive.max() / positive.min() > 10:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _finish(fig, path)


# --------------------------------------------------------------------------- evaluation


def _draw_confusion(
    ax: Any,
    cm: np.ndarray,
    class_names: Sequence[str],
    normalize: bool,
    title: str | None,
) -> Any:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    if len(class_names) != cm.shape[0]:
        raise ValueError(
            f"{len(class_names)} class names for a {cm.shape[0]}-class confusion matrix"
        )
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    shown = share * 100 if normalize else cm
    vmax = 100 if normalize else max(1, cm.max())
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            text = f"{share[i, j]:.1%}\n({cm[i, j]:,})" if normalize else f"{cm[i, j]:,}"
            dark = shown[i, j] > vmax * 0.55
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=10,
                color="white" if dark else "black",
            )
    ticks = np.arange(cm.shape[0])
    ax.set_xticks(ticks, [str(c) for c in class_names])
    ax.set_yticks(ticks, [str(c) for c in class_names])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    total = cm.sum()
    accuracy = f"accuracy {np.trace(cm) / total:.2%} (n={total:,})" if total else "no samples"
    ax.set_title(f"{title}\n{accuracy}" if title else accuracy, fontsize=11)
    return image


@_styled
def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    path: str | Path | None = None,
    title: str | None = None,
    normalize: bool = False,
) -> Figure:
    """Heatmap of a confusion matrix (rows = truth) with counts, or row-normalised % and counts."""
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    image = _draw_confusion(ax, cm, class_names, normalize, title or "Confusion matrix")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("% of true class" if normalize else "images")
    fig.tight_layout()
    return _finish(fig, path)


@_styled
def plot_confusion_matrices(
    cms: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str | Path | None = None,
    normalize: bool = False,
    title: str | None = "Confusion matrices",
) -> Figure:
    """One confusion-matrix panel per model, side by side, for the report's comparison."""
    if not cms:
        return _finish(_message_figure("no confusion matrices", title), path)
    fig, axes = plt.subplots(1, len(cms), figsize=(3.4 * len(cms), 3.5), squeeze=False)
    for ax, (name, cm) in zip(axes.flat, cms.items(), strict=True):
        _draw_confusion(ax, cm, class_names, normalize, pretty_model_name(name))
    for ax in axes.flat[1:]:
        ax.set_ylabel("")
    if title:
        fig.suptitle(
            title + (" (row-normalised)" if normalize else ""), fontsize=12, fontweight="bold"
        )
    fig.tight_layout()
    return _finish(fig, path)


@_styled
def plot_metric_bars(
    results: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """Bars for an ablation table (e.g. preprocessing x TTA -> valid accuracy), values annotated.

    Values in 0..1 are shown as %. Repeated (x, hue) rows (several seeds) become mean bars with a
    standard-deviation whisker. Categories keep the table's order.
    """
    for column in (x, y) + ((hue,) if hue else ()):
        if column not in results.columns:
            raise ValueError(f"plot_metric_bars: no column '{column}' in {list(results.columns)}")
    data = results[[x, y] + ([hue] if hue else [])].copy()
    data[y] = pd.to_numeric(data[y], errors="coerce")
    values = data[y].dropna()
    scale = 100.0 if len(values) and values.abs().max() <= 1.0 else 1.0
    data[y] = data[y] * scale
    x_order = list(dict.fromkeys(data[x]))
    hue_order = list(dict.fromkeys(data[hue])) if hue else [None]
    keys = [x] + ([hue] if hue else [])
    grouped = data.groupby(keys, sort=False, dropna=False)[y].agg(["mean", "std", "count"])

    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(x_order) * len(hue_order) + 2), 3.6))
    width = 0.8 / len(hue_order)
    positions = np.arange(len(x_order))
    for i, h in enumerate(hue_order):
        means, errors = [], []
        for xv in x_order:
            key = (xv, h) if hue else xv
            if key in grouped.index:
                row = grouped.loc[key]
                means.append(float(row["mean"]))
                errors.append(float(row["std"]) if row["count"] > 1 else 0.0)
            else:
                means.append(np.nan)
                errors.append(0.0)
        label = None if hue is None else str(h)
        bars = ax.bar(
            positions - 0.4 + width * (i + 0.5),
            means,
            width * 0.92,
            yerr=errors if any(errors) else None,
            capsize=3,
            label=label,
            color=f"C{i % 10}",
        )
        for bar, m, err in zip(bars, means, errors, strict=True):
            if np.isfinite(m):
                ax.annotate(
                    f"{m:.1f}" if scale == 100 else f"{m:.3g}",
                    (bar.get_x() + bar.get_width() / 2, m + err),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    ax.set_xticks(positions, [str(v) for v in x_order], rotation=20 if len(x_order) > 4 else 0)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    if scale == 100:
        tops = [bar.get_height() for bar in ax.patches if np.isfinite(bar.get_height())]
        ax.set_ylim(0, max([105.0] + [t + 8 for t in tops]))
        ax.yaxis.set_major_formatter(_percent)
    ax.grid(axis="x", visible=False)
    ax.set_title(title or f"{y.replace('_', ' ')} by {x.replace('_', ' ')}")
    if hue:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title=hue)
    fig.tight_layout()
    return _finish(fig, path)


@_styled
def plot_misclassified(
    images: Sequence[np.ndarray],
    true_labels: Sequence[int],
    pred_labels: Sequence[int],
    probs: Sequence[float] | Sequence[np.ndarray],
    class_names: Sequence[str],
    path: str | Path | None = None,
    ncols: int = 6,
    title: str = "Misclassified images: true / predicted (probability)",
) -> Figure:
    """Grid of the model's mistakes, titled 'true / pred (p)' where p is the predicted class's
    probability; per-image probability vectors are accepted too."""
    images = list(images)
    if not images:
        return _finish(_message_figure("no misclassified images", title, figsize=(7.0, 2.0)), path)
    if not (len(images) == len(true_labels) == len(pred_labels) == len(probs)):
        raise ValueError("plot_misclassified: images, labels and probabilities differ in length")
    titles = []
    for t, p, prob in zip(true_labels, pred_labels, probs, strict=True):
        prob = np.asarray(prob, dtype=float)
        value = float(prob[int(p)]) if prob.size > 1 else float(prob.reshape(-1)[0])
        titles.append(
            f"{_label_name(t, class_names)} / {_label_name(p, class_names)} ({value:.2f})"
        )
    return plot_image_grid(
        images,
        titles,
        ncols=ncols,
        path=path,
        suptitle=title,
        cell_size=1.9,
        title_colors=["#B22222"] * len(images),
    )


# --------------------------------------------------------------------------- class-activation maps


def _show_image(ax: Any, image: np.ndarray) -> None:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else None)
    else:
        ax.imshow(image)


def cam_overlay(
    image: np.ndarray, cam: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """One RGB image (floats in 0-1): the map in the jet colours, scaled to its own maximum,
    blended over the image, and the cell's outline (the mask's edge pixels) in white. Drawn as
    one picture rather than an image, a translucent map and a contour: a fraction of the
    drawing time of a panel of many cells."""
    image = _rgb01(image)
    cam = np.asarray(cam, dtype=float)
    peak = cam.max()
    colours = matplotlib.colormaps["jet"](cam / peak if peak > 0 else cam)[..., :3]
    blended = (1 - alpha) * image + alpha * colours
    if mask is not None and 0 < np.mean(mask) < 1:
        blended[_outline(np.asarray(mask, dtype=bool))] = 1.0
    return blended


def _rgb01(image: np.ndarray) -> np.ndarray:
    """An image (uint8 0-255, or floats 0-1; grey or RGB) as RGB floats in 0-1."""
    pixels = np.asarray(image)
    scale = 255.0 if pixels.dtype == np.uint8 else 1.0
    pixels = pixels.astype(float) / scale
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return np.clip(pixels, 0.0, 1.0)


TILE_GAP = 0.08  # the white gap between the tiles of one picture, a share of a tile's width


def _gap_pixels(width: int) -> int:
    return max(1, round(TILE_GAP * width))


def _side_by_side(*tiles: np.ndarray) -> np.ndarray:
    """RGB images of one size in one picture, left to right, `TILE_GAP` of white between."""
    height, width = tiles[0].shape[:2]
    spacer = np.ones((height, _gap_pixels(width), 3))
    pieces = [piece for tile in tiles for piece in (spacer, tile)][1:]
    return np.concatenate(pieces, axis=1)


def _tile_centre(index: int, count: int, width: int) -> float:
    """Where the centre of tile `index` of a `_side_by_side` picture of `count` tiles, each
    `width` pixels wide, lies, as a share of the picture's width."""
    gap = _gap_pixels(width)
    return (index * (width + gap) + width / 2) / (count * width + (count - 1) * gap)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels with a 4-neighbour outside it (or on the image's border)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


@_styled
def plot_attention(
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    groups: Sequence[str],
    masks: Sequence[np.ndarray] | None = None,
    title_colors: Sequence[str] | None = None,
    path: str | Path | None = None,
    title: str = "Grad-CAM: input and map",
    cell_size: float = 1.5,
) -> Figure:
    """One row per group (e.g. 'correct: blast', 'mistakes: true normal'), each cell of the
    group as a pair of panels: the input as the model sees it, then its class-activation map
    over it (red: most weight), with the cell's outline; `titles` name the predicted class and
    its probability."""
    if not (len(images) == len(maps) == len(titles) == len(groups)):
        raise ValueError("plot_attention: images, maps, titles and groups differ in length")
    if not images:
        return _finish(_message_figure("no images to explain", title, figsize=(7.0, 2.0)), path)
    order = list(dict.fromkeys(groups))
    members = {g: [i for i, name in enumerate(groups) if name == g] for g in order}
    ncols = max(len(m) for m in members.values())
    fig, axes = plt.subplots(
        len(order),
        ncols,
        figsize=(cell_size * 2 * ncols + 0.8, (cell_size + 0.45) * len(order) + 0.6),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for r, group in enumerate(order):
        axes[r, 0].text(
            -0.08, 0.5, group, transform=axes[r, 0].transAxes, rotation=90,
            ha="right", va="center", fontsize=9,
        )  # fmt: skip
        for c, i in enumerate(members[group]):
            overlay = cam_overlay(images[i], maps[i], None if masks is None else masks[i])
            axes[r, c].imshow(_side_by_side(_rgb01(images[i]), overlay))
            color = title_colors[i] if title_colors is not None else "black"
            axes[r, c].set_title(
                str(titles[i]), fontsize=8, fontweight="normal", color=color, loc="left",
                y=IMAGE_TITLE_Y,
            )  # fmt: skip
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.tight_layout()
    return _finish(fig, path)


@_styled
def plot_attention_depths(
    images: Sequence[np.ndarray],
    maps: Mapping[str, Sequence[np.ndarray]],
    titles: Mapping[str, Sequence[str]],
    row_labels: Sequence[str],
    masks: Sequence[np.ndarray] | None = None,
    title_colors: Mapping[str, Sequence[str]] | None = None,
    path: str | Path | None = None,
    title: str = "Where each depth looks",
    cell_size: float = 1.6,
) -> Figure:
    """The same cells (rows) under every depth's map (after the input), so the depths'
    attention can be compared cell by cell. Each row is one picture (input, then one overlay per
    depth) with its titles written above the tiles: a fifth of the axes of a grid."""
    if not images:
        return _finish(_message_figure("no images to explain", title, figsize=(7.0, 2.0)), path)
    models = list(maps)
    fig, axes = plt.subplots(
        len(images),
        1,
        figsize=(cell_size * (1 + len(models)) + 0.4, (cell_size + 0.3) * len(images) + 0.6),
        squeeze=False,
    )
    headers = ["input", *map(pretty_model_name, models)]
    for i, (ax, image) in enumerate(zip(axes[:, 0], images, strict=True)):
        ax.axis("off")
        mask = None if masks is None else masks[i]
        overlays = [cam_overlay(image, maps[model][i], mask) for model in models]
        ax.imshow(_side_by_side(_rgb01(image), *overlays))
        texts = [(str(row_labels[i]), "black")] + [
            (str(titles[m][i]), title_colors[m][i] if title_colors is not None else "black")
            for m in models
        ]
        for j, (text, color) in enumerate(texts):
            x = _tile_centre(j, len(texts), np.asarray(image).shape[1])
            ax.text(x, 1.02, text, transform=ax.transAxes, ha="center", va="bottom",
                    fontsize=8, color=color)  # fmt: skip
            if i == 0:
                ax.text(x, 1.2, headers[j], transform=ax.transAxes, ha="center", va="bottom",
                        fontsize=9, fontweight="bold")  # fmt: skip
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.tight_layout()
    return _finish(fig, path)
