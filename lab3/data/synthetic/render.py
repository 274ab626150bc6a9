"""Drawing one synthetic cell: subjects' stain styles, each cell's latent cues, the image.

What the cues are and why they sit at three scales is in the package's docstring
(`lab3.data.synthetic`). Each image's random stream comes from (seed, split, index), so the order
and the number of workers change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from lab3.data.formats import SPLITS

DEFAULT_SIZE = 450  # the course's frames are 450x450

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
