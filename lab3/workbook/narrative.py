"""The report's generated prose: introduction, training recipe, headline and discussion.

Every sentence is written from the run's own numbers (dataset, configs, evaluations, ablation),
so the report never drifts from what was actually run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lab3.config import TrainConfig
from lab3.data.formats import METADATA_CSV, TRUTH_CSV
from lab3.data.layouts import Layout
from lab3.formatting import join_names, pct, pretty_model_name, seconds_text
from lab3.metrics import standard_error
from lab3.workbook.ablation import ablation_verdict
from lab3.workbook.classical import DESCRIPTION as CLASSICAL_DESCRIPTION
from lab3.workbook.classical import paired_lead
from lab3.workbook.exploration import class_name, subjects_per_split
from lab3.workbook.results import (
    ModelResults,
    classical_of,
    init_weights_of,
    ranks,
    report_accuracy,
    report_split,
    winners,
)

if TYPE_CHECKING:
    from lab3.workbook.attention import AttentionShares

LEUKEMIA_LAB = """## The lab

Acute lymphoblastic leukaemia (ALL) is diagnosed by finding malignant lymphoblasts among a
patient's white blood cells. The lab's data are microscope images of single, segmented white
blood cells on a black background, from the C-NMC 2019 challenge, each labelled *normal* (hem,
label 0) or *blast* (all, label 1). The task is to classify them with **ResNet18, ResNet50 and
ResNet152**, written from scratch (no model from a library, no pretrained weights) and trained
from scratch, and to compare the three depths by their accuracy per epoch, their confusion
matrices and their Kaggle test submissions."""

RETINOPATHY_LAB = """## The lab

Diabetic retinopathy damages the small vessels of the retina. Graders rate a fundus photograph on
five grades, 0 (none), 1 (mild), 2 (moderate), 3 (severe) and 4 (proliferative), from the
lesions they see: microaneurysms, haemorrhages, hard exudates and, at grade 4, new vessels. This
is the earlier edition of the lab: the data are fundus images with one grade each, most of them
grade 0, and the task is to grade them with ResNets written from scratch and trained from
scratch, comparing the depths by their accuracy per epoch and their confusion matrices. Because
the grades are ordered, the edition's grading metric is Cohen's kappa with quadratic weights: a
mistake costs the square of its distance in grades, so calling grade 4 grade 3 costs far less
than calling it grade 0."""


def is_grading(layout: Layout) -> bool:
    """Whether the data are the retinopathy edition's five ordered grades (not cells)."""
    return layout.name == "retinopathy"


def lab_description(layout: Layout) -> str:
    """The lab in one paragraph, in the words of the edition the data belong to."""
    return RETINOPATHY_LAB if is_grading(layout) else LEUKEMIA_LAB


def evaluation_description(num_classes: int) -> str:
    """What the metrics table holds, in words that fit the number of classes."""
    if num_classes == 2:
        return (
            "From the confusion matrix follow accuracy, balanced accuracy, sensitivity (share of "
            "blasts found), specificity (share of normal cells recognised), the weighted F1 score "
            "(the C-NMC challenge's metric) and, from the probabilities, ROC-AUC."
        )
    return (
        f"From the {num_classes}x{num_classes} confusion matrix follow accuracy, balanced "
        "accuracy (the mean of the per-class recalls, which the majority class cannot inflate), "
        "the weighted F1 score, Cohen's kappa with quadratic weights (the grading metric of "
        "retinopathy challenges: 1 is perfect agreement, 0 what chance gives, and a mistake "
        "costs the square of its distance in grades) and, from the probabilities, one-vs-rest "
        "ROC-AUC."
    )


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
        f"`{config.preprocess}`, normalised with {config.normalisation()} and augmented with "
        f"`{config.augment}`"
    )
    if config.image_size_reason:
        parts.append(f" (the working size follows the data: {config.image_size_reason})")
    if config.train_limit:
        parts.append(
            f"; only {config.train_limit:,} training images are used ({config.profile} profile)"
        )
    if config.min_steps:
        name = pretty_model_name(config.model)
        parts.append(
            f". Each depth trains its own number of epochs (the table below; {config.epochs} for "
            f"{name}), or more where those give fewer than its floor of optimizer steps "
            f"({config.min_steps:,} for {name}), so a small dataset still gets enough updates"
        )
    if config.precise_bn:
        parts.append(
            ". Before each evaluation the BatchNorm statistics are re-estimated over "
            f"{config.precise_bn:,} training images (precise BN), so they belong to the weights "
            "evaluated"
        )
    parts.append(
        ". Each epoch is followed by an evaluation on the validation split (and the test split "
        "when its labels are known); the checkpoint with the best validation accuracy is kept."
    )
    return "".join(parts)


