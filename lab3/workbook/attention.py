"""What notebook 05's section "What the networks look at" computes, and `lab3 explain`: the
Grad-CAM maps of each depth's best checkpoint (`lab3.engine.explain`), the share of their mass
on the cell per depth and split, right against wrong, the cells each panel shows, and the same
number for the preprocessing ablation's runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab3.config import MODEL_NAMES
from lab3.data.preprocess import foreground_mask
from lab3.engine.evaluate import LoadedCheckpoint
from lab3.engine.explain import (
    TARGET_LAYER,
    cams_for_files,
    cams_for_rows,
    choose_layer,
    explain_split,
    outcome_groups,
)
from lab3.errors import UserError
from lab3.formatting import pretty_model_name, style_table
from lab3.workbook.ablation import ABLATION_CSV, slug
from lab3.workbook.folders import WorkbookPaths
from lab3.workbook.results import ModelResults, short_class_names

# Maps a depth makes of a split: at most this many of its right and as many of its wrong images,
# evenly spread over each (all of the default's mistakes); a bounded cost on large splits, and
# two standard errors of a few points on a group's mean share
MAPS_PER_GROUP = 64
# The preprocessing ablation's runs (ResNet18, one view): as many per group of validation images
# (right, wrong), which keeps the section under a tenth of notebook 05 on a 2-core CPU
ABLATION_MAPS = MAPS_PER_GROUP
RIGHT, WRONG = "#2E7D32", "#B22222"  # title colours of a right and a wrong prediction
Frames = dict[str, dict[str, pd.DataFrame]]  # model -> split -> one row per image


def explain_runs(
    results: Mapping[str, ModelResults],
    splits: Sequence[str] | None = None,
    layer: str | None = None,
    per_group: int | None = MAPS_PER_GROUP,
) -> Frames:
    """Per depth and evaluated split (or those of `splits`), each image's evaluated prediction
    and, for up to `per_group` right and as many wrong ones, its map's foreground share
    (`engine.explain.explain_split`). The maps come from `layer`, by default the deepest stage
    fine enough at the run's image size (`choose_layer`)."""
    frames: Frames = {}
    for model, result in results.items():
        assert result.checkpoint is not None, "evaluate_runs opens each best.pt"
        stage = layer or choose_layer(result.config.image_size)
        frames[model] = {
            split: explain_split(result.checkpoint, split, evaluation.predictions, stage, per_group)
            for split, evaluation in result.evaluations.items()
            if splits is None or split in splits
        }
    return frames


def planned_maps(groups: Sequence[int], per_group: int | None = MAPS_PER_GROUP) -> int:
    """The Grad-CAM maps `explain_runs` makes of one depth's split whose images fall into groups
    (right, wrong, unlabelled) of these sizes: at most `per_group` of each (None: all)."""
    return sum(n if per_group is None else min(n, per_group) for n in groups)


def planned_ablation_maps(valid: int, maps: int | None = ABLATION_MAPS) -> int:
    """The maps `ablation_attention` makes of each of the ablation's runs: `maps` of the `valid`
    validation images (None: all)."""
    return valid if maps is None else min(maps, valid)


def map_layers(frames: Frames) -> dict[str, tuple[str, tuple[int, int]]]:
    """Per depth, the layer its maps come from and that layer's output size (how fine the maps
    really are)."""
    return {
        model: (frame.attrs["layer"], frame.attrs["grid"])
        for model, splits in frames.items()
        for frame in splits.values()
        if frame.attrs.get("grid")
    }


