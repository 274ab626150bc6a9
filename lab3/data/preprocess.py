"""Preprocessing: named host-side steps run once into the cache, and batched device augmentation.

Host steps are composed from a config string such as ``"tightcrop,equalize,resize:224"``:

* ``tightcrop[:margin]`` crops to the cell (its bounding box plus a margin, made square): the
  non-black pixels on a black frame, the stained nucleus and its cytoplasm on a smear's own
  background (`lab3.data.locate`). C-NMC cells fill about a fifth of the 450x450 frame, so
  resizing the whole frame to 224 throws away most of the resolution the chromatin texture
  lives in.
* ``centercrop:N`` keeps the central NxN pixels.
* ``resize:N`` resizes to NxN with area-averaging (antialiased).
* ``grey`` converts to one luminance channel.
* ``equalize`` equalises the histogram of the cell's pixels only: the black background (80 % of
  the frame) would otherwise dominate the histogram and wash the cell out.

Augmentation (``"dihedral,affine,color"``) runs on the device on whole batches, with parameters
drawn per image: the 8 dihedral symmetries (lossless for cells, which have no up or left),
small rotations/scales/shifts, and stain/brightness jitter that keeps the background black.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lab3.data.locate import cell_box, foreground_mask
from lab3.errors import UserError


@dataclass(frozen=True)
class Step:
    name: str
    arg: float | None = None

    def __str__(self) -> str:
        if self.arg is None:
            return self.name
        value = int(self.arg) if float(self.arg).is_integer() else self.arg
        return f"{self.name}:{value}"


def tight_crop(image: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Square crop around the cell's bounding box plus `margin` (a fraction of its side); the
    cell is found on any background (`lab3.data.locate.cell_box`)."""
    box = cell_box(image)
    if box is None:
        return image
    cy, cx, side = box
    side = int(math.ceil(side * (1 + 2 * margin)))
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    out = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
    src_t, src_l = max(top, 0), max(left, 0)
    src_b, src_r = min(top + side, image.shape[0]), min(left + side, image.shape[1])
    out[src_t - top : src_b - top, src_l - left : src_r - left] = image[src_t:src_b, src_l:src_r]
    return out


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    size = min(size, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(
        pil.resize(
            (size, size), Image.Resampling.BOX if size < pil.width else Image.Resampling.BILINEAR
        )
    )
    return out[..., None] if squeeze else out


def to_grey(image: np.ndarray) -> np.ndarray:
    if image.shape[2] == 1:
        return image
    luminance = image @ np.array([0.299, 0.587, 0.114]) + 0.5  # the weights sum to 1: 0.5..255.5
    return luminance.astype(np.uint8)[..., None]


def equalize_foreground(image: np.ndarray) -> np.ndarray:
    """Per-channel histogram equalisation computed over the cell's pixels; background stays 0."""
    mask = foreground_mask(image)
    if mask.sum() < 16:
        return image
    out = np.zeros_like(image)
    for c in range(image.shape[2]):
        values = image[..., c][mask]
        cdf = np.cumsum(np.bincount(values))  # up to the brightest value: cdf[-1] counts all
        lo = cdf[cdf > 0][0]  # the count of the darkest value, which maps to 1
        lut = np.round((cdf - lo) / max(cdf[-1] - lo, 1) * 254) + 1  # 1..255 on the cell's values
        out[..., c][mask] = lut[values]
    return out


_STEPS: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    # name: (function, takes an argument)
    "tightcrop": (tight_crop, False),
    "centercrop": (center_crop, True),
    "resize": (resize, True),
    "grey": (to_grey, False),
    "equalize": (equalize_foreground, False),
}
_ALIASES = {"gray": "grey", "crop": "tightcrop", "equalise": "equalize", "histeq": "equalize"}