def headline(results: Mapping[str, ModelResults]) -> str:
    """The highest accuracy of the run, as one sentence."""
    split = report_split(results)
    accuracy = report_accuracy(results)
    tied = winners(results)
    best = tied[0]
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
    with the sampling error, how the curves fit, what preprocessing and TTA gave, and caveats.

    One function per paragraph; each returns None where its numbers are missing."""
    paragraphs = [
        ranking_paragraph(results),
        baseline_paragraph(results),
        classical_paragraph(results),
        kappa_paragraph(results),
        cost_paragraph(results),
        *(
            curve_paragraph(model, result, report_split(results))
            for model, result in results.items()
        ),
        ablation_paragraph(ablation),
        caveat_paragraph(layout),
    ]
    return "\n".join(f"- {p}" for p in paragraphs if p is not None)


def _sampling_error(results: Mapping[str, ModelResults]) -> tuple[float, int]:
    """The standard error of the winner's accuracy on the report's split, and that split's size."""
    split = report_split(results)
    n = int(next(iter(results.values())).evaluations[split].metrics["n"])
    return standard_error(report_accuracy(results)[winners(results)[0]], n), n


def _ranked(results: Mapping[str, ModelResults]) -> list[str]:
    rank = ranks(results)
    return sorted(report_accuracy(results), key=rank.get)  # stable: ties keep the run's order


def ranking_paragraph(results: Mapping[str, ModelResults]) -> str:
    """Which depth won, by how much, and whether the lead exceeds two standard errors."""
    split = report_split(results)
    accuracy = report_accuracy(results)
    top = winners(results)
    winner = top[0]
    se, n = _sampling_error(results)
    rest = [m for m in _ranked(results) if m not in top]
    if len(top) == 1:
        text = f"**{pretty_model_name(winner)}** reached the highest {split} accuracy"
    else:
        text = f"{join_names(map(pretty_model_name, top))} tie for the highest {split} accuracy"
    text += f", {pct(accuracy[winner])}"
    if not rest:
        return text + "."
    others = ", ".join(f"{pretty_model_name(m)} {pct(accuracy[m])}" for m in rest)
    gap = accuracy[winner] - accuracy[rest[0]]
    within = gap < 2 * se
    return text + (
        f" (then {others}). The lead of {100 * gap:.1f} points "
        f"{'is within' if within else 'exceeds'} two standard errors "
        f"(±{100 * 2 * se:.1f} points on {n} images)"
        + (", so at this training budget the depths are statistically tied." if within else ".")
    )


def baseline_paragraph(results: Mapping[str, ModelResults]) -> str:
    """Which depths beat always answering the majority class by more than the sampling error."""
    split = report_split(results)
    accuracy = report_accuracy(results)
    ranked = _ranked(results)
    se, _ = _sampling_error(results)
    labels = next(iter(results.values())).evaluations[split].predictions.labels
    majority = float(np.bincount(labels).max() / len(labels))  # an evaluated split has images
    above = [m for m in ranked if accuracy[m] >= majority + 2 * se]
    if not above:
        return (
            f"Always predicting the majority class would score {pct(majority)} on this split: "
            "no depth is clearly above that baseline, so the models have learned little yet; "
            "longer training (the `full` profile) is needed for meaningful accuracy."
        )
    if len(above) == len(ranked):
        return (
            f"Every depth beats the majority-class baseline ({pct(majority)}) by more than "
            "the sampling error."
        )
    behind = ", ".join(pretty_model_name(m) for m in ranked if m not in above)
    return (
        f"The majority-class baseline is {pct(majority)}; "
        f"{', '.join(pretty_model_name(m) for m in above)} clearly beat it, {behind} not "
        "by more than the sampling error."
    )


