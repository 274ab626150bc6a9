"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class comes from.

The maps are computed here by hand (a forward hook and one gradient) rather than with a library
that would bring OpenCV along. They are made as evaluation sees the images: the evaluated weights
(the EMA where the run kept one, as `LoadedCheckpoint` loads them), in eval mode and fp32, on the
same normalised batches. The number that goes with the pictures is the *foreground share*: how
much of a map's mass falls on the cell (the preprocessed image's own non-black pixels) rather
than on the black frame around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lab3.data.loader import DeviceLoader
from lab3.data.preprocess import foreground_mask, load_image
from lab3.engine.evaluate import LoadedCheckpoint, Predictions

TARGET_LAYER = "layer4"  # the last convolutional stage of lab3's ResNets (and torchvision's)
STAGE_STRIDES = {"layer4": 32, "layer3": 16, "layer2": 8}  # lab3's ResNets, deepest first
MIN_SIDE = 6  # cells a side a map needs to tell a centred cell from its frame


def stage_side(stage: str, image_size: int) -> int:
    """The side of a ResNet stage's output for a square input of `image_size` px."""
    return math.ceil(image_size / STAGE_STRIDES[stage])


def choose_layer(image_size: int) -> str:
    """The deepest stage whose map has at least `MIN_SIDE` cells a side: `layer4` from 192 px
    on (7x7 at 224), an earlier stage for small inputs. A 2x2 map (`layer4` at 48 px) can only
    tilt from one side to the other, which over a centred cell cancels out: its share on the
    cell is the cell's area whatever the network looks at."""
    for stage in STAGE_STRIDES:
        if stage_side(stage, image_size) >= MIN_SIDE:
            return stage
    return "layer2"


@dataclass
class Cams:
    maps: torch.Tensor  # N x H x W, >= 0, at the input's size (not normalised: mass is kept)
    probs: torch.Tensor  # N x classes, softmax of this fp32 forward (one view)
    classes: torch.Tensor  # N, the class each map explains
    grid: tuple[int, int]  # the target layer's spatial size: the map's true resolution


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor | Sequence[int] | None = None,
    layer: str = TARGET_LAYER,
) -> Cams:
    """Grad-CAM of `images` (a normalised N x C x H x W batch) for `classes` (default: the
    predicted ones): each channel of `layer`'s output weighted by the spatial mean of its
    gradient, summed, ReLU, upsampled bilinearly to H x W.

    The model's parameters, BatchNorm buffers and train/eval mode are left as they were, and no
    `.grad` is written: the gradient is taken with respect to the layer's output only.
    """
    stage = dict(model.named_modules()).get(layer)
    if stage is None:
        raise ValueError(f"grad_cam: the model has no module named {layer!r}")
    modes = {module: module.training for module in model.modules()}
    kept: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        # The stages before run without a graph (no memory for their activations); from here on
        # the head runs with one, so the class score can be differentiated by this output.
        torch.set_grad_enabled(True)
        kept.append(output.detach().float().requires_grad_(True))
        return kept[-1]

    handle = stage.register_forward_hook(keep)
    try:
        model.eval()
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            logits = model(images.float()).float()
            if not kept:
                raise ValueError(f"grad_cam: {layer!r} was not called by the model's forward")
            target = logits.argmax(1) if classes is None else torch.as_tensor(classes)
            target = target.to(logits.device).long()
            score = logits.gather(1, target[:, None]).sum()  # images are independent in eval
            (grad,) = torch.autograd.grad(score, kept[-1])
            torch.set_grad_enabled(False)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * kept[-1].detach()).sum(dim=1, keepdim=True))
            maps = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
            probs = torch.softmax(logits.detach(), dim=1)
    finally:
        handle.remove()
        for module, training in modes.items():
            module.training = training
    return Cams(maps[:, 0], probs, target, (cam.shape[-2], cam.shape[-1]))


def foreground_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per map, the share of its mass on the foreground mask (NaN for an all-zero map)."""
    maps = np.asarray(maps, dtype=np.float64)
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def explain_split(
    loaded: LoadedCheckpoint,
    split: str,
    predictions: Predictions | None = None,
    layer: str = TARGET_LAYER,
    per_group: int | None = None,
) -> pd.DataFrame:
    """One row per image of `split`: its label, the class the map explains and its probability,
    whether that is right, the map's foreground share, and the cell's share of the image (what
    an evenly spread map would put on it).

    With `predictions` (the evaluation's, TTA included) each map explains the evaluated
    prediction and right/wrong follows the confusion matrix; without, the map's own forward
    (one view) decides. `per_group` bounds the maps made: with predictions, at most that many
    right and that many wrong images, evenly spread over each group's rows, are mapped (the
    others keep their prediction, with no share: `attention.compare` weighs each group by its
    size); without, that many images evenly spread over the split.
    """
    known = None
    if predictions is not None:
        outcome = _outcome(predictions.probs, predictions.predicted, predictions.labels)
        known = pd.DataFrame({"row": predictions.rows, "label": predictions.labels, **outcome})
        groups = [_spread(group["row"].to_numpy(), per_group) for _, group in outcome_groups(known)]
        rows = np.concatenate(groups) if groups else np.zeros(0, dtype=int)
    else:
        rows = _spread(loaded.data.rows(split), per_group)
    mapped = _map_rows(loaded, np.sort(rows), predictions, layer)
    frame = mapped if known is None else _merge(known, mapped)
    frame = frame.sort_values("row", ignore_index=True) if len(frame) else frame
    frame.attrs["grid"] = mapped.attrs["grid"]
    frame.attrs["layer"] = layer
    return frame


def _outcome(probs: np.ndarray, picked: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: the class picked, its probability, and right (1), wrong (0) or unlabelled
    (NaN)."""
    return {
        "predicted": picked,
        "prob": probs[np.arange(len(picked)), picked],
        "correct": np.where(labels >= 0, picked == labels, np.nan),
    }