class Pipeline:
    """An ordered list of host-side steps; `str(pipeline)` is its canonical spec (the cache key)."""

    def __init__(self, steps: list[Step]):
        self.steps = steps

    @classmethod
    def parse(cls, spec: str) -> Pipeline:
        steps = []
        for token in filter(None, (t.strip() for t in spec.replace(" ", "").split(","))):
            name, _, arg = token.partition(":")
            name = _ALIASES.get(name.lower(), name.lower())
            if name in ("none", "plain"):
                continue
            if name not in _STEPS:
                raise UserError(
                    f"unknown preprocessing step {name!r} in {spec!r}; known: {', '.join(_STEPS)}"
                )
            needs_arg = _STEPS[name][1]
            if needs_arg and not arg:
                raise UserError(f"preprocessing step {name!r} needs a size, e.g. {name}:224")
            try:
                value = float(arg) if arg else None
            except ValueError:
                raise UserError(f"bad argument {arg!r} for step {name!r} in {spec!r}") from None
            steps.append(Step(name, value))
        return cls(steps)

    @classmethod
    def for_config(cls, preprocess: str, image_size: int) -> Pipeline:
        """The preprocessing spec with a final resize to the working size unless it has one."""
        pipeline = cls.parse(preprocess)
        if not any(s.name == "resize" for s in pipeline.steps):
            pipeline.steps.append(Step("resize", float(image_size)))
        return pipeline

    @property
    def channels(self) -> int:
        return 1 if any(s.name == "grey" for s in self.steps) else 3

    @property
    def output_size(self) -> int | None:
        sizes = [int(s.arg) for s in self.steps if s.name == "resize" and s.arg]
        return sizes[-1] if sizes else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[..., None]
        for step in self.steps:
            fn = _STEPS[step.name][0]
            if step.name == "tightcrop":
                image = fn(image, step.arg if step.arg is not None else 0.05)
            elif step.arg is not None:
                image = fn(image, int(step.arg))
            else:
                image = fn(image)
        return np.ascontiguousarray(image)

    def __str__(self) -> str:
        return ",".join(map(str, self.steps)) or "none"

    def __repr__(self) -> str:
        return f"Pipeline({str(self)!r})"


def load_image(path: str) -> np.ndarray:
    """Decode one image as HxWx3 uint8; a broken file is a UserError naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise UserError("image not found; restore it or remove it from the CSV", path) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise UserError(
            f"cannot decode image ({err}); the file is truncated or corrupt, replace it", path
        ) from None


# --- device augmentation ----------------------------------------------------------------------

AUGMENTATIONS = ("dihedral", "affine", "color")


@dataclass(frozen=True)
class Augment:
    """Batched, per-image random augmentation of float images in [0, 1] (N, C, H, W)."""

    dihedral: bool = True
    affine: bool = True
    color: bool = True
    max_rotation: float = 15.0  # degrees, on top of the dihedral quarter turns
    max_scale: float = 0.10  # relative zoom in or out
    max_shift: float = 0.06  # fraction of the image side
    max_gain: float = 0.10  # per-channel stain jitter (multiplicative)
    max_brightness: float = 0.15

    @classmethod
    def parse(cls, spec: str) -> Augment | None:
        names = {t.strip().lower() for t in spec.split(",") if t.strip()}
        if not names or names <= {"none", "off"}:
            return None
        unknown = names - set(AUGMENTATIONS)
        if unknown:
            raise UserError(
                f"unknown augmentation {sorted(unknown)[0]!r}; known: {', '.join(AUGMENTATIONS)}"
            )
        return cls(dihedral="dihedral" in names, affine="affine" in names, color="color" in names)

    def draw(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random parameters for `n` images, drawn on the CPU so CPU and CUDA runs agree."""

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator) * 2 - 1

        params = {
            "quarter": torch.randint(4, (n,), generator=generator)
            if self.dihedral
            else torch.zeros(n, dtype=torch.long),
            "flip": torch.randint(2, (n,), generator=generator).bool()
            if self.dihedral
            else torch.zeros(n, dtype=torch.bool),
            "angle": uniform(n) * self.max_rotation if self.affine else torch.zeros(n),
            "scale": 1 + uniform(n) * self.max_scale if self.affine else torch.ones(n),
            "shift": uniform(n, 2) * self.max_shift * 2 if self.affine else torch.zeros(n, 2),
            "gain": 1 + uniform(n, 3) * self.max_gain if self.color else torch.ones(n, 3),
            "brightness": 1 + uniform(n) * self.max_brightness if self.color else torch.ones(n),
        }
        return params

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, white: float = 1.0
    ) -> torch.Tensor:
        params = self.draw(images.shape[0], generator)
        return apply_augmentation(images, params, white)