@dataclass(frozen=True)
class AttentionShares:
    """What one group of Grad-CAM maps (a depth on a split, or an ablation variant) puts on the
    cell, as fractions of 1: the numbers the report's prose is written from (`compare`). Each
    `..._two_se` is two standard errors of the number before it, NaN where there are too few
    maps to estimate it."""

    cell_area: float  # the cell's share of the image: what an evenly spread map puts on it
    on_cell: float  # the maps' share on the cell
    above_even: float  # on_cell - cell_area, per image
    above_even_two_se: float
    right: float  # the mean share of the right answers' maps
    wrong: float  # and of the mistakes'
    mistakes: int  # wrong predictions in the split, mapped or not
    right_minus_wrong: float
    right_minus_wrong_two_se: float
    images: int  # images in the split
    maps: int  # of them mapped


AttentionSummary = dict[str, dict[str, AttentionShares]]  # model -> split -> its shares
# The display table's column titles, one per field of `AttentionShares`, in its order
COLUMNS = {
    "cell area": "cell_area",
    "map on cell": "on_cell",
    "above even": "above_even",
    "± 2 SE even": "above_even_two_se",
    "right": "right",
    "wrong": "wrong",
    "mistakes": "mistakes",
    "right - wrong": "right_minus_wrong",
    "± 2 SE": "right_minus_wrong_two_se",
    "images": "images",
    "maps": "maps",
}
COUNTS = ("mistakes", "images", "maps")  # the fields that are counts, not shares


def compare(frame: pd.DataFrame) -> AttentionShares:
    """Mean foreground share of all, right and wrong images; the share above the cell's area
    (per image: what the map adds to an evenly spread one), the right - wrong difference, and
    two standard errors of each (NaN where a side has fewer than two maps).

    The means over the split are stratified: right, wrong and unlabelled images each weigh
    their share of the split, averaged over that group's maps (`explain_split` may have mapped
    only some of a large group), so a sample rich in mistakes does not tilt the split's mean."""
    groups = [
        (len(group) / len(frame), group.dropna(subset=["share"]))
        for _, group in outcome_groups(frame)
    ]
    mapped = frame.dropna(subset=["share"])
    right = mapped.loc[mapped["correct"] == 1, "share"].to_numpy()
    wrong = mapped.loc[mapped["correct"] == 0, "share"].to_numpy()
    noise = math.nan
    if len(right) > 1 and len(wrong) > 1:
        noise = 2 * math.sqrt(right.var(ddof=1) / len(right) + wrong.var(ddof=1) / len(wrong))
    above, above_noise = stratified(groups, lambda g: g["share"] - g["area"])
    return AttentionShares(
        cell_area=stratified(groups, lambda g: g["area"])[0],
        on_cell=stratified(groups, lambda g: g["share"])[0],
        above_even=above,
        above_even_two_se=above_noise,
        right=float(right.mean()) if len(right) else math.nan,
        wrong=float(wrong.mean()) if len(wrong) else math.nan,
        mistakes=int((frame["correct"] == 0).sum()) if len(frame) else 0,
        right_minus_wrong=(
            float(right.mean() - wrong.mean()) if len(right) and len(wrong) else math.nan
        ),
        right_minus_wrong_two_se=noise,
        images=len(frame),
        maps=len(mapped),
    )


def stratified(
    groups: Sequence[tuple[float, pd.DataFrame]],
    values: Callable[[pd.DataFrame], pd.Series],
) -> tuple[float, float]:
    """The stratified mean of `values` over (weight, rows) groups, and two standard errors
    (sum of weight² x variance / count; a group of one map adds no variance; NaN under two
    maps in all). Groups without rows drop out and the others' weights are rescaled."""
    kept = [(weight, values(rows).to_numpy(dtype=float)) for weight, rows in groups if len(rows)]
    total = sum(weight for weight, _ in kept)
    if not kept or total <= 0:
        return math.nan, math.nan
    mean = sum(weight * v.mean() for weight, v in kept) / total
    if sum(len(v) for _, v in kept) < 2:
        return float(mean), math.nan
    variance = sum(
        (weight / total) ** 2 * v.var(ddof=1) / len(v) for weight, v in kept if len(v) > 1
    )
    return float(mean), 2 * math.sqrt(variance)


