"""The embedded default dataset: synthetic C-NMC-like leukemia cell images in the course layout.

Nothing can be downloaded, so the workbook must be able to run on data it makes itself. The images
imitate the real C-NMC 2019 crops (one segmented, stained lymphocyte on a pure-black 450x450
frame: same mean pixel value, black fraction, cell size, stain colours and texture spectrum as the
real fixtures), and the classes differ the way blasts differ from normal lymphocytes, at three
scales, so that the lab's lessons show on it:

* global (weak): blasts are a little larger, with a more irregular outline (blebs);
* mid (strong together): normal cells show a crescent of pale cytoplasm on one side (the nucleus
  sits off-centre), blasts an even rim and a folded (cleft) nucleus. These are 15-50 px at
  450 px, 3-10 px after a tight crop to 48 px: the quick profile can see them, and the tight crop
  doubles their size against the whole frame shrunk: preprocessing matters. They keep the
  nucleus's area, so summary features of area, colour and texture see them only in part;
* fine (strong): normal cells show many small dark clumps of condensed chromatin, blasts fine
  even chromatin and pale nucleoli. These are 5-16 px at 450 px, under 2 px at 48 px: they pay
  only at higher resolution, so resolution matters.

Every cue is drawn from overlapping class distributions and 0.5 % of cells are drawn from the
other class's distributions, so no model can be perfect: a classifier on the latent cues
themselves reaches about 99 %, on the global and mid ones alone about 98 % (`latent_ceiling`),
one on hand-crafted summary features about 80 % (`feature_baseline`).

Each image belongs to a synthetic subject (patient or donor, as in C-NMC) whose stain hue,
saturation, brightness and focus shift all its cells; a model must see through that.

Generation is deterministic per seed: each image's random stream comes from (seed, split, index),
so the worker count does not change a single byte.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
from tqdm import tqdm

from lab3.errors import UserError

DEFAULT_TRAIN = 1200
DEFAULT_VALID = 300
DEFAULT_TEST = 200
DEFAULT_OUT = Path("data/synthetic")
DEFAULT_SIZE = 450
MIN_SIZE = 32  # smaller frames lose the cell's cues, and ResNet's five halvings leave nothing

SPLITS = ("train", "valid", "test")
TEST_CSV_NAMES = ("resnet_18_test.csv", "resnet_50_test.csv", "resnet_152_test.csv")
TRUTH_CSV = "test_labels.csv"
METADATA_CSV = "metadata.csv"

BLAST_FRACTION = 0.68  # share of label 1 (ALL blasts) in every split, as in the course CSVs
N_SUBJECTS = 40
HARD_FRACTION = 0.005  # cells whose morphology is drawn from the other class: caps accuracy

# Measured on the 11 real C-NMC fixtures (450x450): mean pixel value 9.4-15.6, pure-black pixels
# 76.2-84.2 %, equivalent cell diameter 202-248 px, cell pixels' mean RGB (61-89, 22-41, 72-90).
# The generator keeps every image inside the first two ranges (tests assert it).
REAL_MEAN_PIXEL_RANGE = (9.0, 16.0)
REAL_BLACK_FRACTION_RANGE = (0.76, 0.845)
REAL_CELL_RGB_RANGE = ((60.0, 90.0), (20.0, 42.0), (70.0, 92.0))

# Optical densities (R, G, B) fitted to the fixtures: nucleus = base + chromatin * CHROMATIN
# (about (64, 25, 77) on average; chromatin varies R and G far more than B, so pale spots look
# pink and dense ones blue-purple); the cytoplasm rim is a paler, bluer lavender (the fixtures'
# outer 10 px ring is greener and bluer than their core: about (75, 41, 88) against (71, 28, 77)).
_NUCLEUS_OD = np.array([0.88, 1.76, 1.04], dtype=np.float32)
_CHROMATIN_OD = np.array([0.42, 0.52, 0.13], dtype=np.float32)
_CYTOPLASM_OD = np.array([0.93, 1.37, 0.8], dtype=np.float32)
_ANGLES = 1024  # resolution of the polar outline tables


@dataclass(frozen=True)
class SubjectStyle:
    """Per-subject staining and imaging shifts, shared by all of one subject's cells.

    Real C-NMC subjects are either patients (all cells ALL, label 1) or healthy donors (all cells
    normal, label 0), and each was stained and imaged separately; a model must see through that.
    """

    subject: str
    label: int
    hue: float = 0.0  # shifts stain towards red (+) or blue (-)
    saturation: float = 1.0  # scales the chroma of the stain
    brightness: float = 1.0  # scales optical density: above 1 is darker
    blur: float = 0.6  # focus: Gaussian radius in pixels at 450 px


# The scale each entry of CellParams.vector() acts at (see sample_cell_params).
CUE_SCALES = ("global",) * 5 + ("mid",) * 4 + ("fine",) * 4


@dataclass(frozen=True)
class CellParams:
    """The latent morphology of one cell; the image is a deterministic-plus-noise rendering."""

    label: int
    hard: bool
    diameter: float  # equivalent diameter at 450 px
    ellipticity: float
    irregularity: float  # amplitude of outline harmonics 3..12
    bleb: float  # cytoplasm protrusion amplitude (fraction of radius), 0 = none
    notch: float  # bite out of the outline, 0 = none
    nc_ratio: float  # nucleus radius / cell radius
    eccentricity: float  # nucleus offset, makes the rim a crescent
    cleft: float  # nuclear cleft depth (fraction of radius), 0 = none
    nucleus_irregularity: float
    coarseness: float  # grain of the chromatin: 0 fine and even ... 1 coarse and blotchy
    density: float  # nuclear stain density
    clumps: int  # small dark condensed-chromatin clumps (many in normal lymphocytes)
    nucleoli: int  # pale round nucleoli (visible in most blasts)

    def vector(self) -> np.ndarray:
        """The latent cues as features: what a perfect observer of the morphology would see."""
        return np.array(
            [
                self.diameter,
                self.ellipticity,
                self.irregularity,
                self.bleb,
                self.notch,
                self.nc_ratio,
                self.eccentricity,
                self.cleft,
                self.nucleus_irregularity,
                self.coarseness,
                self.density,
                self.clumps,
                self.nucleoli,
            ],
            dtype=np.float64,
        )


def make_subjects(seed: int = 0, n: int = N_SUBJECTS) -> list[SubjectStyle]:
    """Synthetic subjects: about 68 % patients (label 1, ids A..), the rest donors (H..)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B1EC7]))
    n_all = int(round(BLAST_FRACTION * n))
    subjects = []
    for i in range(n):
        label = 1 if i < n_all else 0
        name = f"A{i + 1:02d}" if label else f"H{i - n_all + 1:02d}"
        subjects.append(
            SubjectStyle(
                subject=name,
                label=label,
                hue=float(rng.normal(0.0, 0.04)),
                saturation=float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
                brightness=float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1)),
                blur=float(rng.uniform(0.3, 1.1)),
            )
        )
    return subjects