def affine_matrices(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 2, 3) sampling matrices: flip, quarter turns + small rotation, zoom and shift."""
    angle = params["quarter"].float() * (math.pi / 2) + params["angle"] * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    flip = torch.where(params["flip"], -1.0, 1.0)
    inv_scale = 1 / params["scale"]
    theta = torch.zeros(angle.shape[0], 2, 3, device=angle.device)
    theta[:, 0, 0] = cos * inv_scale * flip
    theta[:, 0, 1] = -sin * inv_scale
    theta[:, 1, 0] = sin * inv_scale * flip
    theta[:, 1, 1] = cos * inv_scale
    theta[:, :, 2] = params["shift"]
    return theta


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on `device` without making the host wait for the GPU: a plain
    `.to("cuda")` from pageable memory synchronises with the stream, so pin it and copy
    asynchronously (the pinned block is kept until the copy is done)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (N, C, H, W), align_corners=False)` built by broadcasting, not by a
    batched matrix product over every pixel: the same grid for a fraction of the work."""
    options = {"device": theta.device, "dtype": theta.dtype}
    xs = (torch.arange(width, **options) * 2 + 1) / width - 1
    ys = (torch.arange(height, **options) * 2 + 1) / height - 1
    grid = torch.empty(theta.shape[0], height, width, 2, **options)
    for k in range(2):  # output x, then y: a row of theta applied to (x, y, 1)
        row = theta[:, k, :, None, None]  # N x 3 x 1 x 1
        torch.add(row[:, 0] * xs, row[:, 1] * ys[:, None] + row[:, 2], out=grid[..., k])
    return grid


def apply_augmentation(
    images: torch.Tensor, params: dict[str, torch.Tensor], white: float = 1.0
) -> torch.Tensor:
    """Apply parameters drawn by `Augment.draw` (on the CPU: the branch decisions below are made
    there, so a CUDA batch needs no host synchronisation): the geometry, then the colour jitter,
    saturating at `white`, the value of a full pixel (1 for images in [0, 1])."""
    images = apply_geometry(images, params)
    factor = color_factor(params, images.shape[1])
    if factor is None:
        return images
    factor = to_device(factor.to(images.dtype), images.device)
    return (images * factor[:, :, None, None]).clamp_(max=white)  # factors > 0: never below 0


def apply_geometry(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The dihedral element, rotation, zoom and shift of `params`: exact quarter turns and flips
    when nothing else moves (in the images' own dtype: uint8 pixels move a quarter of the bytes
    float ones do), else one bilinear resampling for all of them, in float."""
    exact = bool(
        (params["angle"] == 0).all()
        and (params["scale"] == 1).all()
        and (params["shift"] == 0).all()
    )
    if exact:
        return dihedral_batch(images, params["quarter"], params["flip"])
    images = images.float() if not images.is_floating_point() else images
    theta = to_device(affine_matrices(params).to(images.dtype), images.device)
    grid = affine_grid(theta, *images.shape[2:])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_factor(params: dict[str, torch.Tensor], channels: int) -> torch.Tensor | None:
    """Per image and channel (N x C, on the CPU), the stain gain times the brightness; None when
    every factor is 1 (no colour jitter)."""
    gain = params["gain"][:, :channels]  # one channel (grey): the first gain
    factor = gain * params["brightness"][:, None]
    return None if bool((factor == 1).all()) else factor


def dihedral_batch(images: torch.Tensor, quarter: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Exact (lossless) dihedral transform with a different element per image (CPU parameters)."""
    out = images.clone()
    for q, f in torch.stack((quarter, flip.long()), dim=1).unique(dim=0).tolist():  # those used
        sel = torch.nonzero((quarter == q) & (flip == f)).flatten()
        index = to_device(sel, images.device)
        x = images.index_select(0, index)
        if f:
            x = torch.flip(x, dims=(3,))
        out.index_copy_(0, index, torch.rot90(x, k=q, dims=(2, 3)))
    return out


def dihedral_views(images: torch.Tensor, count: int = 8) -> list[torch.Tensor]:
    """The first `count` of the 8 dihedral views of a batch (identity first), for TTA."""
    views = []
    for index in range(count):
        x = torch.flip(images, dims=(3,)) if index >= 4 else images
        views.append(torch.rot90(x, k=index % 4, dims=(2, 3)))
    return views