def classical_paragraph(results: Mapping[str, ModelResults]) -> str | None:
    """Whether each depth beats the classical-features baseline beyond the sampling error, in
    balanced accuracy, paired on the same images; plainly so when the networks lose."""
    baseline = classical_of(results)
    split = report_split(results)
    if baseline is None or split not in baseline.predictions:
        return None
    ours = baseline.metrics[split]
    leads = {
        m: paired_lead(r.evaluations[split].predictions, baseline.predictions[split])
        for m, r in results.items()
    }
    text = (
        f"A classical baseline, {CLASSICAL_DESCRIPTION}, scores {pct(ours['accuracy'])} on "
        f"{split} (balanced accuracy {pct(ours['balanced_accuracy'])}). Each depth's balanced "
        "accuracy minus the baseline's on the same images, with its 95 % interval: "
        + ", ".join(
            f"{pretty_model_name(m)} {100 * mean:+.1f} points ({100 * lo:+.1f} to {100 * hi:+.1f})"
            for m, (mean, lo, hi) in leads.items()
        )
        + ". "
    )
    return text + _classical_verdict(leads)


def _classical_verdict(leads: Mapping[str, tuple[float, float, float]]) -> str:
    """Who beats the baseline (the interval above 0), who loses to it (below 0), who is tied."""
    beat = [pretty_model_name(m) for m, (_, lo, _) in leads.items() if lo > 0]
    lose = [pretty_model_name(m) for m, (_, _, hi) in leads.items() if hi < 0]
    tied = [pretty_model_name(m) for m in leads if pretty_model_name(m) not in beat + lose]
    if len(beat) == len(leads):
        return "Every depth beats the baseline beyond the sampling error."
    if len(lose) == len(leads):
        return (
            "**The networks lose to the classical baseline**: every depth is below it beyond the "
            "sampling error, so at this training budget the hand-measured features are the "
            "better classifier."
        )
    parts = [
        f"{join_names(names)} {one if len(names) == 1 else several} {rest}"
        for names, one, several, rest in (
            (beat, "beats", "beat", "it beyond the sampling error"),
            (tied, "is", "are", "within the sampling error of it"),
            (lose, "loses", "lose", "to it beyond the sampling error"),
        )
        if names
    ]
    best = max(leads, key=lambda m: leads[m][0])
    winner = (
        "the baseline's balanced accuracy is higher than every depth's"
        if leads[best][0] < 0
        else f"{pretty_model_name(best)}'s balanced accuracy is the highest"
    )
    prefix = "" if beat else "No depth beats the baseline: "
    return f"{prefix}{'; '.join(parts)} ({winner})."


def kappa_paragraph(results: Mapping[str, ModelResults]) -> str | None:
    """Quadratic-weighted kappa per depth, where the evaluations have it (graded data)."""
    split = report_split(results)
    kappas = {m: r.evaluations[split].metrics.get("kappa_quadratic") for m, r in results.items()}
    if any(k is None for k in kappas.values()):
        return None
    best_kappa = max(kappas, key=kappas.get)
    return (
        "Quadratic-weighted kappa, which weighs a mistake by its distance in grades: "
        + ", ".join(f"{pretty_model_name(m)} {kappas[m]:.3f}" for m in _ranked(results))
        + f" (best {pretty_model_name(best_kappa)}; 0 is what chance agreement gives)."
    )