def assign_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Labels for one split: exactly round(68 %) blasts in random order, as in the course CSVs."""
    labels = np.zeros(n, dtype=np.int64)
    labels[: int(round(BLAST_FRACTION * n))] = 1
    return rng.permutation(labels)


def plan_dataset(
    train: int = DEFAULT_TRAIN,
    valid: int = DEFAULT_VALID,
    test: int = DEFAULT_TEST,
    seed: int = 0,
    n_subjects: int = N_SUBJECTS,
) -> pd.DataFrame:
    """Who is who, without rendering: path, label, split, subject, index per image.

    Subjects have unequal cell counts (Dirichlet weights) and appear in every split, like the
    course's per-image random split; `subject` allows a subject-disjoint split downstream.
    """
    subjects = make_subjects(seed, n_subjects)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x91A7]))
    pools = {}
    for label in (0, 1):
        names = [s.subject for s in subjects if s.label == label]
        pools[label] = (names, rng.dirichlet(np.full(len(names), 3.0)))
    frames = []
    for split, n in zip(SPLITS, (train, valid, test), strict=True):
        labels = assign_labels(rng, n)
        who = np.empty(n, dtype=object)
        for label in (0, 1):
            names, weights = pools[label]
            sel = labels == label
            who[sel] = rng.choice(names, size=int(sel.sum()), p=weights)
        frames.append(
            pd.DataFrame(
                {
                    "path": [f"./new_dataset/{split}/{i}.bmp" for i in range(n)],
                    "label": labels,
                    "split": split,
                    "subject": who.astype(str),
                    "index": np.arange(n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image, independent of order and worker count."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


# ---------------------------------------------------------------------------------------------
# Rendering


def sample_cell_params(rng: np.random.Generator, label: int) -> CellParams:
    """Draw one cell's morphology; every cue overlaps between classes.

    Three scales (sizes at 450 px, and at the quick profile's 48 px after a tight crop):

    * global (weak): size and outline roughness, which summary features see directly;
    * mid (strong together): the nucleus-to-cytoplasm rim, even in blasts (about 15 px, 3 px
      at 48), a crescent on one side in normal cells (20-30 px, 4-6 px at 48), and the nuclear
      cleft of blasts (15-30 px deep, 30-50 px wide). Both keep the nucleus's area: features
      of areas and texture energy see them only in part, a convolutional network does;
    * fine (strong): dark condensed-chromatin clumps (normal) vs pale nucleoli and fine even
      chromatin (blasts), 5-16 px: under 2 px at 48, so they pay only at higher resolution.
    """
    hard = bool(rng.random() < HARD_FRACTION)
    blast = (label == 1) != hard
    if blast:
        diameter = rng.normal(224.0, 11.0)
        irregularity = abs(rng.normal(0.019, 0.009))
        eccentricity = rng.normal(0.025, 0.022)
        cleft = rng.normal(0.22, 0.065)
        coarseness = rng.normal(0.42, 0.2)
        density = rng.normal(1.02, 0.06)
        clumps = int(rng.poisson(rng.uniform(0.0, 10.0)))
        nucleoli = int(rng.choice(4, p=[0.2, 0.35, 0.3, 0.15]))
        bleb_p, nirr = 0.2, abs(rng.normal(0.016, 0.007))
    else:
        diameter = rng.normal(218.0, 11.0)
        irregularity = abs(rng.normal(0.015, 0.008))
        eccentricity = rng.normal(0.1, 0.028)
        cleft = rng.normal(0.02, 0.065)
        coarseness = rng.normal(0.58, 0.2)
        density = rng.normal(0.99, 0.06)
        clumps = int(rng.poisson(rng.uniform(10.0, 36.0)))
        nucleoli = int(rng.choice(4, p=[0.8, 0.15, 0.05, 0.0]))
        bleb_p, nirr = 0.12, abs(rng.normal(0.012, 0.006))
    return CellParams(
        label=label,
        hard=hard,
        diameter=float(np.clip(diameter, 203.0, 243.0)),
        ellipticity=float(rng.uniform(0.0, 0.09)),
        irregularity=float(irregularity),
        bleb=float(rng.uniform(0.08, 0.2)) if rng.random() < bleb_p else 0.0,
        notch=float(rng.uniform(0.04, 0.1)) if rng.random() < 0.1 else 0.0,
        nc_ratio=float(np.clip(rng.normal(0.87, 0.015), 0.83, 0.91)),
        eccentricity=float(np.clip(eccentricity, 0.0, 0.2)),
        cleft=float(np.clip(cleft, 0.0, 0.4)),
        nucleus_irregularity=float(nirr),
        coarseness=float(np.clip(coarseness, 0.0, 1.0)),
        density=float(np.clip(density, 0.85, 1.15)),
        clumps=clumps,
        nucleoli=nucleoli,
    )


def _bump(theta: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A Gaussian bump in angle, wrapped around the circle."""
    d = np.angle(np.exp(1j * (theta - centre)))
    return np.exp(-((d / width) ** 2))


def _outline(rng: np.random.Generator, p: CellParams, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Polar radius tables (cell, nucleus) over _ANGLES angles, cell area set by p.diameter."""
    theta = np.linspace(-np.pi, np.pi, _ANGLES, endpoint=False)
    shape = 1.0 + p.ellipticity * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
    for h in range(3, 13):
        amp = p.irregularity * rng.normal() * (3.0 / h) ** 1.3
        shape += amp * np.cos(h * theta + rng.uniform(0, 2 * np.pi))
    # Fine roughness of every segmentation mask, the same for both classes.
    high = np.arange(13, 41)[:, None]
    amps = rng.normal(0.0, 0.0025, size=(len(high), 1)) * (13.0 / high)
    shape += (amps * np.cos(high * theta + rng.uniform(0, 2 * np.pi, size=(len(high), 1)))).sum(0)
    body = shape.copy()
    if p.notch:
        body -= p.notch * _bump(theta, rng.uniform(-np.pi, np.pi), rng.uniform(0.15, 0.3))
    cell = body.copy()
    if p.bleb:
        cell += p.bleb * _bump(theta, rng.uniform(-np.pi, np.pi), rng.uniform(0.18, 0.35))
    # Scale so that the area (0.5 * integral of r^2) matches the drawn equivalent diameter.
    radius = 0.5 * p.diameter * k / np.sqrt(np.mean(cell**2))
    # The offset nucleus leaves a cytoplasm crescent on one side, the same area all round.
    ratio = p.nc_ratio - p.eccentricity * np.cos(theta - rng.uniform(-np.pi, np.pi))
    for h in range(2, 9):
        amp = p.nucleus_irregularity * rng.normal() * (2.0 / h)
        ratio += amp * np.cos(h * theta + rng.uniform(0, 2 * np.pi))
    if p.cleft:
        # A narrow fold, its lost area given back round the rest of the nucleus.
        fold = p.cleft * _bump(theta, rng.uniform(-np.pi, np.pi), rng.uniform(0.18, 0.3))
        ratio += fold.mean() - fold
    ratio = np.minimum(ratio, 0.985)
    return (cell * radius).astype(np.float32), (body * ratio * radius).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Unit-variance noise with features about `scale` pixels wide: low-res noise, upsampled.

    Coarse noise uses a grid twice as fine as `scale`, pre-smoothed, so that the bicubic
    upsampling leaves no visible square grid (at fine scales the grid is too small to see).
    """
    coarse = scale >= 5.0
    step = scale / 2.0 if coarse else scale
    low = max(4, int(np.ceil(n / step)) + 5)
    noise = rng.standard_normal((low, low), dtype=np.float32)
    if coarse:
        for axis in (0, 1):  # [1, 2, 1] / 4 in each direction
            noise = 0.5 * noise + 0.25 * (np.roll(noise, 1, axis) + np.roll(noise, -1, axis))
    noise = np.ascontiguousarray(noise[1:-1, 1:-1])
    big = max(n, int(round(noise.shape[0] * step)))
    up = np.asarray(Image.fromarray(noise).resize((big, big), Image.BICUBIC))
    oy, ox = rng.integers(0, big - n + 1, size=2)
    out = up[oy : oy + n, ox : ox + n]
    return (out - out.mean()) / (out.std() + 1e-6)


def _stain_vectors(style: SubjectStyle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stain optical densities (nucleus base, chromatin, cytoplasm) shifted by the subject."""
    shift = np.array([np.exp(style.hue), 1.0, np.exp(-style.hue)], dtype=np.float32)
    vectors = []
    for od in (_NUCLEUS_OD, _CHROMATIN_OD, _CYTOPLASM_OD):
        v = od * shift
        v = v.mean() + (v - v.mean()) * style.saturation
        vectors.append((v * style.brightness).astype(np.float32))
    return vectors[0], vectors[1], vectors[2]


def draw_cell(
    rng: np.random.Generator, params: CellParams, style: SubjectStyle, size: int = DEFAULT_SIZE
) -> np.ndarray:
    """Render `params` as an (size, size, 3) uint8 image: stained cell on pure black."""
    k = size / DEFAULT_SIZE
    r_cell, r_nuc = _outline(rng, params, k)
    half = int(np.ceil(r_cell.max())) + 4
    n = 2 * half
    cy, cx = (float(v) for v in size / 2 + rng.uniform(-2.5, 2.5, size=2) * k)
    y0, x0 = int(round(cy)) - half, int(round(cx)) - half
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    dy, dx = yy + (y0 - cy), xx + (x0 - cx)
    rho = np.hypot(dx, dy)
    idx = ((np.arctan2(dy, dx) + np.pi) * (_ANGLES / (2 * np.pi))).astype(np.int32) % _ANGLES
    inside_cell = r_cell[idx] - rho  # ~ signed distance to the outline, px, positive inside
    inside_nuc = r_nuc[idx] - rho

    alpha = np.clip(inside_cell / (1.5 * k) + 0.3, 0.0, 1.0)
    nuc = np.clip(inside_nuc / (5.0 * k) + 0.5, 0.0, 1.0)
    # The cell is thinner near its edge, hence the paler halo of the real crops.
    edge = np.maximum(inside_cell, 0.0) / (rng.uniform(4.0, 8.0) * k)
    thickness = 1.0 - rng.uniform(0.15, 0.35) * np.exp(-edge)

    # Chromatin: fine even grain (blasts) vs coarse dark clumps (normal), over a blotchy mottle.
    c = params.coarseness
    fine = _smooth_noise(rng, n, (2.2 + 1.0 * c) * k)
    blotches = _smooth_noise(rng, n, (7.0 + 5.0 * c) * k)
    mottle = _smooth_noise(rng, n, rng.uniform(22.0, 40.0) * k)
    texture = (0.24 - 0.08 * c) * fine + (0.35 + 0.2 * c) * blotches + 0.85 * mottle
    chromatin = 1.0 + 0.32 * texture
    for _ in range(params.clumps):  # small, dense, dark
        radius, gain = rng.uniform(2.5, 4.5) * k, rng.uniform(0.3, 0.6)
        _add_spot(rng, chromatin, r_nuc, half, radius, 0.85, gain)
    for _ in range(params.nucleoli):  # larger, pale, central
        radius, gain = rng.uniform(4.0, 8.0) * k, -rng.uniform(0.5, 0.8)
        _add_spot(rng, chromatin, r_nuc, half, radius, 0.55, gain)

    base, chrom, cyto = _stain_vectors(style)
    dn = (nuc * params.density * thickness)[..., None]
    dc = ((1.0 - nuc) * (1.0 + 0.05 * mottle) * thickness)[..., None]
    rgb = 255.0 * np.exp(-(dn * (base + chromatin[..., None] * chrom) + dc * cyto))
    rgb += 0.5 * rng.standard_normal((n, n, 1), dtype=np.float32)  # sensor noise
    patch = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    patch = np.asarray(patch.filter(ImageFilter.GaussianBlur(style.blur * k)), dtype=np.float32)
    patch = patch * alpha[..., None]
    patch = np.where(alpha[..., None] > 0, np.maximum(patch, 1.0), 0.0)
    patch = _fit_brightness(patch, size)

    img = np.zeros((size, size, 3), dtype=np.uint8)
    sy, sx = slice(max(y0, 0), min(y0 + n, size)), slice(max(x0, 0), min(x0 + n, size))
    img[sy, sx] = patch[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0].round()
    return img


def _add_spot(
    rng: np.random.Generator,
    chromatin: np.ndarray,
    r_nuc: np.ndarray,
    half: int,
    radius: float,
    reach: float,
    strength: float,
) -> None:
    """Scale chromatin by (1 + strength) in a soft ellipse inside the nucleus, in place.

    Positive strength is a dense clump, negative a pale nucleolus; `reach` is how far out (as a
    fraction of the nucleus radius) its centre may lie.
    """
    angle = rng.uniform(-np.pi, np.pi)
    edge = r_nuc[int((angle + np.pi) / (2 * np.pi) * _ANGLES) % _ANGLES]
    dist = max(min(edge * reach * np.sqrt(rng.random()), edge - 2.0 * radius), 0.0)
    py, px = half + dist * np.sin(angle), half + dist * np.cos(angle)
    r = int(np.ceil(radius * 1.6)) + 2
    ys, xs = int(py) - r, int(px) - r
    yy, xx = np.mgrid[ys : ys + 2 * r, xs : xs + 2 * r].astype(np.float32)
    squash = rng.uniform(0.7, 1.0)
    tilt = rng.uniform(0.0, np.pi)
    u = (yy - py) * np.cos(tilt) + (xx - px) * np.sin(tilt)
    v = (xx - px) * np.cos(tilt) - (yy - py) * np.sin(tilt)
    q = (u / (radius * squash)) ** 2 + (v / radius) ** 2
    chromatin[ys : ys + 2 * r, xs : xs + 2 * r] *= 1.0 + strength * np.exp(-(q**2))


def _fit_brightness(patch: np.ndarray, size: int) -> np.ndarray:
    """Scale the cell's intensity so the frame's mean pixel stays in the measured real range."""
    lo, hi = REAL_MEAN_PIXEL_RANGE
    mean = patch.sum() / (size * size * 3)
    target = float(np.clip(mean, lo + 0.5, hi - 0.5))
    if target != mean:
        patch = np.where(patch > 0, np.clip(patch * (target / mean), 1.0, 255.0), 0.0)
    return patch


def render_cell(
    rng: np.random.Generator, label: int, style: SubjectStyle, size: int = DEFAULT_SIZE
) -> np.ndarray:
    """One synthetic C-NMC cell image, (size, size, 3) uint8, of class `label` (1 = blast)."""
    return draw_cell(rng, sample_cell_params(rng, label), style, size)


# ---------------------------------------------------------------------------------------------
# Writing a dataset


def _render_task(task: tuple[int, str, int, int, SubjectStyle, int, str]) -> None:
    seed, split, index, label, style, size, dest = task
    img = render_cell(image_rng(seed, split, index), label, style, size)
    Image.fromarray(img).save(dest, format="BMP")


def holds_dataset(folder: Path) -> bool:
    """Whether `folder` holds a dataset in the course layout (what `synth` writes)."""
    return (folder / "train.csv").is_file()


def _check_out(out: Path, force: bool = False) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError("exists and is not a folder; choose another --out folder", out)
    if holds_dataset(out):
        if not force:
            raise UserError(
                "already holds a dataset; pass --force to replace it or choose another --out", out
            )
        return
    if any(out.iterdir()):
        raise UserError(
            "already exists and is not empty; delete it or choose another --out folder", out
        )


def check_request(train: int, valid: int, test: int, size: int) -> None:
    """Refuse counts and sizes that would make a dataset nothing can train on, before writing."""
    for name, n in (("train", train), ("valid", valid), ("test", test)):
        if int(n) < 1:
            raise UserError(f"--{name} must be at least 1 image, not {n}")
    if int(size) < MIN_SIZE:
        raise UserError(f"--size must be at least {MIN_SIZE} pixels, not {size}")


def _run_tasks(tasks: list, workers: int, progress: bool) -> None:
    with tqdm(total=len(tasks), desc="synthetic images", unit="img", disable=not progress) as bar:
        if workers <= 1:
            for task in tasks:
                _render_task(task)
                bar.update()
            return
        # spawn, not fork: safe when the parent (a notebook) has torch and its threads loaded.
        with mp.get_context("spawn").Pool(workers) as pool:
            chunk = max(1, min(16, len(tasks) // (workers * 4)))
            for _ in pool.imap_unordered(_render_task, tasks, chunksize=chunk):
                bar.update()


def write_synthetic_dataset(
    out: Path,
    train: int = DEFAULT_TRAIN,
    valid: int = DEFAULT_VALID,
    test: int = DEFAULT_TEST,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> pd.DataFrame:
    """Generate the dataset in the course layout at `out`; return its metadata table.

    Everything is built in a hidden sibling folder and renamed into place at the end, so an
    interrupted run never leaves a half-written dataset at `out`. With `force`, a dataset
    already at `out` is replaced (only once the new one is complete); other files never are.
    """
    out = Path(out)
    check_request(train, valid, test, size)
    _check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = plan_dataset(train, valid, test, seed)
    styles = {s.subject: s for s in make_subjects(seed)}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for split in SPLITS:
            (tmp / "new_dataset" / split).mkdir(parents=True)
        tasks = [
            (seed, r.split, int(r.index), int(r.label), styles[r.subject], size, str(tmp / r.path))
            for r in plan.itertuples(index=False)
        ]
        _run_tasks(tasks, workers or os.cpu_count() or 1, progress)
        _write_csvs(tmp, plan, seed)
        _check_out(out, force)  # someone may have filled it meanwhile
        if out.exists() and holds_dataset(out):  # --force: swap the old dataset out, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return plan.drop(columns="index")


def test_orders(n: int, seed: int) -> list[np.ndarray]:
    """One seeded shuffle of the test rows per depth's CSV, as in the course.

    The course's `resnet_18_test.csv`, `resnet_50_test.csv` and `resnet_152_test.csv` list the
    same images in three different orders, so a submission that follows the wrong depth's CSV
    is misaligned; the synthetic set keeps that trap. The truth file follows the first order.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E57]))
    orders: list[np.ndarray] = []
    for _ in TEST_CSV_NAMES:
        order = rng.permutation(n)
        # Redraw a repeat (likely only for a handful of test images); n < 3 has too few orders.
        while n >= 3 and any(np.array_equal(order, o) for o in orders):
            order = rng.permutation(n)
        orders.append(order)
    return orders