def summarise(frames: Frames) -> AttentionSummary:
    """Per depth and split, what its maps put on the cell (`compare`)."""
    return {
        model: {split: compare(frame) for split, frame in splits.items()}
        for model, splits in frames.items()
    }


def attention_table(summary: AttentionSummary) -> pd.DataFrame:
    """The summary for display, one row per depth and split: the cell's share of the image (what
    an evenly spread map would put on it), the maps' share on the cell, right and wrong, and
    their difference, under the titles of `COLUMNS`."""
    rows = [
        {
            "model": pretty_model_name(model),
            "split": split,
            **{title: getattr(shares, name) for title, name in COLUMNS.items()},
        }
        for model, splits in summary.items()
        for split, shares in splits.items()
    ]
    return pd.DataFrame(rows).set_index(["model", "split"])


def style_summary(summary: AttentionSummary) -> Any:
    """`attention_table` for the notebook: shares as percentages, counts as they are."""
    shares = [title for title, name in COLUMNS.items() if name not in COUNTS]
    return style_table(attention_table(summary), percent=shares)


def panel_rows(frame: pd.DataFrame, classes: int, n: int = 8) -> list[tuple[str, pd.Series]]:
    """The cells of a depth's panel: for each class its most confident correct predictions, then
    for each true class its most confident mistakes; `n` cells in all, spread over the groups."""
    per_group = max(1, n // (2 * classes))
    picked = []
    labelled = frame[frame["label"] >= 0]
    for kind in ("correct", "mistakes"):
        for c in range(classes):
            if kind == "correct":
                group = labelled[(labelled["correct"] == 1) & (labelled["predicted"] == c)]
            else:
                group = labelled[(labelled["correct"] == 0) & (labelled["label"] == c)]
            best = group.sort_values("prob", ascending=False, kind="stable").head(per_group)
            picked += [((kind, c), row) for _, row in best.iterrows()]
    return picked  # type: ignore[return-value]


def attention_panel(
    result: ModelResults, frame: pd.DataFrame, split: str, n: int = 8
) -> dict[str, Any]:
    """The keyword arguments of `plots.plot_attention` for one depth."""
    assert result.checkpoint is not None
    names = short_class_names(result.evaluations[split].class_names)
    picked = panel_rows(frame, len(names), n)
    rows = [int(row["row"]) for _, row in picked]
    classes = [int(row["predicted"]) for _, row in picked]
    layer = frame.attrs.get("layer", TARGET_LAYER)
    images, cams = cams_for_rows(result.checkpoint, rows, classes, layer) if rows else ([], None)
    groups = [
        f"right: {names[c]}" if kind == "correct" else f"wrong: true {names[c]}"
        for (kind, c), _ in picked
    ]
    return {
        "images": list(images),
        "maps": [] if cams is None else list(cams.maps.numpy()),
        "masks": [foreground_mask(image) for image in images],
        "titles": [f"{names[int(r['predicted'])]} {r['prob']:.2f}" for _, r in picked],
        "groups": groups,
        "title_colors": [RIGHT if kind == "correct" else WRONG for (kind, _c), _ in picked],
        "title": f"{pretty_model_name(result.model)} on {split}: predicted class (probability), "
        f"input and Grad-CAM ({layer})",
    }


def depth_rows(frames: Frames, split: str, per_class: int = 2) -> list[int]:
    """The same cells for every depth: per class, `per_class` cells evenly spread over the
    split's rows of that class, and the cell the most depths get wrong (when one does)."""
    tables = [splits[split] for splits in frames.values() if split in splits]
    first = tables[0]
    wrong = sum(t.set_index("row")["correct"].eq(0).astype(int) for t in tables)
    rows: list[int] = []
    for c in sorted(int(v) for v in first["label"].unique() if v >= 0):
        members = np.sort(first.loc[first["label"] == c, "row"].to_numpy())
        if len(members) == 0:
            continue
        spread = np.unique(np.linspace(0, len(members) - 1, per_class).round().astype(int))
        rows += [int(members[i]) for i in spread]
    hardest = wrong.sort_values(ascending=False, kind="stable")
    if len(hardest) and hardest.iloc[0] > 0 and int(hardest.index[0]) not in rows:
        rows.append(int(hardest.index[0]))
    return rows


def depth_comparison(
    results: Mapping[str, ModelResults], frames: Frames, split: str, per_class: int = 2
) -> dict[str, Any]:
    """The keyword arguments of `plots.plot_attention_depths`: the same cells under each depth's
    map, each titled with that depth's predicted class and probability."""
    rows = depth_rows(frames, split, per_class)
    names = short_class_names(next(iter(results.values())).evaluations[split].class_names)
    maps, titles, colors = {}, {}, {}
    images: np.ndarray | list = []
    for model, result in results.items():
        assert result.checkpoint is not None
        frame = frames[model][split]
        table = frame.set_index("row").loc[rows]
        predicted = table["predicted"].astype(int).tolist()
        layer = frame.attrs.get("layer", TARGET_LAYER)
        images, cams = cams_for_rows(result.checkpoint, rows, predicted, layer)
        maps[model] = list(cams.maps.numpy())
        titles[model] = [
            f"{names[p]} {q:.2f}" for p, q in zip(predicted, table["prob"], strict=True)
        ]
        colors[model] = [RIGHT if ok == 1 else WRONG for ok in table["correct"]]
    labels = frames[next(iter(frames))][split].set_index("row").loc[rows, "label"]
    return {
        "images": list(images),
        "maps": maps,
        "titles": titles,
        "title_colors": colors,
        "masks": [foreground_mask(image) for image in images],
        "row_labels": [f"true {names[int(v)]}" for v in labels],
        "title": f"Where each depth looks ({split}): predicted class (probability)",
    }


def ablation_attention(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "auto",
    layer: str | None = None,
    maps: int | None = ABLATION_MAPS,
) -> dict[str, AttentionShares] | None:
    """Per variant of the preprocessing ablation (notebook 02), what its run's maps put on the
    cell (`compare`) over `maps` validation images (None: all), one view: does the tight crop
    put the maps on the cell where plain resize does not? None when the run has no ablation."""
    folder = WorkbookPaths.at(run_dir).ablation
    if not (folder / ABLATION_CSV).is_file():
        return None
    variants = pd.read_csv(folder / ABLATION_CSV)[["variant", "preprocess"]].drop_duplicates()
    shares: dict[str, AttentionShares] = {}
    layouts: dict = {}  # the variants share their data folder: it is parsed once
    for variant, spec in variants.itertuples(index=False):
        checkpoint = folder / slug(str(spec)) / "best.pt"
        if not checkpoint.is_file():
            continue
        data = str(data_dir) if data_dir is not None else None
        loaded = LoadedCheckpoint.open(checkpoint, data, device, layouts=layouts)
        stage = layer or choose_layer(loaded.config.image_size)
        shares[str(variant)] = compare(explain_split(loaded, "valid", layer=stage, per_group=maps))
    return shares or None


# ------------------------------------------------------------------------- lab3 explain


def _checkpoints(run: Path, model: str | None) -> dict[str, Path]:
    """The best.pt of each trained depth of a workbook run, or of a `lab3 train` run folder."""
    if not run.is_dir():
        raise UserError("no such run folder; pass --run outputs/<run>", run)
    if (run / "best.pt").is_file():
        found = {model or run.name: run / "best.pt"}
    else:
        runs = WorkbookPaths.at(run).runs
        found = {p.parent.name: p for p in runs.glob("*/best.pt")}
        order = [*MODEL_NAMES, *sorted(found)]  # the depths in the lab's order, then others
        found = {m: found[m] for m in dict.fromkeys(order) if m in found}
        if model is not None:
            found = {m: p for m, p in found.items() if m == model}
    if not found:
        what = f"runs/{model}/best.pt" if model else "runs/<model>/best.pt or best.pt"
        raise UserError(f"no checkpoint here (no {what}); train it first (`lab3 run`)", run)
    return found


def explain_run(
    run_dir: str | Path,
    model: str | None = None,
    n: int = 8,
    split: str | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    layer: str | None = None,
) -> list[Path]:
    """`lab3 explain --run`: each depth's panel, and the depths side by side when there are
    several, as PNGs in the run's figures folder. Returns the files written."""
    from lab3.plots import plot_attention, plot_attention_depths
    from lab3.workbook.results import load_history

    run = Path(run_dir)
    checkpoints = _checkpoints(run, model)
    results: dict[str, ModelResults] = {}
    for name, path in checkpoints.items():
        loaded = LoadedCheckpoint.open(path, data=data_dir, device=device)
        chosen = split or ("test" if loaded.data.has_labels("test") else "valid")
        if not loaded.data.has_labels(chosen):
            raise UserError(f"the {chosen} split has no labels to tell right from wrong", path)
        history = load_history(path.parent) if (path.parent / "history.csv").is_file() else None
        results[name] = ModelResults(
            name,
            path.parent,
            loaded.config,
            history if history is not None else pd.DataFrame(),
            {chosen: loaded.evaluate(chosen)},
            loaded,
        )
    figures = run / "figures" if not (run / "best.pt").is_file() else run
    written = []
    for result in results.values():
        assert result.checkpoint is not None
        _check_layer(result.checkpoint, layer)
    frames = explain_runs(results, layer=layer)
    for name, result in results.items():
        (chosen,) = result.evaluations
        args = attention_panel(result, frames[name][chosen], chosen, n)
        path = figures / f"attention_{name}_{chosen}.png"
        _close(plot_attention(**args, path=path))
        written.append(path)
    splits = {next(iter(r.evaluations)) for r in results.values()}
    if len(results) > 1 and len(splits) == 1:
        (chosen,) = splits
        path = figures / f"attention_depths_{chosen}.png"
        _close(plot_attention_depths(**depth_comparison(results, frames, chosen), path=path))
        written.append(path)
    return written


def explain_images(
    checkpoint: str | Path,
    images: Sequence[str | Path],
    out: str | Path,
    data_dir: str | Path | None = None,
    device: str = "auto",
    layer: str | None = None,
) -> Path:
    """`lab3 explain --checkpoint --images`: the maps of some image files, preprocessed as the
    checkpoint's data was, in one PNG at `out` (nothing else is written)."""
    from lab3.plots import plot_attention

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError("--out names the PNG to write, e.g. --out maps.png", out)
    loaded = LoadedCheckpoint.open(checkpoint, data=data_dir, device=device)
    stage = _check_layer(loaded, layer or choose_layer(loaded.config.image_size))
    pixels, cams = cams_for_files(loaded, [str(p) for p in images], stage)
    names = short_class_names(list(loaded.state["class_names"]))
    probs = cams.probs.numpy()
    predicted = cams.classes.numpy()
    figure = plot_attention(
        images=list(pixels),
        maps=list(cams.maps.numpy()),
        masks=[foreground_mask(p) for p in pixels],
        titles=[f"{names[c]} {probs[i, c]:.2f}" for i, c in enumerate(predicted)],
        groups=[Path(p).name for p in images],
        path=out,
        title=f"{pretty_model_name(loaded.config.model)}, one view: prediction (probability), "
        f"Grad-CAM ({stage})",
    )
    _close(figure)
    return out


def _check_layer(loaded: LoadedCheckpoint, layer: str | None) -> str | None:
    """A `--layer` the model has, or one line naming those it has."""
    names = [name for name, _ in loaded.model.named_children()]
    if layer is not None and layer not in dict(loaded.model.named_modules()):
        raise UserError(f"the model has no layer {layer!r}; its stages: {', '.join(names)}")
    return layer


def _close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
