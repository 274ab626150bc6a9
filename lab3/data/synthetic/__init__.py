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

The package in three parts: `render` draws one cell, `write` plans and writes a dataset in the
course layout, `baselines` measures how hard the task is without deep learning (for the
benchmarks and tests); `retinopathy` writes the earlier edition's stand-in.
"""

from lab3.data.features import cell_features
from lab3.data.synthetic.baselines import feature_baseline, feature_table, latent_ceiling
from lab3.data.synthetic.render import (
    BLAST_FRACTION,
    CUE_SCALES,
    DEFAULT_SIZE,
    HARD_FRACTION,
    N_SUBJECTS,
    REAL_BLACK_FRACTION_RANGE,
    REAL_CELL_RGB_RANGE,
    REAL_MEAN_PIXEL_RANGE,
    CellParams,
    SubjectStyle,
    draw_cell,
    image_rng,
    make_subjects,
    render_cell,
    sample_cell_params,
)
from lab3.data.synthetic.write import (
    DEFAULT_OUT,
    DEFAULT_TEST,
    DEFAULT_TRAIN,
    DEFAULT_VALID,
    MIN_SIZE,
    TEST_CSV_NAMES,
    assign_labels,
    check_request,
    holds_dataset,
    plan_dataset,
    test_orders,
    write_synthetic_dataset,
)

__all__ = [
    "BLAST_FRACTION",
    "CUE_SCALES",
    "DEFAULT_OUT",
    "DEFAULT_SIZE",
    "DEFAULT_TEST",
    "DEFAULT_TRAIN",
    "DEFAULT_VALID",
    "HARD_FRACTION",
    "MIN_SIZE",
    "N_SUBJECTS",
    "REAL_BLACK_FRACTION_RANGE",
    "REAL_CELL_RGB_RANGE",
    "REAL_MEAN_PIXEL_RANGE",
    "TEST_CSV_NAMES",
    "CellParams",
    "SubjectStyle",
    "assign_labels",
    "cell_features",
    "check_request",
    "draw_cell",
    "feature_baseline",
    "feature_table",
    "holds_dataset",
    "image_rng",
    "latent_ceiling",
    "make_subjects",
    "plan_dataset",
    "render_cell",
    "sample_cell_params",
    "test_orders",
    "write_synthetic_dataset",
]
