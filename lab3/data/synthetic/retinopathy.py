"""A synthetic default for the retinopathy edition of the lab: fundus-like discs, five grades.

The earlier edition of this lab graded diabetic retinopathy 0-4 from fundus photographs
(headerless ``train_img.csv``/``train_label.csv``/``test_img.csv``/``test_label.csv``, images
``<name>.jpeg``). This generator writes that layout, small and quick, so the whole workbook runs
on a five-class, imbalanced, ordinal task without any download.

Each image is an orange-red disc on black (the retina through the pupil) with a vignette, a
bright optic disc on the nasal side (mirrored between left and right eyes), a darker macula and
dark vessels branching from the optic disc. The grade shows in lesions whose number and kind
grow with it, as in the clinical scale:

* 0 none: no lesions (now and then one faint pale dot, a harmless confounder);
* 1 mild: a few microaneurysms (small dark-red dots);
* 2 moderate: more microaneurysms, and yellow hard exudates;
* 3 severe: many of both, and larger blot haemorrhages;
* 4 proliferative: all of that, and new vessels (a tangle of thin vessels near the optic disc)
  with a pre-retinal haemorrhage.

Counts are drawn around a per-grade mean, so neighbouring grades overlap (the task is ordinal,
which is what quadratic-weighted kappa rewards), and the grades are imbalanced like the real
data (most eyes are grade 0). Lesions are sized to stay visible after resizing to 48-64 px.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from lab3.data.formats import METADATA_CSV
from lab3.errors import UserError

DEFAULT_TRAIN = 900  # lab3 carves its validation split out of these (15 %)
DEFAULT_TEST = 200
DEFAULT_SIZE = 256
DEFAULT_OUT = Path("data/retinopathy")
# share of each grade: grade 0 the majority, as in the real data (about 73 % there)
GRADE_SHARES = (0.55, 0.12, 0.18, 0.08, 0.07)
# mean lesion counts per grade: microaneurysms, exudates, haemorrhages, new-vessel tangles
LESION_MEANS = (
    (0.0, 0.0, 0.0, 0.0),
    (3.0, 0.0, 0.0, 0.0),
    (6.0, 3.0, 0.0, 0.0),
    (9.0, 6.0, 4.0, 0.0),
    (10.0, 7.0, 5.0, 1.0),
)


def grades_for(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` grades in the `GRADE_SHARES` proportions (every grade present when n >= 5), shuffled."""
    counts = np.floor(np.asarray(GRADE_SHARES) * n).astype(int)
    if n >= len(GRADE_SHARES):
        counts = np.maximum(counts, 1)
    counts[0] += n - counts.sum()
    return rng.permutation(np.repeat(np.arange(len(GRADE_SHARES)), counts))


def _vessel(rng: np.random.Generator, start: np.ndarray, angle: float, length: float, step: float):
    """A wandering polyline: a vessel's course from `start`."""
    points = [start.copy()]
    point = start.copy()
    for _ in range(int(length / step)):
        angle += rng.normal(0, 0.25)
        point = point + step * np.array([np.cos(angle), np.sin(angle)])
        points.append(point.copy())
    return [tuple(p) for p in points]


