"""What notebook 02 (preprocessing experiments) computes: the preprocessing panels, augmented
views, and the preprocessing/TTA ablation with its table and findings.

The ablation trains short ResNet18 runs through `fit_or_resume`, so a re-run reuses them;
its CSV is read back by the report's discussion (`load_ablation`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab3.config import TrainConfig, make_config
from lab3.data.preprocess import Augment, Pipeline, equalize_foreground, tight_crop, to_grey
from lab3.engine.evaluate import LoadedCheckpoint
from lab3.engine.resume import fit_or_resume
from lab3.fileio import write_text_atomic
from lab3.formatting import pct, pretty_model_name
from lab3.metrics import paired_difference
from lab3.workbook.folders import WorkbookPaths


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


# The preprocessing ablation: resnet18 for a few epochs per host pipeline (label -> spec).
ABLATION_VARIANTS: dict[str, str] = {
    "plain resize": "none",
    "tight crop": "tightcrop",
    "tight crop + equalise": "tightcrop,equalize",
}
# Per profile, one entry for each of `PROFILES`: not defaults of their own but the ablation's
# short budget, laid over that profile's settings (which apply otherwise). The step floor is off:
# the variants are compared with each other, at one fixed short budget.
ABLATION: dict[str, dict[str, int]] = {
    "quick": {"epochs": 4, "train_limit": 600, "min_steps": 0},
    "full": {"epochs": 15, "min_steps": 0},
    "tiny": {"epochs": 1, "train_limit": 32, "min_steps": 0},
}
ABLATION_TTA = (1, 8)
ABLATION_CSV = "ablation.csv"
IMAGES_CSV = "ablation_images.csv"  # per image: correct or not, for each variant and views
CONFIDENCE = 0.95
# a variant whose balanced accuracy is within this of chance (1 / classes) did not learn: it
# answers (nearly) one class, and its effect says nothing about its preprocessing
CHANCE_MARGIN = 0.05


def slug(text: str) -> str:
    """A folder name for a preprocessing spec: 'tightcrop,equalize' -> 'tightcrop-equalize'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "none"


def tta_label(views: int) -> str:
    return "1 view (no TTA)" if views == 1 else f"{views} views (TTA)"


@dataclass(frozen=True)
class AblationPlan:
    """What notebook 02's ablation does: train each variant's config (label -> config), then
    evaluate its best checkpoint on the validation split in each number of TTA `views`. The
    notebook's `run_ablation` follows it, and `lab3 run`'s time estimate counts it."""

    configs: dict[str, TrainConfig]
    views: tuple[int, ...]