def cost_paragraph(results: Mapping[str, ModelResults]) -> str | None:
    """What depth costs: the slowest depth's epoch against the fastest's (None when the runs
    took the same time per epoch)."""
    if len(results) < 2:
        return None
    per_epoch = {m: float(pd.to_numeric(r.history["seconds"]).mean()) for m, r in results.items()}
    fastest = min(per_epoch, key=per_epoch.get)
    slowest = max(per_epoch, key=per_epoch.get)
    if slowest == fastest:  # every epoch took as long: nothing to say about depth
        return None
    return (
        f"Depth is not free: an epoch of {pretty_model_name(slowest)} took "
        f"{per_epoch[slowest] / max(per_epoch[fastest], 1e-9):.1f}x as long as one of "
        f"{pretty_model_name(fastest)} ({seconds_text(per_epoch[slowest])} vs "
        f"{seconds_text(per_epoch[fastest])})."
    )


def curve_paragraph(model: str, result: ModelResults, split: str) -> str:
    """One depth's curves: one class for everything, under-trained, or where it peaked, and
    whether training accuracy ran away from validation accuracy."""
    history = result.history
    last = history.iloc[-1]
    epochs = int(last["epoch"])
    best_epoch = result.best_epoch
    gap = float(last["train_acc"] - last["valid_acc"])
    valid = pd.to_numeric(history["valid_acc"])
    predicted = np.unique(result.evaluations[split].predictions.predicted)
    if len(predicted) == 1:
        names = result.evaluations[split].class_names
        return (
            f"{pretty_model_name(model)} predicts {names[int(predicted[0])]} for every "
            f"{split} image: it has not learned to separate the classes at this budget."
        )
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
        fit_note = f"training accuracy ends {100 * gap:.1f} points above validation: over-fitting"
    elif gap < -0.02:
        fit_note = (
            f"training accuracy ends {100 * -gap:.1f} points below validation, as expected "
            "with augmented training images and label smoothing: no sign of over-fitting"
        )
    else:
        fit_note = "training and validation accuracy end close together: no over-fitting"
    return f"{pretty_model_name(model)}: {shape}; {fit_note}."


def ablation_paragraph(ablation: pd.DataFrame | None) -> str | None:
    """What the preprocessing ablation found, when it ran."""
    if ablation is None or ablation.empty:
        return None
    return (
        "Preprocessing ablation (ResNet18, short runs, best checkpoint on the validation "
        f"split). {ablation_verdict(ablation)}"
    )


def caveat_paragraph(layout: Layout | None) -> str:
    """How the split was made and what data these are: the limits of the numbers above."""
    if layout is not None and is_grading(layout):
        synthetic = (layout.root / METADATA_CSV).is_file()
        return (
            "Caveat: the validation split is carved at random out of train_img.csv, per image, "
            "so the two eyes of one patient can sit on both sides"
            + (
                "; here the images are the synthetic fundus stand-in, so the numbers show that "
                "the pipeline works on a five-grade task, not how well the models grade real "
                "photographs."
                if synthetic
                else "."
            )
        )
    caveats = []
    shared = subjects_per_split(layout) if layout is not None else None
    if shared is not None and "test" in shared.index and shared.loc["test", "also in train"]:
        caveats.append(
            f"{shared.loc['test', 'also in train']} of the {shared.loc['test', 'subjects']} "
            "test subjects also have cells in the training split"
        )
    if layout is not None and _synthetic_cells(layout):
        caveats.append(
            "this run used the synthetic stand-in dataset, so its numbers show that the "
            "pipeline works, not how well the models do on real cells"
        )
    if (
        shared is not None
        and not shared.drop(index="train", errors="ignore")["also in train"].any()
    ):
        return (
            "Split by subject: each patient's cells sit in one split only, so the accuracies "
            "are those of patients the networks never saw"
            + ("; " + "; ".join(caveats) if caveats else "")
            + "."
        )
    return (
        "Caveat: the course split is random per image, so cells of one patient can sit in both "
        "training and test data; on real C-NMC images that leaks patient-specific staining and "
        "makes reported accuracy optimistic (on C-NMC's folds, `lab3 run --split-mode subject`, "
        'or `split_mode = "subject"` in the notebooks\' parameters, keeps each patient in one '
        "split)" + ("; here " + "; ".join(caveats) if caveats else "") + "."
    )