def outcome_groups(frame: pd.DataFrame) -> list[tuple[float, pd.DataFrame]]:
    """The rows split into wrong (0), right (1) and unlabelled (-1: NaN `correct`)."""
    return list(frame.groupby(frame["correct"].fillna(-1.0), sort=True))


def _spread(rows: np.ndarray, count: int | None) -> np.ndarray:
    """At most `count` of `rows`, evenly spread over them (all when there are fewer)."""
    rows = np.sort(np.asarray(rows))
    if count is None or len(rows) <= count:
        return rows
    return rows[np.linspace(0, len(rows) - 1, count).round().astype(int)]


def _map_rows(
    loaded: LoadedCheckpoint, rows: np.ndarray, predictions: Predictions | None, layer: str
) -> pd.DataFrame:
    """The maps of some rows: per row the class explained, its one-view probability, right or
    wrong by that view, the foreground share and the cell's area."""
    by_row = None if predictions is None else {int(r): i for i, r in enumerate(predictions.rows)}
    frames, grid = [], None
    for images, labels, batch_rows in loaded.data.rows_loader(rows):
        classes = (
            None
            if by_row is None
            else predictions.predicted[  # type: ignore[union-attr]
                [by_row[int(r)] for r in batch_rows]
            ]
        )
        cams = grad_cam(loaded.model, images, classes, layer)
        masks = np.stack([foreground_mask(loaded.data.cache.images[r]) for r in batch_rows])
        labels = labels.cpu().numpy()
        grid = cams.grid
        outcome = _outcome(cams.probs.cpu().numpy(), cams.classes.cpu().numpy(), labels)
        frames.append(
            pd.DataFrame(
                {
                    "row": batch_rows,
                    "label": labels,
                    **outcome,
                    "share": foreground_share(cams.maps.cpu().numpy(), masks),
                    "area": masks.mean(axis=(1, 2)),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame.attrs["grid"] = grid
    return frame


def _merge(known: pd.DataFrame, mapped: pd.DataFrame) -> pd.DataFrame:
    """The evaluation's rows with the maps' share and area where a map was made."""
    columns = ["row", "share", "area"]
    if mapped.empty:
        return known.assign(share=np.nan, area=np.nan)
    return known.merge(mapped[columns], on="row", how="left")


def cams_for_rows(
    loaded: LoadedCheckpoint,
    rows: Sequence[int],
    classes: Sequence[int] | None = None,
    layer: str = TARGET_LAYER,
) -> tuple[np.ndarray, Cams]:
    """The preprocessed images (uint8, as cached) of some rows of the layout and their maps."""
    images = loaded.data.cache.images
    return _cams_of_pixels(loaded, np.asarray(images[np.asarray(rows)]), classes, layer)


def cams_for_files(
    loaded: LoadedCheckpoint, paths: Sequence[str], layer: str = TARGET_LAYER
) -> tuple[np.ndarray, Cams]:
    """Image files preprocessed as the checkpoint's data was, and their maps."""
    pixels = np.stack([loaded.data.pipeline(load_image(str(p))) for p in paths])
    return _cams_of_pixels(loaded, pixels, None, layer)


def _cams_of_pixels(
    loaded: LoadedCheckpoint,
    pixels: np.ndarray,
    classes: Sequence[int] | None,
    layer: str,
) -> tuple[np.ndarray, Cams]:
    """Normalised by evaluation's own loader code, so the maps see what evaluation saw."""
    data = loaded.data
    loader = DeviceLoader(
        pixels,
        np.full(len(pixels), -1),
        np.arange(len(pixels)),
        batch_size=max(len(pixels), 1),
        device=data.device,
        mean=data.normalisation[0],
        std=data.normalisation[1],
        channels_last=loaded.config.use_channels_last(),
    )
    ((batch, _labels, _rows),) = list(loader)
    cams = grad_cam(loaded.model, batch, classes, layer)
    return pixels, Cams(cams.maps.cpu(), cams.probs.cpu(), cams.classes.cpu(), cams.grid)