def _write_csvs(root: Path, plan: pd.DataFrame, seed: int) -> None:
    """The course's CSVs (same headers, path forms, line endings), the truth, the metadata."""
    for split in ("train", "valid"):
        rows = plan[plan["split"] == split]
        rows[["path", "label"]].rename(columns={"path": "Path"}).to_csv(
            root / f"{split}.csv", index=False
        )
    test = plan[plan["split"] == "test"]
    for name, order in zip(TEST_CSV_NAMES, test_orders(len(test), seed), strict=True):
        test.iloc[order][["path"]].rename(columns={"path": "Path"}).to_csv(root / name, index=False)
    truth = test.iloc[test_orders(len(test), seed)[0]]
    truth[["path", "label"]].rename(columns={"path": "ID"}).to_csv(root / TRUTH_CSV, index=False)
    plan[["path", "label", "split", "subject"]].to_csv(root / METADATA_CSV, index=False)


# ---------------------------------------------------------------------------------------------
# A hand-crafted feature baseline: how hard is the task without deep learning?


def cell_features(img: np.ndarray) -> np.ndarray:
    """Summary features a non-deep baseline would use: size, outline roughness, nucleus
    fraction, mean colour, brightness spread and texture energy at three scales."""
    any_channel = img.max(axis=2) > 0
    if not any_channel.any():
        return np.zeros(10)
    ys, xs = np.nonzero(any_channel)
    margin = 14  # crop to the cell: the same numbers, a third of the work
    y0, x0 = max(ys.min() - margin, 0), max(xs.min() - margin, 0)
    img = np.ascontiguousarray(img[y0 : ys.max() + margin + 1, x0 : xs.max() + margin + 1])
    rgb = img.astype(np.float32)
    mask = img.max(axis=2) > 0
    area = float(mask.sum())
    lum = rgb.mean(axis=2)
    # Boundary pixels: cell pixels with a background 4-neighbour; roughness = perimeter^2 / area.
    pad = np.pad(mask, 1)
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    perimeter = float((mask & ~interior).sum())
    core = _erode(mask, 12)
    if not core.any():
        core = mask
    cell_lum = lum[mask]
    # The nucleus is the darker bulk; the pale rim and halo are cytoplasm.
    nucleus = float((cell_lum < np.percentile(cell_lum, 60) * 1.08).mean())
    im = Image.fromarray(img)
    blurred = [lum] + [
        np.asarray(im.filter(ImageFilter.GaussianBlur(s)), dtype=np.float32).mean(axis=2)
        for s in (1.5, 4.0, 10.0)
    ]
    energies = [
        float((fine - coarse)[core].std())
        for fine, coarse in zip(blurred[:-1], blurred[1:], strict=True)
    ]
    return np.array(
        [
            area,
            perimeter**2 / area,
            nucleus,
            *rgb[core].mean(axis=0),
            float(lum[core].std()),
            *energies,
        ]
    )


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by a (2 steps + 1) square, via an integral image (fast, no SciPy)."""
    w = 2 * steps + 1
    total = np.pad(mask.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    box = total[w:, w:] - total[:-w, w:] - total[w:, :-w] + total[:-w, :-w]
    out = np.zeros_like(mask)
    out[steps:-steps, steps:-steps] = box == w * w
    return out


def _features_of(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return cell_features(np.asarray(im.convert("RGB")))


def feature_table(
    meta: pd.DataFrame, root: Path, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels for every row of `meta` (paths relative to `root`)."""
    paths = [str(Path(root) / p) for p in meta["path"]]
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        feats = [_features_of(p) for p in paths]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            feats = pool.map(_features_of, paths, chunksize=8)
    return np.stack(feats), meta["label"].to_numpy()