def _synthetic_cells(layout: Layout) -> bool:
    """Whether the folder is `lab3 synth`'s stand-in: its truth file, and a metadata file that
    records each image's split (real sets with a metadata file, such as a set of patients'
    cells, name the subjects but take their split from the course's CSVs)."""
    metadata = layout.root / METADATA_CSV
    if not (metadata.is_file() and (layout.root / TRUTH_CSV).is_file()):
        return False
    return "split" in pd.read_csv(metadata, nrows=0).columns


def pretrained_text(
    scratch: Mapping[str, ModelResults], pretrained: Mapping[str, ModelResults]
) -> str:
    """The section on the depths trained from ImageNet weights: that it is outside the course's
    rules, where the weights came from, and each depth's accuracy both ways."""
    split = report_split({**scratch, **pretrained})
    files = [init_weights_of(r) for r in pretrained.values()]
    parts = [
        "## Beyond the course rules: ImageNet weights\n\n"
        "**These runs are outside the course's rules**, which forbid pretrained weights: each "
        "depth is trained again, with the same recipe, from ImageNet weights (torchvision's, "
        "loaded strictly into the same ResNets written for this lab, only the classifier head "
        "replaced for the task's classes; inputs normalised with ImageNet's mean and std). "
        "They are kept out of every table of the course's from-scratch models above."
    ]
    if any(f is not None and not f.get("published") for f in files):
        names = ", ".join(sorted({f["file"] for f in files if f is not None}))
        parts.append(
            f"The weights files in torch's cache ({names}) are **not torchvision's published "
            "ones** (their SHA-256 does not match the name): stand-ins placed there because no "
            "download was possible, so this comparison shows the machinery, not what ImageNet "
            "pretraining is worth."
        )
    pairs = []
    for name, result in pretrained.items():
        depth = name.removesuffix("-imagenet")
        if depth not in scratch:
            continue
        before = scratch[depth].evaluations[split].metrics["accuracy"]
        after = result.evaluations[split].metrics["accuracy"]
        pairs.append(
            f"{pretty_model_name(depth)} {pct(before)} from scratch, {pct(after)} from ImageNet "
            f"weights ({100 * (after - before):+.1f} points)"
        )
    if pairs:
        parts.append(f"Best checkpoints on the {split} split: " + "; ".join(pairs) + ".")
    return " ".join(parts)


def attention_text(
    summary: Mapping[str, Mapping[str, AttentionShares]],
    split: str,
    ablation: Mapping[str, AttentionShares] | None = None,
    layers: Mapping[str, tuple[str, tuple[int, int]]] | None = None,
    image_size: int | None = None,
) -> str:
    """What the Grad-CAM numbers say (`attention.summarise`: per depth and split, its maps'
    `AttentionShares`): per depth, the share of its maps on the cell against the cell's own share
    of the image (what an evenly spread map would get), and its mistakes against its right
    answers, called a difference only when it exceeds two standard errors; then which layer the
    maps come from (`attention.map_layers`) and how fine they are, and the ablation's variants."""
    depths = {model: splits[split] for model, splits in summary.items() if split in splits}
    points = [depth_attention_text(model, shares, split) for model, shares in depths.items()]
    sampled = _sampled_maps_text(list(depths.values()), split)
    if sampled:
        points.append(sampled)
    if layers:
        points.append(map_resolution_text(layers, image_size))
    if ablation:
        parts = [
            f"{pct(shares.on_cell)} with {variant} (the cell covers {pct(shares.cell_area)})"
            for variant, shares in ablation.items()
        ]
        points.append(
            "In the preprocessing ablation (ResNet18, validation split, one view) the share of "
            f"map mass on the cell is {join_names(parts)}."
        )
    return "\n".join(f"- {p}" for p in points)


