"""What the workbook's notebooks compute, so that each notebook cell is one readable call.

The notebooks explain and show; everything longer than a few lines lives here, where it is
tested: sample pickers and image statistics (01), the preprocessing views and the ablation runner
(02), the stage and cost tables and the live check against a reference ResNet (03), a resumable
training call (04), and the evaluation tables, submissions and the generated discussion (05).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lab3.config import TrainConfig, make_config
from lab3.data.layouts import TRUTH_CSV, Layout, load_layout
from lab3.data.preprocess import (
    Augment,
    Pipeline,
    equalize_foreground,
    foreground_mask,
    load_image,
    tight_crop,
    to_grey,
)
from lab3.engine.evaluate import Evaluation, evaluate_checkpoint, predict_submission
from lab3.engine.train import RunResult, fit
from lab3.errors import UserError
from lab3.fileio import write_text_atomic
from lab3.models import ARCHITECTURES, BasicBlock, build_model, summary
from lab3.plots import pretty_model_name
from lab3.submission import score, write_submission

METADATA_CSV = "metadata.csv"  # path,label,split,subject: written by `lab3 synth`

# --------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class WorkbookPaths:
    """The folders of one workbook run; every notebook writes only below `root`."""

    root: Path

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions"

    @property
    def ablation(self) -> Path:
        return self.root / "ablation"

    def run(self, model: str) -> Path:
        return self.runs / model


def workbook_paths(run_dir: str | Path) -> WorkbookPaths:
    """The run folder's layout, created where missing (a notebook may run on its own)."""
    paths = WorkbookPaths(Path(run_dir).expanduser().resolve())
    for folder in (paths.figures, paths.runs, paths.submissions):
        folder.mkdir(parents=True, exist_ok=True)
    return paths


def parse_models(models: str | Sequence[str]) -> list[str]:
    """Papermill passes the models as one comma string; notebooks want a list."""
    names = models.split(",") if isinstance(models, str) else list(models)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise UserError("no models given; pass e.g. models='resnet18,resnet50,resnet152'")
    return names


def pct(value: float | None, digits: int = 1) -> str:
    """0.9312 -> '93.1 %'; missing values read as 'n/a' in generated prose."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f} %"


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


# ---------------------------------------------------------------------------- 01 data exploration


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


def skeleton_batch(
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


# ----------------------------------------------------------------------- 02 preprocessing views


def preprocessing_steps(image: np.ndarray, image_size: int) -> tuple[list[np.ndarray], list[str]]:
    """The host-side steps applied to one image, one panel each, titled with their sizes."""
    cropped = tight_crop(image)
    panels = [
        (image, f"raw {image.shape[1]} px"),
        (Pipeline.for_config("none", image_size)(image), f"plain resize to {image_size} px"),
        (cropped, f"tight crop ({cropped.shape[1]} px)"),
        (equalize_foreground(cropped), "+ cell-only equalisation"),
        (to_grey(cropped)[..., 0], "grey (one channel)"),
        (Pipeline.for_config("tightcrop", image_size)(image), f"tight crop to {image_size} px"),
    ]
    return [p for p, _ in panels], [t for _, t in panels]


def preprocessing_panels(
    images: Sequence[np.ndarray], image_size: int
) -> tuple[list[np.ndarray], list[str]]:
    """`preprocessing_steps` of several images, one row of panels each."""
    panels: list[np.ndarray] = []
    titles: list[str] = []
    for image in images:
        steps, names = preprocessing_steps(image, image_size)
        panels += steps
        titles += names
    return panels, titles


def augmentation_views(
    image: np.ndarray,
    image_size: int,
    augment: str = "dihedral,affine,color",
    count: int = 7,
    preprocess: str = "tightcrop",
    seed: int = 0,
) -> tuple[list[np.ndarray], list[str]]:
    """The working-size image and `count` random training views of it, as the model sees them."""
    base = Pipeline.for_config(preprocess, image_size)(image)
    augmenter = Augment.parse(augment)
    batch = torch.tensor(base).permute(2, 0, 1).float().div(255)
    batch = batch.unsqueeze(0).repeat(count, 1, 1, 1)
    if augmenter is not None:
        batch = augmenter(batch, torch.Generator().manual_seed(seed))
    views = (batch.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    images = [base, *list(views)]
    return images, ["input", *[f"view {i + 1}" for i in range(count)]]


# ------------------------------------------------------------------------ training (02 and 04)

# Settings that do not change what a run learns: a run folder may be continued with other values.
RUNTIME_FIELDS = frozenset({"out", "device", "workers", "amp", "channels_last", "compile"})


def _differences(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    out = []
    for key, value in wanted.to_dict().items():
        old = saved.to_dict().get(key)
        if key in RUNTIME_FIELDS:
            continue
        if key == "data":
            same = Path(str(old)).expanduser().resolve() == Path(str(value)).expanduser().resolve()
        else:
            same = old == value
        if not same:
            out.append(f"{key} {old!r} -> {value!r}")
    return out


def fit_or_resume(config: TrainConfig, progress: bool | None = None) -> RunResult:
    """Train into `config.out`, or continue/reuse what is already there.

    A finished run is read back without touching it, an interrupted one continues from last.pt,
    so re-running a notebook never loses work and never fails on its own output.
    """
    if not config.out:
        return fit(config, progress=progress)
    run = Path(config.out)
    saved_config = run / "config.json"
    if (run / "last.pt").is_file() and saved_config.is_file():
        changed = _differences(TrainConfig.load(saved_config), config)
        if changed:
            raise UserError(
                f"this run folder holds a run with other settings ({'; '.join(changed[:3])}); "
                "delete it or use another run_dir",
                run,
            )
        result_file = run / "result.json"
        if result_file.is_file() and (run / "history.csv").is_file():
            result = json.loads(result_file.read_text())
            if not result.get("interrupted") and result.get("epochs_done", 0) >= config.epochs:
                history = pd.read_csv(run / "history.csv")
                return RunResult(
                    run, history, int(result["best_epoch"]), float(result["best_valid_acc"])
                )
        return fit(config, resume=True, progress=progress)
    return fit(config, progress=progress)


# The preprocessing ablation: resnet18 for a few epochs per host pipeline (label -> spec).
ABLATION_VARIANTS: dict[str, str] = {
    "plain resize": "none",
    "tight crop": "tightcrop",
    "tight crop + equalise": "tightcrop,equalize",
}
# Per profile: how long each variant trains (the profile's own settings apply otherwise).
ABLATION: dict[str, dict[str, int]] = {
    "quick": {"epochs": 6, "train_limit": 800},
    "full": {"epochs": 15},
    "tiny": {"epochs": 1, "train_limit": 32},
}
ABLATION_TTA = (1, 8)
ABLATION_CSV = "ablation.csv"


def slug(text: str) -> str:
    """A folder name for a preprocessing spec: 'tightcrop,equalize' -> 'tightcrop-equalize'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "none"