def feature_baseline(meta: pd.DataFrame, root: Path, workers: int | None = None) -> float:
    """Accuracy of logistic regression on hand-crafted features: train split -> valid+test.

    The number deep models must beat; on this generator it sits well above the 68 % majority
    class and well below what a CNN reaches.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = feature_table(meta, root, workers)
    train = (meta["split"] == "train").to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x[train], y[train])
    return float(model.score(x[~train], y[~train]))


def latent_ceiling(
    n: int = 20000, seed: int = 0, scales: tuple[str, ...] = ("global", "mid", "fine")
) -> float:
    """Accuracy of a flexible classifier on the latent cues themselves (no rendering).

    An estimate of the best any image model can do on this generator when it sees the cues of
    `scales` perfectly: ("global", "mid") is the most a model that cannot resolve the fine
    cues can reach. The cues overlap and a few cells are drawn from the other class.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns = [i for i, scale in enumerate(CUE_SCALES) if scale in scales]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCE11]))
    labels = assign_labels(rng, n)
    x = np.stack([sample_cell_params(rng, int(y)).vector()[columns] for y in labels])
    half = n // 2
    model = HistGradientBoostingClassifier(max_iter=300).fit(x[:half], labels[:half])
    return float(model.score(x[half:], labels[half:]))


def iter_samples(
    n: int, seed: int = 0, size: int = DEFAULT_SIZE, label: int | None = None
) -> Iterator[tuple[int, str, np.ndarray]]:
    """Render `n` cells (label, subject, image) without writing files: for figures and checks."""
    subjects = make_subjects(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A3]))
    for i in range(n):
        y = int(rng.random() < BLAST_FRACTION) if label is None else label
        style = subjects[int(rng.choice([j for j, s in enumerate(subjects) if s.label == y]))]
        yield y, style.subject, render_cell(image_rng(seed, "test", 10**6 + i), y, style, size)


def sample_grid(images: Iterable[np.ndarray], columns: int = 6, cell: int = 225) -> Image.Image:
    """Tile images (downscaled to `cell` px) into one picture, row by row."""
    tiles = [Image.fromarray(im).resize((cell, cell), Image.BILINEAR) for im in images]
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell, rows * cell))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * cell, (i // columns) * cell))
    return grid