def depth_attention_text(model: str, shares: AttentionShares, split: str) -> str:
    """One depth's sentence: its maps' share on the cell against an evenly spread map's, then
    its mistakes against its right answers."""
    text = (
        f"**{pretty_model_name(model)}** puts {pct(shares.on_cell)} of its attention on the cell, "
        f"which covers {pct(shares.cell_area)} of the image"
    )
    above, noise = shares.above_even, shares.above_even_two_se
    if not np.isfinite(noise) or abs(above) <= max(noise, 5e-4):  # within noise or 0.0
        text += " (no more than an evenly spread map would put there)"
    else:
        text += (
            f" ({100 * abs(above):.1f} points {'more' if above > 0 else 'less'} than an evenly "
            f"spread map would put there, two standard errors ±{100 * noise:.1f})"
        )
    return text + _mistakes_text(shares, split)


def _mistakes_text(shares: AttentionShares, split: str) -> str:
    """The mistakes' share on the cell against the right answers', when there are mistakes."""
    mistakes = shares.mistakes
    if mistakes == 0:
        return f"; it makes no mistakes on the {split} split to compare."
    gap, noise = shares.right_minus_wrong, shares.right_minus_wrong_two_se
    if not np.isfinite(noise):
        return (
            f"; its {'one mistake' if mistakes == 1 else f'{mistakes} mistakes'} "
            f"{pct(shares.wrong)}, too few to compare with its right answers "
            f"({pct(shares.right)})."
        )
    text = f"; its {mistakes} mistakes {pct(shares.wrong)}, right answers {pct(shares.right)}"
    if abs(gap) <= max(noise, 5e-4):
        return text + (
            f": a difference of {100 * abs(gap):.1f} points, inside the noise (two "
            f"standard errors: ±{100 * noise:.1f} points)."
        )
    return text + (
        f": its mistakes look {'less' if gap > 0 else 'more'} at the cell, by "
        f"{100 * abs(gap):.1f} points, more than two standard errors "
        f"(±{100 * noise:.1f} points)."
    )


def _sampled_maps_text(depths: Sequence[AttentionShares], split: str) -> str:
    """How many maps stand behind the shares, when a depth mapped only some of the split."""
    sampled = [shares for shares in depths if shares.maps < shares.images]
    if not sampled:
        return ""
    low, high = min(s.maps for s in sampled), max(s.maps for s in sampled)
    count = f"{low}" if low == high else f"{low}-{high}"
    return (
        f"The shares come from {count} maps per depth of the {max(s.images for s in sampled)} "
        f"{split} images: each depth's mistakes and its right answers, each evenly sampled "
        "when there are many, and weighed by their share of the split."
    )


def map_resolution_text(
    layers: Mapping[str, tuple[str, tuple[int, int]]], image_size: int | None = None
) -> str:
    """Which stage the maps come from and how many cells they have: a map's share on a centred
    cell means nothing when it has too few cells (a 2x2 map can only tilt, which cancels out)."""
    size = f"{image_size} px" if image_size else "this size"
    (layer, (rows, cols)), *_ = sorted(set(layers.values()), key=lambda v: v[1])
    text = f"The maps come from `{layer}`, {rows}x{cols} cells at {size}"
    if layer != "layer4" and image_size:
        side = -(-image_size // 32)
        text += (
            f", rather than from the last stage, whose {side}x{side} output is too coarse to "
            "tell a cell from its frame (a 2x2 map can only tilt from one side to the other, "
            "which over a centred cell cancels out)"
        )
    if max(rows, cols) == 1:
        return (
            text + ": a single cell spreads every map evenly, so its share on the cell is the "
            "cell's area and says nothing about where the networks look."
        )
    if max(rows, cols) <= 4:
        return text + ": they separate the cell from the black frame only coarsely."
    return text + "."