def draw_fundus(rng: np.random.Generator, grade: int, size: int = DEFAULT_SIZE) -> np.ndarray:
    """One fundus-like RGB image (uint8, size x size) of the given grade."""
    s = size / 256  # every length below is for 256 px
    centre = np.array([size / 2, size / 2]) + rng.normal(0, 3 * s, 2)
    radius = size * rng.uniform(0.43, 0.47)
    right_eye = rng.random() < 0.5
    base = np.array([200, 85, 40]) * rng.uniform(0.85, 1.1) + rng.normal(0, 8, 3)
    image = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    side = 1 if right_eye else -1
    disc = centre + np.array([side * radius * 0.55, rng.normal(0, radius * 0.05)])
    macula = centre + np.array([-side * radius * 0.05, rng.normal(0, radius * 0.03)])

    def ellipse(at: np.ndarray, r: float, colour: tuple[int, ...]) -> None:
        draw.ellipse([at[0] - r, at[1] - r, at[0] + r, at[1] + r], fill=colour)

    ellipse(centre, radius, tuple(int(c) for c in np.clip(base, 0, 255)))
    ellipse(macula, 22 * s, tuple(int(c) for c in np.clip(base * 0.75, 0, 255)))
    vessel_colour = tuple(int(c) for c in np.clip(base * np.array([0.62, 0.4, 0.45]), 0, 255))
    for k in range(rng.integers(5, 8)):
        angle = (2 * np.pi * k / 6) + rng.normal(0, 0.3)
        line = _vessel(rng, disc, angle, radius * rng.uniform(0.8, 1.4), 6 * s)
        draw.line(line, fill=vessel_colour, width=max(1, int(round(3 * s))))
    ellipse(disc, 16 * s, (245, 215, 150))

    means = LESION_MEANS[grade]
    counts = [rng.poisson(m) if m else 0 for m in means]
    if grade > 0:
        counts[0] = max(counts[0], 1)  # a graded eye shows at least one lesion
    if grade == 4:
        counts[3] = max(counts[3], 1)

    def inside(margin: float) -> np.ndarray:
        while True:
            r = radius * np.sqrt(rng.random()) * (1 - margin)
            at = centre + r * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
            if np.linalg.norm(at - disc) > 20 * s:
                return at

    red = (110, 15, 15)
    for _ in range(counts[0]):  # microaneurysms
        ellipse(inside(0.1), rng.uniform(4, 6) * s, red)
    for _ in range(counts[1]):  # hard exudates
        ellipse(inside(0.15), rng.uniform(4, 7) * s, (250, 225, 95))
    for _ in range(counts[2]):  # blot haemorrhages
        at = inside(0.15)
        r = rng.uniform(8, 13) * s
        draw.ellipse([at[0] - r, at[1] - r * 0.8, at[0] + r, at[1] + r * 0.8], fill=(95, 10, 10))
    for _ in range(counts[3]):  # new vessels and a pre-retinal haemorrhage
        for _ in range(6):
            line = _vessel(rng, disc, rng.uniform(0, 2 * np.pi), 28 * s, 3 * s)
            draw.line(line, fill=(150, 20, 25), width=max(1, int(round(2 * s))))
        ellipse(inside(0.3), rng.uniform(16, 22) * s, (90, 8, 8))
    if grade == 0 and rng.random() < 0.2:  # a faint pale dot: not a lesion
        ellipse(inside(0.2), 3 * s, tuple(int(c) for c in np.clip(base * 1.2, 0, 255)))

    image = image.filter(ImageFilter.GaussianBlur(0.8 * s))
    pixels = np.asarray(image).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    dist = np.hypot(yy - centre[1], xx - centre[0]) / radius
    vignette = np.clip(1.05 - 0.45 * dist**2, 0, 1)[..., None]
    pixels = pixels * vignette * rng.uniform(0.85, 1.15) + rng.normal(0, 4, pixels.shape)
    pixels[dist > 1] = 0
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_retinopathy_dataset(
    out: Path,
    train: int = DEFAULT_TRAIN,
    test: int = DEFAULT_TEST,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Write the retinopathy edition's layout at `out`; return its metadata table.

    Built in a hidden sibling folder and renamed into place, so an interrupted run leaves
    nothing half-written at `out`.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            "already exists and is not empty; delete it or choose another --out folder", out
        )
    if train < 10 or test < 1:
        raise UserError(
            f"need at least 10 training images (a validation split is carved out of them) "
            f"and 1 test image, not {train} and {test}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E71]))
    rows = []
    for split, n in (("train", train), ("test", test)):
        for index, grade in enumerate(grades_for(n, rng)):
            eye = "left" if index % 2 == 0 else "right"
            rows.append((split, f"{10000 * (split == 'test') + index + 1}_{eye}", int(grade)))
    plan = pd.DataFrame(rows, columns=["split", "name", "label"])
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "data").mkdir()
        for i, row in enumerate(tqdm(plan.itertuples(), total=len(plan), disable=not progress)):
            image_rng = np.random.default_rng(np.random.SeedSequence([seed, i, row.label]))
            pixels = draw_fundus(image_rng, row.label, size)
            Image.fromarray(pixels).save(tmp / "data" / f"{row.name}.jpeg", quality=92)
        for split in ("train", "test"):
            part = plan[plan["split"] == split]
            (tmp / f"{split}_img.csv").write_text("\n".join(part["name"]) + "\n")
            (tmp / f"{split}_label.csv").write_text("\n".join(map(str, part["label"])) + "\n")
        plan.to_csv(tmp / METADATA_CSV, index=False)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return plan