def ablation_plan(
    profile: str = "quick",
    device: str = "auto",
    variants: Mapping[str, str] | Sequence[str] | None = None,
    model: str = "resnet18",
    epochs: int | None = None,
    train_limit: int | None = None,
    tta: Sequence[int] = ABLATION_TTA,
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    split_mode: str | None = None,
) -> AblationPlan:
    """The ablation of `run_ablation` with these arguments; without `data_dir` and `out_dir`
    its configs keep the profile's image size and the default run folders (the estimate needs
    only what they train)."""
    if variants is None:
        variants = ABLATION_VARIANTS
    named = dict(variants) if isinstance(variants, Mapping) else {v: v for v in variants}
    settings = {**ABLATION.get(profile, {})}
    if epochs is not None:
        settings["epochs"] = epochs
    if train_limit is not None:
        settings["train_limit"] = train_limit
    configs = {
        label: make_config(
            profile,
            model=model,
            data=None if data_dir is None else str(data_dir),  # None: the config's default
            out=None if out_dir is None else str(Path(out_dir) / slug(spec)),
            preprocess=spec,
            device=device,
            split_mode=split_mode,
            **settings,
        )
        for label, spec in named.items()
    }
    return AblationPlan(configs, tuple(tta))


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
    split_mode: str | None = None,
) -> pd.DataFrame:
    """Train `model` once per preprocessing variant into `out_dir/<variant>/` and evaluate the
    best checkpoint on the validation split with each number of TTA views (`ablation_plan`).

    Finished variants are reused, interrupted ones resumed, so the notebook can be re-run.
    Returns one row per (variant, TTA) and writes it to `out_dir/ablation.csv`.
    """
    plan = ablation_plan(
        profile, device, variants, model, epochs, train_limit, tta, data_dir, out_dir, split_mode
    )
    out_dir = Path(out_dir)
    rows, images = [], []
    for label, config in plan.configs.items():
        result = fit_or_resume(config, progress=progress)
        seconds = float(pd.to_numeric(result.history.get("seconds"), errors="coerce").sum())
        best = LoadedCheckpoint.open(result.run_dir / "best.pt", device=device)
        for views in plan.views:
            evaluation = best.evaluate("valid", tta=views)
            result_images = evaluation.predictions
            images.append(
                pd.DataFrame(
                    {
                        "variant": label,
                        "views": views,
                        "image": result_images.rows,
                        "correct": (result_images.predicted == result_images.labels).astype(int),
                    }
                )
            )
            rows.append(
                {
                    "variant": label,
                    "preprocess": config.preprocess,
                    "tta": tta_label(views),
                    "views": views,
                    "valid_acc": evaluation.metrics["accuracy"],
                    "balanced_acc": evaluation.metrics["balanced_accuracy"],
                    "classes": len(evaluation.class_names),
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
    per_image = pd.concat(images, ignore_index=True)
    frame = with_intervals(pd.DataFrame(rows), per_image)
    write_text_atomic(out_dir / IMAGES_CSV, per_image.to_csv(index=False))
    write_text_atomic(out_dir / ABLATION_CSV, frame.to_csv(index=False))
    return frame


def with_intervals(ablation: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """Each (variant, views) row with two paired effects on the same validation images and their
    confidence intervals: `gain` against the first variant (plain resize) with the same views,
    and `tta_gain` against the same variant with the fewest views."""
    correct = per_image.pivot_table(
        index="image", columns=["variant", "views"], values="correct", sort=False
    )
    baseline, single = ablation["variant"].iloc[0], ablation["views"].min()
    out = ablation.copy()
    for prefix, reference in (
        ("gain", lambda v, k: (baseline, k)),
        ("tta_gain", lambda v, k: (v, single)),
    ):
        effects = [
            paired_difference(correct[(v, k)].to_numpy(), correct[reference(v, k)].to_numpy(),
                              CONFIDENCE)
            for v, k in zip(out["variant"], out["views"], strict=True)
        ]  # fmt: skip
        out[[prefix, f"{prefix}_low", f"{prefix}_high"]] = np.array(effects)
    return out


def ablation_effects(ablation: pd.DataFrame) -> pd.DataFrame:
    """The ablation's paired effects, one row each: every variant against the baseline with a
    single view, and TTA on every variant; `real` where the interval excludes zero."""
    single, most = ablation["views"].min(), ablation["views"].max()
    baseline = ablation["variant"].iloc[0]
    rows = []
    for row in ablation[
        (ablation["views"] == single) & (ablation["variant"] != baseline)
    ].itertuples():
        rows.append((f"{row.variant} vs {baseline}", row.gain, row.gain_low, row.gain_high))
    if most > single:
        for row in ablation[ablation["views"] == most].itertuples():
            rows.append((f"{most}-view TTA on {row.variant}", row.tta_gain, row.tta_gain_low,
                         row.tta_gain_high))  # fmt: skip
    effects = pd.DataFrame(rows, columns=["effect", "points", "low", "high"])
    effects[["points", "low", "high"]] *= 100
    effects["real"] = (effects["low"] > 0) | (effects["high"] < 0)
    return effects


def effect_text(effect: pd.Series) -> str:
    return (
        f"{effect['effect']} {effect['points']:+.1f} points "
        f"({effect['low']:+.1f} to {effect['high']:+.1f})"
    )


def ablation_verdict(ablation: pd.DataFrame) -> str:
    """What the ablation found, and what it cannot tell apart, from its confidence intervals."""
    effects = ablation_effects(ablation)
    if effects.empty:
        return "The ablation has a single setting: nothing to compare."
    real, noise = effects[effects["real"]], effects[~effects["real"]]
    level = f"{100 * CONFIDENCE:.0f} %"
    text = (
        "Paired differences on the same "
        f"{int(ablation['valid_images'].iloc[0]):,} validation images, with {level} confidence "
        "intervals"
    )
    if not real.empty:
        text += "; outside the noise: " + "; ".join(effect_text(e) for _, e in real.iterrows())
    if not noise.empty:
        text += "; inside the noise (the interval includes zero, so not a finding): " + "; ".join(
            effect_text(e) for _, e in noise.iterrows()
        )
    return text + "." + unlearned_text(ablation)


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


def unlearned_variants(ablation: pd.DataFrame) -> list[str]:
    """Variants whose balanced accuracy with a single view sits at chance (an ablation CSV from
    before the `classes` column tells nothing)."""
    if not {"balanced_acc", "classes"} <= set(ablation.columns):
        return []
    single = ablation[ablation["views"] == ablation["views"].min()]
    at_chance = single["balanced_acc"] <= 1 / single["classes"] + CHANCE_MARGIN
    return single.loc[at_chance, "variant"].tolist()


def unlearned_text(ablation: pd.DataFrame) -> str:
    names = unlearned_variants(ablation)
    if not names:
        return ""
    return (
        f" Did not learn in this budget: {', '.join(names)} (balanced accuracy at chance: "
        f"{'it answers' if len(names) == 1 else 'they answer'} nearly one class), so "
        f"{'its effect measures' if len(names) == 1 else 'their effects measure'} a failed short "
        "run, not the preprocessing."
    )


def ablation_findings(ablation: pd.DataFrame) -> str:
    """The ablation's result: the best setting, then each effect with its interval."""
    best = ablation.loc[ablation["valid_acc"].idxmax()]
    if np.isclose(ablation["valid_acc"].max(), ablation["valid_acc"].min()):
        text = f"Every variant reached the same validation accuracy, {pct(best['valid_acc'])}. "
    else:
        text = (
            f"Highest: **{best['variant']}** with {best['tta']}, {pct(best['valid_acc'])} "
            "validation accuracy. "
        )
    return text + ablation_verdict(ablation)


def load_ablation(run_dir: str | Path) -> pd.DataFrame | None:
    path = WorkbookPaths.at(run_dir).ablation / ABLATION_CSV
    return pd.read_csv(path) if path.is_file() else None
