"""How long a workbook run will take, told before the user waits.

The work of every notebook is counted from the dataset and the plans the notebooks follow
(`lab3.engine.plan` for each training's steps, `ablation.ablation_plan` for notebook 02, the
predictions and maps of `results` and `attention` for notebook 05): optimizer steps per depth,
images through each model at evaluation, images to decode into a cache. It is priced with a few
of the engine's own training steps (`TrainStep`, as `fit` and `lab3 bench` take it) and
evaluation batches timed on this machine, in the precision and memory layout the run will use.
What does not scale with the models (starting a kernel, drawing figures, the exploration) is a
fixed allowance per notebook. After each notebook the estimate of the rest is scaled by how far
the finished notebooks of the same kind ran from theirs: the notebooks that are mostly a fixed
allowance (01, 03) say little about the training ones, whose prices were timed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lab3.config import TrainConfig, make_config
from lab3.data.cache import cache_folder
from lab3.data.layouts import Layout
from lab3.data.preprocess import Pipeline
from lab3.engine.optim import WeightAverage, make_optimizer
from lab3.engine.plan import training_plan
from lab3.engine.step import TrainStep, grad_scaler
from lab3.workbook.ablation import AblationPlan, ablation_plan
from lab3.workbook.attention import planned_ablation_maps, planned_maps
from lab3.workbook.results import evaluation_views, planned_predictions

# Seconds a notebook takes besides the work counted below (kernel start, imports, figures,
# tables), from the per-notebook times of the default run (benchmarks/results/workbook_*.md).
# Between a CPU with bf16 and a slower one without (01 took 10-24 s, 03 12-31 s, the figures
# and tables of 05 20-40 s); `Estimate.pace` rescales them by the first ones that finish.
FIXED_SECONDS = {
    "01_data_exploration": 15.0,
    "02_preprocessing_experiments": 15.0,
    "03_resnet_definitions": 20.0,
    "04_train": 12.0,
    "05_evaluation_and_report": 30.0,
}
# A Grad-CAM map (notebook 05's "What the networks look at") costs about this many forward
# passes: the forward, and the backward from the class score down to the target stage
MAP_FORWARDS = 3
MISTAKES = 0.1  # share of the report split a depth gets wrong, for counting its maps
DECODE_SECONDS = 0.006  # one 450 px image decoded, cropped and resized into a cache, per core
# A step in a real epoch costs more than a bare timed one: batches gathered and augmented,
# BatchNorm statistics re-estimated in training mode, checkpoints written.
LOOP_OVERHEAD = 1.15
# training steps timed per depth, after one that warms up; the fastest counts, so a step that
# another process delayed does not inflate the whole estimate
TIMED_STEPS = 3


@dataclass(frozen=True)
class Prices:
    """What one unit of work costs a depth on this machine, in seconds."""

    train_step: float  # one optimizer step at the profile's batch size
    forward_image: float  # one image through the model in evaluation


@dataclass
class Work:
    """What one notebook does, counted: training steps and evaluated images per depth."""

    steps: dict[str, int] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    decoded: int = 0  # images decoded into caches that do not exist yet

    def seconds(self, prices: Mapping[str, Prices], fixed: float, cores: int) -> float:
        compute = sum(n * prices[m].train_step for m, n in self.steps.items())
        compute += sum(n * prices[m].forward_image for m, n in self.images.items())
        loop = LOOP_OVERHEAD if self.steps else 1.0
        return fixed + loop * compute + self.decoded * DECODE_SECONDS / max(cores, 1)

    def add(self, model: str, steps: int = 0, images: int = 0) -> None:
        """Count `steps` and `images` more of `model` (a depth with none is not listed)."""
        if steps:
            self.steps[model] = self.steps.get(model, 0) + steps
        if images:
            self.images[model] = self.images.get(model, 0) + images


def time_depth(config: TrainConfig, steps: int = TIMED_STEPS) -> Prices:
    """The fastest of `steps` timed training steps and one evaluation batch of `config.model`
    on random images at the config's size, batch, precision and memory layout, after one of
    each to warm up.

    The step is the engine's, as `fit` builds it: `TrainStep` with the config's optimizer
    (`make_optimizer`), loss and autocast, fp16's loss scaler (`grad_scaler`), then the weight
    average's update where the config keeps one. It runs uncompiled: compiling would take
    longer than the estimate is worth. Under fp16 the timed steps are never skipped for an
    overflow (a skipped step leaves out the optimizer's update, which most steps make)."""
    from lab3.models import build_model

    torch.manual_seed(config.seed)
    memory = torch.channels_last if config.use_channels_last() else torch.contiguous_format
    device = config.resolved_device()
    model = build_model(config.model, num_classes=2).to(device, memory_format=memory)
    step = TrainStep(
        model,
        make_optimizer(model, config),
        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        config.autocast(),
        scaler=grad_scaler(config),
    )
    average = WeightAverage(model, config.ema) if config.ema > 0 else None
    size = config.image_size
    images = torch.randn(config.batch_size, 3, size, size, device=device)
    images = images.contiguous(memory_format=memory)
    labels = torch.randint(0, 2, (config.batch_size,), device=device)

    def train_step() -> None:
        step(images, labels)
        if average is not None:
            average.update(model, 0)

    @torch.no_grad()
    def forward() -> None:
        with config.autocast():
            model(evaluation_batch)

    model.train()
    train_step()
    if step.scaler is not None:  # a scale no gradient overflows: the timed steps update the
        step.scaler.update(1.0)  # weights, as a training's do once its scale has settled
    seconds = min(_timed(train_step, device) for _ in range(steps))
    model.eval()
    evaluation_batch = torch.cat([images, images])  # evaluation batches are twice as large
    forward()
    per_image = _timed(forward, device) / len(evaluation_batch)
    return Prices(train_step=seconds, forward_image=per_image)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds `fn` takes, the device's queued work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _split_sizes(layout: Layout) -> dict[str, int]:
    sizes = {s: int((layout.table["split"] == s).sum()) for s in ("train", "valid", "test")}
    sizes["test_labelled"] = sizes["test"] if layout.has_test_labels else 0
    return sizes


def _training(config: TrainConfig, sizes: Mapping[str, int], processes: int = 1) -> tuple[int, int]:
    """(optimizer steps, images evaluated) of one of `processes` in one `fit` of `config`: every
    epoch of its plan trains, then re-estimates BatchNorm statistics and evaluates valid (and
    test when labelled), each process its share of the images."""
    plan = training_plan(config, sizes["train"], processes)
    per_evaluation = min(config.precise_bn, plan.images) + sizes["valid"] + sizes["test_labelled"]
    return plan.steps, math.ceil(plan.epochs * per_evaluation / processes)


def count_work(
    layout: Layout,
    profile: str,
    models: Sequence[str],
    device: str = "auto",
    processes: int = 1,
    pretrained: bool = False,
) -> dict[str, Work]:
    """Each notebook's work (keyed by its output name, `04_train_<model>` per depth); with
    several processes training a depth, each does its share of the steps and evaluations.
    With `pretrained` each depth trains and is evaluated twice (from scratch, from ImageNet)."""
    inits = 2 if pretrained else 1
    sizes = _split_sizes(layout)
    to_decode = _Caches(layout)
    ablation = ablation_plan(profile, device, data_dir=layout.root)
    work = {
        "01_data_exploration": Work(),
        "02_preprocessing_experiments": _ablation_work(ablation, sizes, to_decode),
        "03_resnet_definitions": Work(),
    }
    final = Work()
    for config in ablation.configs.values():  # notebook 05 maps the ablation's runs too
        final.add(config.model, images=MAP_FORWARDS * planned_ablation_maps(sizes["valid"]))
    for model in models:
        config = make_config(profile, model=model, device=device, data=str(layout.root))
        steps, images = _training(config, sizes, processes)
        work[f"04_train_{model}"] = Work(
            {model: inits * steps}, {model: inits * images}, to_decode(config)
        )
        views = evaluation_views(config.tta, bool(sizes["test_labelled"]))
        imagenet = _images(views, sizes) if pretrained else 0  # evaluated, not submitted
        maps = MAP_FORWARDS * maps_per_depth(sizes)
        final.add(model, images=evaluated_views(config, sizes) + imagenet + maps)
    work["05_evaluation_and_report"] = final
    return work


def _ablation_work(plan: AblationPlan, sizes: Mapping[str, int], to_decode: _Caches) -> Work:
    """Notebook 02: each variant trained, its best checkpoint evaluated on valid in each of the
    plan's numbers of views."""
    work = Work()
    for config in plan.configs.values():
        steps, images = _training(config, sizes)
        work.add(config.model, steps, images + sum(plan.views) * sizes["valid"])
        work.decoded += to_decode(config)
    return work


def evaluated_views(config: TrainConfig, sizes: Mapping[str, int]) -> int:
    """Images through a depth in notebook 05's evaluation and submission
    (`results.planned_predictions`): the report split in the config's TTA views, valid in one
    beside a labelled test split, the test split in the config's views."""
    return _images(planned_predictions(config.tta, bool(sizes["test_labelled"])), sizes)


def _images(views: Mapping[str, int], sizes: Mapping[str, int]) -> int:
    """Images through a model predicting each split in its number of views."""
    return sum(count * sizes[split] for split, count in views.items())


def maps_per_depth(sizes: Mapping[str, int]) -> int:
    """Grad-CAM maps a depth makes of the report split (test when labelled, else validation),
    of its right answers and its mistakes (`attention.planned_maps`)."""
    split = sizes["test_labelled"] or sizes["valid"]
    mistakes = math.ceil(MISTAKES * split)
    return planned_maps([split - mistakes, mistakes])


class _Caches:
    """Images still to decode for a config's cache: all of them the first time a missing cache
    is asked for, none after (the run builds each cache once)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.counted: set[str] = set()

    def __call__(self, config: TrainConfig) -> int:
        folder = cache_folder(
            self.layout, Pipeline.for_config(config.preprocess, config.image_size)
        )
        if folder.name in self.counted or (folder / "index.json").is_file():
            return 0
        self.counted.add(folder.name)
        return len(self.layout.table)


def fixed_seconds(output: str) -> float:
    source = output.removesuffix(".ipynb")
    source = "04_train" if source.startswith("04_train") else source
    return FIXED_SECONDS.get(source, 0.0)


@dataclass
class Estimate:
    """Seconds each notebook should take; rescaled as the finished ones show the real pace."""

    planned: dict[str, float]  # notebook output name (no .ipynb) -> seconds
    note: str = ""  # how the prices were obtained (precision, timed steps)
    prices: dict[str, Prices] = field(default_factory=dict)  # what the timed steps gave
    actual: dict[str, float] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)  # the fixed allowance in `planned`

    @property
    def total(self) -> float:
        return sum(self.planned.values())

    def kind(self, name: str) -> str:
        """'fixed' where most of a notebook's plan is its fixed allowance, else 'compute'."""
        return "fixed" if self.fixed.get(name, 0.0) >= 0.5 * self.planned[name] else "compute"

    def pace(self, kind: str = "compute") -> float:
        """Actual over planned time of the finished notebooks of `kind`, within [0.5, 2]. With
        none finished, compute keeps the timed prices (1) and fixed follows compute's pace."""
        names = [name for name in self.actual if self.kind(name) == kind]
        if not names:
            return self.pace("compute") if kind == "fixed" else 1.0
        planned = sum(self.planned[name] for name in names)
        actual = sum(self.actual[name] for name in names)
        return min(2.0, max(0.5, actual / max(planned, 1e-9)))

    def finished(self, name: str, seconds: float) -> None:
        self.actual[name] = seconds

    def left(self) -> float:
        rest = [name for name in self.planned if name not in self.actual]
        return sum(self.planned[name] * self.pace(self.kind(name)) for name in rest)

    def opening_line(self) -> str:
        parts = ", ".join(f"{name[:2]} {_minutes(s)}" for name, s in _grouped(self.planned))
        return f"workbook: estimated {_minutes(self.total)} of notebooks ({parts}; {self.note})"

    def progress_line(self) -> str:
        done = sum(self.actual.values())
        return (
            f"workbook: {_minutes(done)} done, about {_minutes(self.left())} left "
            f"(estimate now {_minutes(done + self.left())} in all)"
        )


def _grouped(planned: Mapping[str, float]) -> list[tuple[str, float]]:
    """Notebook 04's depths summed into one entry, in the order of the run."""
    out: dict[str, float] = {}
    for name, seconds in planned.items():
        key = name[:2]
        out[key] = out.get(key, 0.0) + seconds
    return list(out.items())


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{math.ceil(seconds)} s"


def estimate_run(
    layout: Layout,
    profile: str,
    models: Sequence[str],
    outputs: Sequence[str],
    device: str = "auto",
    processes: int = 1,
    price: Callable[[TrainConfig], Prices] = time_depth,
    cores: int | None = None,
    pretrained: bool = False,
) -> Estimate:
    """The estimate of the notebooks in `outputs` (their output names), pricing each depth the
    run trains with `price` (timed steps by default)."""
    work = count_work(layout, profile, models, device, processes, pretrained)
    depths = sorted({m for w in work.values() for m in (*w.steps, *w.images)})
    # priced at the working size the run will choose from these cells (`config.WORKING_SIZE`)
    data = str(layout.root)
    prices = {m: price(make_config(profile, model=m, device=device, data=data)) for m in depths}
    cores = cores or torch.get_num_threads()
    planned, fixed = {}, {}
    for output in outputs:
        name = output.removesuffix(".ipynb")
        fixed[name] = fixed_seconds(name)
        planned[name] = work[name].seconds(prices, fixed[name], cores)
    config = make_config(profile, device=device)
    execution = config.execution()
    precision = f"{execution['precision']} ({execution['bf16_reason']})"
    note = f"{TIMED_STEPS} timed steps per depth, {precision}"
    return Estimate(planned, note, prices, fixed=fixed)