def tta_label(views: int) -> str:
    return "1 view (no TTA)" if views == 1 else f"{views} views (TTA)"


def run_ablation(
    data_dir: str | Path,
    out_dir: str | Path,
    variants: Mapping[str, str] | Sequence[str] | None = None,
    profile: str = "quick",
    model: str = "resnet18",
    epochs: int | None = None,
    train_limit: int | None = None,
    device: str = "auto",
    tta: Sequence[int] = ABLATION_TTA,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Train `model` once per preprocessing variant into `out_dir/<variant>/` and evaluate the
    best checkpoint on the validation split with each number of TTA views.

    Finished variants are reused, interrupted ones resumed, so the notebook can be re-run.
    Returns one row per (variant, TTA) and writes it to `out_dir/ablation.csv`.
    """
    if variants is None:
        variants = ABLATION_VARIANTS
    named = dict(variants) if isinstance(variants, Mapping) else {v: v for v in variants}
    settings = {**ABLATION.get(profile, {})}
    if epochs is not None:
        settings["epochs"] = epochs
    if train_limit is not None:
        settings["train_limit"] = train_limit
    out_dir = Path(out_dir)
    rows = []
    for label, spec in named.items():
        config = make_config(
            profile,
            model=model,
            data=str(data_dir),
            out=str(out_dir / slug(spec)),
            preprocess=spec,
            device=device,
            **settings,
        )
        result = fit_or_resume(config, progress=progress)
        seconds = float(pd.to_numeric(result.history.get("seconds"), errors="coerce").sum())
        for views in tta:
            evaluation = evaluate_checkpoint(
                result.run_dir / "best.pt", split="valid", tta=views, device=device
            )
            rows.append(
                {
                    "variant": label,
                    "preprocess": spec,
                    "tta": tta_label(views),
                    "views": views,
                    "valid_acc": evaluation.metrics["accuracy"],
                    "balanced_acc": evaluation.metrics["balanced_accuracy"],
                    "roc_auc": evaluation.metrics.get("roc_auc", float("nan")),
                    "valid_images": int(evaluation.metrics["n"]),
                    "best_epoch": result.best_epoch,
                    "epochs": config.epochs,
                    "train_images": config.train_limit or None,
                    "train_seconds": round(seconds, 1),
                }
            )
        print(
            f"ablation {label!r}: best valid {pct(result.best_valid_acc)} at epoch "
            f"{result.best_epoch}/{config.epochs} ({seconds:.0f} s)"
        )
    frame = pd.DataFrame(rows)
    write_text_atomic(out_dir / ABLATION_CSV, frame.to_csv(index=False))
    return frame


def ablation_summary(ablation: pd.DataFrame) -> dict[str, Any]:
    """The ablation's findings as numbers: best variant, gains over plain resize and from TTA."""
    with_tta = ablation[ablation["views"] == ablation["views"].max()]
    without = ablation[ablation["views"] == ablation["views"].min()]
    best = ablation.loc[ablation["valid_acc"].idxmax()]
    by_variant = without.set_index("variant")["valid_acc"]
    baseline = by_variant.iloc[0]
    tta_gain = float(
        (with_tta.set_index("variant")["valid_acc"] - without.set_index("variant")["valid_acc"])
        .dropna()
        .mean()
    )
    return {
        "best_variant": str(best["variant"]),
        "best_tta": str(best["tta"]),
        "best_acc": float(best["valid_acc"]),
        "baseline_variant": str(by_variant.index[0]),
        "gains": {str(k): float(v - baseline) for k, v in by_variant.iloc[1:].items()},
        "tta_gain": tta_gain if ablation["views"].nunique() > 1 else float("nan"),
        "tta_views": int(ablation["views"].max()),
        "tied": bool(np.isclose(ablation["valid_acc"].max(), ablation["valid_acc"].min())),
    }


def ablation_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: validation accuracy per number of TTA views, side by side."""
    wide = ablation.pivot_table(index="variant", columns="tta", values="valid_acc", sort=False)
    wide.columns = [f"valid acc, {c}" for c in wide.columns]
    first = ablation.drop_duplicates("variant").set_index("variant")
    out = pd.concat(
        [first[["preprocess", "best_epoch", "epochs"]].rename(columns={"best_epoch": "best epoch"}),
         wide],
        axis=1,
    )  # fmt: skip
    out["train s"] = first["train_seconds"]
    return out


def ablation_description(ablation: pd.DataFrame, model: str = "resnet18") -> str:
    """What the ablation trained, in numbers from its own table."""
    first = ablation.iloc[0]
    limit = first.get("train_images")
    images = (
        f"{int(limit):,} training images" if pd.notna(limit) and limit else "all training images"
    )
    views = " and ".join(str(v) for v in sorted(ablation["views"].unique()))
    return (
        f"{pretty_model_name(model)} is trained once per preprocessing variant, "
        f"{int(first['epochs'])} epochs on {images} with otherwise identical settings; the best "
        f"checkpoint of each is evaluated on the {int(first['valid_images']):,} validation "
        f"images with {views} views."
    )


def ablation_findings(ablation: pd.DataFrame) -> str:
    """The ablation's result in two sentences, with the noise level to read it against."""
    found = ablation_summary(ablation)
    n = int(ablation["valid_images"].iloc[0])
    se = standard_error(found["best_acc"], n)
    if found["tied"]:
        text = f"Every variant reached the same validation accuracy, {pct(found['best_acc'])}."
    else:
        text = (
            f"Best: **{found['best_variant']}** with {found['best_tta']}, "
            f"{pct(found['best_acc'])} validation accuracy."
        )
    if found["gains"] and not found["tied"]:
        gains = ", ".join(f"{k} {100 * v:+.1f}" for k, v in found["gains"].items())
        text += f" Change against {found['baseline_variant']} (single view), in points: {gains}."
    if np.isfinite(found["tta_gain"]) and not found["tied"]:
        text += (
            f" {found['tta_views']}-view TTA changes accuracy by {100 * found['tta_gain']:+.1f} "
            "points on average."
        )
    text += (
        f" With {n:,} validation images one standard error is about {100 * se:.1f} points, "
        "so smaller differences are noise."
    )
    return text


# ---------------------------------------------------------------------------- 03 model tables


def stage_table(models: Sequence[str], num_classes: int = 2) -> pd.DataFrame:
    """Block type and blocks per stage, straight from `ARCHITECTURES` (depth is data)."""
    rows = []
    for name in models:
        block, layers = ARCHITECTURES[name]
        convs = 2 if block is BasicBlock else 3
        model = build_model(name, num_classes=num_classes)
        rows.append(
            {
                "model": pretty_model_name(name),
                "block": block.__name__,
                "convs per block": convs,
                **{f"layer{i + 1}": n for i, n in enumerate(layers)},
                "weighted layers": 1 + convs * sum(layers) + 1,
                "output width": 512 * block.expansion,
                "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def stage_summary(name: str, image_size: int = 224, num_classes: int = 2) -> pd.DataFrame:
    """`lab3.models.summary` of one model, in readable units."""
    frame = summary(build_model(name, num_classes=num_classes), (3, image_size, image_size))
    return pd.DataFrame(
        {
            "output (C x H x W)": ["x".join(map(str, s)) for s in frame["output_shape"]],
            "params (M)": frame["params"] / 1e6,
            "GMACs": frame["macs"] / 1e9,
        },
        index=pd.Index(frame["stage"], name=f"{pretty_model_name(name)} @ {image_size} px"),
    )


def cost_table(models: Sequence[str], image_size: int, num_classes: int = 2) -> pd.DataFrame:
    """Parameters and multiply-accumulates per image at 224 px and at the working size."""
    rows = []
    for name in models:
        model = build_model(name, num_classes=num_classes)
        at_224 = summary(model, (3, 224, 224))
        at_work = summary(model, (3, image_size, image_size))
        shape = at_work.set_index("stage").loc["layer4", "output_shape"]
        rows.append(
            {
                "model": pretty_model_name(name),
                "params (M)": int(at_224["params"].iloc[-1]) / 1e6,
                "GMACs @ 224 px": int(at_224["macs"].iloc[-1]) / 1e9,
                f"GMACs @ {image_size} px": int(at_work["macs"].iloc[-1]) / 1e9,
                f"layer4 map @ {image_size} px": "x".join(map(str, shape)),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def realistic_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm affines and running statistics: with the default init every BN is
    the identity, so a swapped or missing one would go unnoticed in an output comparison."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.uniform_(0.2, 0.6, generator=generator)
            bn.bias.normal_(0.0, 0.1, generator=generator)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative: one batch gives its exact statistics
        model.train()
        model(torch.randn(4, 3, 64, 64, generator=generator))
        for bn in norms:
            bn.momentum = 0.1
    model.eval()


def compare_with_reference(
    ours: nn.Module,
    reference: nn.Module,
    input_sizes: Sequence[Sequence[int]] = ((3, 224, 224),),
    seed: int = 0,
    tolerance: float = 1e-4,
) -> pd.DataFrame:
    """Load the reference's weights into `ours` with strict=True and compare outputs.

    `reference` is any ResNet with torchvision's names (the notebook passes torchvision's own,
    which lab3 never imports). A strict load proves the same tensors in the same places; equal
    outputs prove they are wired the same way. One row per input size.
    """
    realistic_batchnorm(reference, seed)
    state = reference.state_dict()
    ours.load_state_dict(state, strict=True)  # raises, naming the keys, if anything differs
    ours.eval()
    reference.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    rows = []
    for size in input_sizes:
        x = torch.randn(2, *size, generator=generator)
        with torch.no_grad():
            a, b = ours(x), reference(x)
        diff = float((a - b).abs().max())
        rows.append(
            {
                "model": pretty_model_name(getattr(ours, "arch", type(ours).__name__)),
                "input": "x".join(map(str, size)),
                "tensors loaded": len(state),
                "params (ours)": sum(p.numel() for p in ours.parameters()),
                "params (reference)": sum(p.numel() for p in reference.parameters()),
                "max |output|": float(b.abs().max()),
                "max abs diff": diff,
                "equal": diff <= tolerance * max(1.0, float(b.abs().max())),
            }
        )
    return pd.DataFrame(rows)


def cost_text(costs: pd.DataFrame) -> str:
    """How much more the deepest model of a cost table costs than the smallest."""
    small, large = costs.index[0], costs.index[-1]
    if small == large:
        return f"{small} has {costs.loc[small, 'params (M)']:.2f} M parameters."
    params = costs.loc[large, "params (M)"] / costs.loc[small, "params (M)"]
    macs = costs.loc[large, "GMACs @ 224 px"] / costs.loc[small, "GMACs @ 224 px"]
    return (
        f"{large} has {params:.1f}x the parameters of {small} and needs {macs:.1f}x its "
        "multiply-accumulates per image."
    )


def equivalence_text(checks: pd.DataFrame) -> str:
    """The verdict of `compare_with_reference` rows, in one sentence."""
    names = ", ".join(dict.fromkeys(checks["model"]))
    tensors = ", ".join(str(t) for t in dict.fromkeys(checks["tensors loaded"]))
    worst = float(checks["max abs diff"].max())
    agree = "are identical" if worst == 0 else f"agree to within {worst:.1e}"
    same_params = bool((checks["params (ours)"] == checks["params (reference)"]).all())
    verdict = (
        "**the models are the published architectures**."
        if checks["equal"].all() and same_params
        else "**but they differ: see the table**."
    )
    return (
        f"torchvision's weights load into {names} with `strict=True` ({tensors} tensors, "
        f"{'the same' if same_params else 'different'} parameter counts) and the outputs "
        f"{agree} at every input size: {verdict}"
    )


# ------------------------------------------------------------------------- 05 evaluation


@dataclass
class ModelResults:
    """One trained depth: its run folder, settings, history and evaluations per split."""

    model: str
    run_dir: Path
    config: TrainConfig
    history: pd.DataFrame
    evaluations: dict[str, Evaluation] = field(default_factory=dict)

    @property
    def best_epoch(self) -> int:
        return int(self.history.loc[self.history["valid_acc"].idxmax(), "epoch"])


def load_history(run: Path) -> pd.DataFrame:
    if not (run / "history.csv").is_file():
        raise UserError(
            "no history.csv: this model was not trained in this run; run 04_train for it first",
            run,
        )
    return pd.read_csv(run / "history.csv")


def load_histories(run_dir: str | Path, models: Sequence[str]) -> dict[str, pd.DataFrame]:
    paths = WorkbookPaths(Path(run_dir).resolve())
    return {m: load_history(paths.run(m)) for m in models}


def evaluate_runs(
    run_dir: str | Path,
    models: Sequence[str],
    data_dir: str | Path | None = None,
    device: str = "auto",
) -> dict[str, ModelResults]:
    """The demo: load each depth's best checkpoint and evaluate it on valid (and test when its
    labels are known), averaging the TTA views its config asks for."""
    paths = WorkbookPaths(Path(run_dir).resolve())
    results = {}
    for model in models:
        run = paths.run(model)
        history = load_history(run)
        if not (run / "best.pt").is_file():
            raise UserError("no best.pt: training did not finish an epoch; re-run 04_train", run)
        config = TrainConfig.load(run / "config.json")
        data = str(data_dir) if data_dir is not None else None
        evaluations = {}
        for split in ("valid", "test"):
            if split == "test" and not load_layout(data or config.data).has_test_labels:
                continue
            evaluations[split] = evaluate_checkpoint(
                run / "best.pt", data=data, split=split, tta=config.tta, device=device
            )
        results[model] = ModelResults(model, run, config, history, evaluations)
    return results


def report_split(results: Mapping[str, ModelResults]) -> str:
    """Test when every model could be scored on it, else valid."""
    return "test" if all("test" in r.evaluations for r in results.values()) else "valid"


METRIC_COLUMNS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc",
    "weighted_f1": "weighted F1",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "roc_auc": "ROC-AUC",
}


def metrics_table(results: Mapping[str, ModelResults]) -> pd.DataFrame:
    """One row per model and split: the metrics of its best checkpoint (with TTA)."""
    rows = []
    for model, result in results.items():
        for split, evaluation in result.evaluations.items():
            row = {"model": pretty_model_name(model), "split": split}
            for key, column in METRIC_COLUMNS.items():
                row[column] = evaluation.metrics.get(key, float("nan"))
            row["TTA views"] = int(evaluation.metrics.get("tta_views", 1))
            row["images"] = int(evaluation.metrics.get("n", len(evaluation.predictions.labels)))
            rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "split"])


def confusions(results: Mapping[str, ModelResults], split: str) -> dict[str, np.ndarray]:
    return {m: r.evaluations[split].confusion for m, r in results.items() if split in r.evaluations}


def class_names_of(results: Mapping[str, ModelResults]) -> list[str]:
    first = next(iter(results.values()))
    return next(iter(first.evaluations.values())).class_names


def training_setup(results: Mapping[str, ModelResults]) -> pd.DataFrame:
    """The settings each depth was trained with (from its config.json), side by side."""
    keys = [
        "epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "label_smoothing",
        "ema", "image_size", "preprocess", "augment", "train_limit", "tta", "seed",
    ]  # fmt: skip
    frame = pd.DataFrame(
        {pretty_model_name(m): {k: r.config.to_dict()[k] for k in keys} for m, r in results.items()}
    )
    frame.index.name = "setting"
    return frame.astype(str)


def write_submissions(
    results: Mapping[str, ModelResults],
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """The Kaggle CSV of each depth (`<model>.csv`, IDs in its test CSV's order, validated), and
    its local score when the data folder holds the truth (test_labels.csv)."""
    out_dir = Path(out_dir)
    rows = []
    for model, result in results.items():
        data = str(data_dir) if data_dir is not None else result.config.data
        if not load_layout(data, check_files=False).test_csvs:
            continue  # C-NMC and retinopathy folders have no Kaggle test CSVs
        frame = predict_submission(
            result.run_dir / "best.pt", data=data, tta=result.config.tta, device=device
        )
        path = write_submission(frame, out_dir / f"{model}.csv")
        row: dict[str, Any] = {
            "model": pretty_model_name(model),
            "file": f"submissions/{path.name}",
            "rows": len(frame),
            "predicted label 1": float((frame["label"] == 1).mean()),
        }
        truth = Path(data) / TRUTH_CSV
        if truth.is_file():
            scored = score(path, truth)
            row["test accuracy"] = scored["accuracy"]
            row["weighted F1"] = scored["weighted_f1"]
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "file", "rows"] if not rows else None).set_index(
        "model"
    )


def submissions_text(submissions: pd.DataFrame) -> str:
    """What the submissions table shows, or why there is none."""
    if submissions.empty:
        return (
            "This data folder has no Kaggle test CSVs (`resnet_*_test.csv`), so no submission "
            "files were written; the test split above is scored directly."
        )
    scored = "test accuracy" in submissions.columns
    return (
        f"{len(submissions)} submission files (`ID,label`, one row per test image in the order "
        "of the depth's test CSV, validated before writing)"
        + (", scored locally against `test_labels.csv`:" if scored else ":")
    )


def highest_accuracy_table(results: Mapping[str, ModelResults]) -> pd.DataFrame:
    """Per depth: the epoch of its best validation accuracy, and the test accuracy of that
    checkpoint (the one submitted). Test accuracy is never used to pick the epoch."""
    rows = []
    for model, result in results.items():
        history = result.history
        best = history.loc[history["valid_acc"].idxmax()]
        row: dict[str, Any] = {
            "model": pretty_model_name(model),
            "epochs": int(history["epoch"].max()),
            "best epoch": int(best["epoch"]),
            "best valid acc": float(best["valid_acc"]),
        }
        if "test_acc" in history.columns:
            row["test acc at that epoch"] = float(best["test_acc"])
        views = result.config.tta
        for split in ("valid", "test"):
            if split in result.evaluations:
                label = f"{split} acc, TTA x{views}" if views > 1 else f"{split} acc (best.pt)"
                row[label] = result.evaluations[split].metrics["accuracy"]
        row["train minutes"] = float(pd.to_numeric(history["seconds"]).sum()) / 60
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def pick_misclassified(
    result: ModelResults, split: str, count: int = 12, size: int = 96
) -> dict[str, Any]:
    """The model's most confident mistakes on `split`, as tight-cropped cells for a grid; the
    keyword arguments of `plots.plot_misclassified`."""
    evaluation = result.evaluations[split]
    predictions = evaluation.predictions
    predicted = predictions.predicted
    wrong = np.flatnonzero(predicted != predictions.labels)
    confidence = predictions.probs[wrong, predicted[wrong]]
    chosen = wrong[np.argsort(-confidence, kind="stable")][:count]
    config = evaluation.config
    layout = load_layout(config.data, split_mode=config.split_mode, seed=config.seed)
    show = Pipeline.for_config("tightcrop", size)
    paths = layout.table["path"].to_numpy()[predictions.rows[chosen]]
    return {
        "images": [show(load_image(p)) for p in paths],
        "true_labels": predictions.labels[chosen].tolist(),
        "pred_labels": predicted[chosen].tolist(),
        "probs": [predictions.probs[i] for i in chosen],
        "class_names": short_class_names(evaluation.class_names),
    }


def short_class_names(names: Sequence[str]) -> list[str]:
    """'normal (hem)' -> 'normal': short enough for titles over small image panels."""
    return [re.sub(r"\s*\(.*\)\s*$", "", n) or n for n in names]


def load_ablation(run_dir: str | Path) -> pd.DataFrame | None:
    path = WorkbookPaths(Path(run_dir).resolve()).ablation / ABLATION_CSV
    return pd.read_csv(path) if path.is_file() else None


# ------------------------------------------------------------------------ generated prose


def training_description(config: TrainConfig) -> str:
    """The training recipe, written from a run's config so the report never drifts from it."""
    optimizer = "SGD with Nesterov momentum 0.9" if config.optimizer == "sgd" else "AdamW"
    schedule = (
        "a one-cycle schedule (cosine warm-up over the first quarter, then cosine decay)"
        if config.schedule == "onecycle"
        else f"{config.warmup_epochs:g} warm-up epochs and cosine decay"
    )
    parts = [
        f"Every depth is trained from scratch with the same recipe: {optimizer}, peak learning "
        f"rate {config.lr:g} with {schedule}, batch size {config.batch_size}, weight decay "
        f"{config.weight_decay:g} (not on BatchNorm parameters) and cross-entropy with label "
        f"smoothing {config.label_smoothing:g}",
    ]
    if config.ema:
        parts.append(f", evaluating an exponential moving average of the weights ({config.ema:g})")
    parts.append(
        f". Images are {config.image_size}x{config.image_size} px after the host preprocessing "
        f"`{config.preprocess}` and augmented with `{config.augment}`"
    )
    if config.train_limit:
        parts.append(
            f"; only {config.train_limit:,} training images are used ({config.profile} profile)"
        )
    parts.append(
        ". Each epoch is followed by an evaluation on the validation split (and the test split "
        "when its labels are known); the checkpoint with the best validation accuracy is kept."
    )
    return "".join(parts)


def headline(results: Mapping[str, ModelResults]) -> str:
    """The highest accuracy of the run, as one sentence."""
    split = report_split(results)
    accuracy = {m: r.evaluations[split].metrics["accuracy"] for m, r in results.items()}
    best = max(accuracy, key=accuracy.get)
    tied = [m for m in accuracy if np.isclose(accuracy[m], accuracy[best])]
    result = results[best]
    views = result.config.tta
    if len(tied) > 1:
        return (
            f"Highest {split} accuracy: **{pct(accuracy[best])}**, reached by "
            f"{join_names(map(pretty_model_name, tied))} alike "
            f"({int(result.evaluations[split].metrics['n']):,} {split} images"
            f"{f', averaging {views} TTA views' if views > 1 else ''})."
        )
    return (
        f"Highest {split} accuracy: **{pretty_model_name(best)}, {pct(accuracy[best])}** "
        f"(best.pt from epoch {result.best_epoch} of {int(result.history['epoch'].max())}"
        f"{f', averaging {views} TTA views' if views > 1 else ''}, "
        f"{int(result.evaluations[split].metrics['n']):,} {split} images)."
    )


def join_names(names: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(names)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images."""
    return math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / max(n, 1))


def introduction(layout: Layout, models: Sequence[str], profile: str) -> str:
    """The data and the plan of the run, in numbers taken from the dataset folder."""
    counts = {s: int((layout.table["split"] == s).sum()) for s in ("train", "valid", "test")}
    shares = layout.split("train")["label"].value_counts(normalize=True)
    majority = int(shares.idxmax())
    return (
        f"This run uses the **{layout.name}** dataset layout found at `{layout.root.name}/`: "
        f"{counts['train']:,} training, {counts['valid']:,} validation and {counts['test']:,} "
        f"test images in {layout.num_classes} classes ({', '.join(layout.class_names)}). "
        f"{pct(float(shares.max()))} of the training images are "
        f"{class_name(layout, majority)}, so always answering that class already scores about "
        f"as much. It trains {join_names(map(pretty_model_name, models))} from scratch with the "
        f"**{profile}** profile."
    )


def discussion(
    results: Mapping[str, ModelResults],
    ablation: pd.DataFrame | None = None,
    layout: Layout | None = None,
) -> str:
    """The discussion, written from the run's numbers: which depth won and by how much compared
    with the sampling error, how the curves fit, what preprocessing and TTA gave, and caveats."""
    split = report_split(results)
    accuracy = {m: r.evaluations[split].metrics["accuracy"] for m, r in results.items()}
    n = int(next(iter(results.values())).evaluations[split].metrics["n"])
    ranked = sorted(accuracy, key=accuracy.get, reverse=True)
    winner = ranked[0]
    se = standard_error(accuracy[winner], n)
    points = []

    top = [m for m in ranked if np.isclose(accuracy[m], accuracy[winner])]
    rest = [m for m in ranked if m not in top]
    if len(top) == 1:
        text = f"**{pretty_model_name(winner)}** reached the highest {split} accuracy"
    else:
        text = f"{join_names(map(pretty_model_name, top))} tie for the highest {split} accuracy"
    text += f", {pct(accuracy[winner])}"
    if rest:
        others = ", ".join(f"{pretty_model_name(m)} {pct(accuracy[m])}" for m in rest)
        gap = accuracy[winner] - accuracy[rest[0]]
        within = gap < 2 * se
        text += (
            f" (then {others}). The lead of {100 * gap:.1f} points "
            f"{'is within' if within else 'exceeds'} two standard errors "
            f"(±{100 * 2 * se:.1f} points on {n} images)"
            + (", so at this training budget the depths are statistically tied." if within else ".")
        )
    else:
        text += "."
    points.append(text)

    labels = next(iter(results.values())).evaluations[split].predictions.labels
    majority = float(np.bincount(labels).max() / max(len(labels), 1))
    above = [m for m in ranked if accuracy[m] >= majority + 2 * se]
    if not above:
        points.append(
            f"Always predicting the majority class would score {pct(majority)} on this split: "
            "no depth is clearly above that baseline, so the models have learned little yet; "
            "longer training (the `full` profile) is needed for meaningful accuracy."
        )
    elif len(above) == len(ranked):
        points.append(
            f"Every depth beats the majority-class baseline ({pct(majority)}) by more than "
            "the sampling error."
        )
    else:
        behind = ", ".join(pretty_model_name(m) for m in ranked if m not in above)
        points.append(
            f"The majority-class baseline is {pct(majority)}; "
            f"{', '.join(pretty_model_name(m) for m in above)} clearly beat it, {behind} not "
            "by more than the sampling error."
        )

    if len(results) > 1:
        per_epoch = {
            m: float(pd.to_numeric(r.history["seconds"]).mean()) for m, r in results.items()
        }
        fastest = min(per_epoch, key=per_epoch.get)
        slowest = max(per_epoch, key=per_epoch.get)
        points.append(
            f"Depth is not free: an epoch of {pretty_model_name(slowest)} took "
            f"{per_epoch[slowest] / max(per_epoch[fastest], 1e-9):.1f}x as long as one of "
            f"{pretty_model_name(fastest)} ({per_epoch[slowest]:.0f} s vs "
            f"{per_epoch[fastest]:.0f} s)."
        )

    for model, result in results.items():
        history = result.history
        last = history.iloc[-1]
        epochs = int(last["epoch"])
        best_epoch = result.best_epoch
        gap = float(last["train_acc"] - last["valid_acc"])
        valid = pd.to_numeric(history["valid_acc"])
        predicted = np.unique(result.evaluations[split].predictions.predicted)
        if len(predicted) == 1:
            names = result.evaluations[split].class_names
            points.append(
                f"{pretty_model_name(model)} predicts {names[int(predicted[0])]} for every "
                f"{split} image: it has not learned to separate the classes at this budget."
            )
            continue
        if epochs > 1 and np.isclose(valid.max(), valid.min()):
            shape = f"its validation accuracy stayed at {pct(float(valid.iloc[0]))} in every epoch"
        elif best_epoch == epochs and epochs > 1:
            shape = (
                "its validation accuracy was still at its best in the last epoch, "
                "so it is under-trained"
            )
        elif epochs == 1:
            shape = "it trained for a single epoch, so the curves say little"
        else:
            shape = (
                f"its validation accuracy peaked at epoch {best_epoch} of {epochs} "
                "(the best checkpoint is kept, later epochs did not improve it)"
            )
        if gap > 0.05:
            fit_note = (
                f"training accuracy ends {100 * gap:.1f} points above validation: over-fitting"
            )
        elif gap < -0.02:
            fit_note = (
                f"training accuracy ends {100 * -gap:.1f} points below validation, as expected "
                "with augmented training images and label smoothing: no sign of over-fitting"
            )
        else:
            fit_note = "training and validation accuracy end close together: no over-fitting"
        points.append(f"{pretty_model_name(model)}: {shape}; {fit_note}.")

    if ablation is not None and not ablation.empty:
        found = ablation_summary(ablation)
        gains = "; ".join(
            f"{name} {100 * gain:+.1f} points" for name, gain in found["gains"].items()
        )
        if found["tied"]:
            text = (
                "In the preprocessing ablation (ResNet18, short runs) every setting reached the "
                f"same validation accuracy ({pct(found['best_acc'])}): at that budget neither "
                "preprocessing nor TTA made a measurable difference."
            )
        else:
            text = (
                "In the preprocessing ablation (ResNet18, short runs) the best setting was "
                f"{found['best_variant']} with {found['best_tta']} "
                f"({pct(found['best_acc'])} valid)."
            )
        if gains and not found["tied"]:
            text += f" Against {found['baseline_variant']} without TTA: {gains}."
        if np.isfinite(found["tta_gain"]) and not found["tied"]:
            text += (
                f" Averaging {found['tta_views']} dihedral views changed validation accuracy by "
                f"{100 * found['tta_gain']:+.1f} points on average."
            )
        points.append(text)

    caveats = []
    if layout is not None:
        shared = subjects_per_split(layout)
        if shared is not None and "test" in shared.index and shared.loc["test", "also in train"]:
            caveats.append(
                f"{shared.loc['test', 'also in train']} of the {shared.loc['test', 'subjects']} "
                "test subjects also have cells in the training split"
            )
        if (layout.root / METADATA_CSV).is_file() and (layout.root / TRUTH_CSV).is_file():
            caveats.append(
                "this run used the synthetic stand-in dataset, so its numbers show that the "
                "pipeline works, not how well the models do on real cells"
            )
    points.append(
        "Caveat: the course split is random per image, so cells of one patient can sit in both "
        "training and test data; on real C-NMC images that leaks patient-specific staining and "
        "makes reported accuracy optimistic (`--split-mode subject` keeps patients apart)"
        + ("; here " + "; ".join(caveats) if caveats else "")
        + "."
    )
    return "\n".join(f"- {p}" for p in points)
