"""`lab3 bench`: lab3's data path and training step against torchvision's and the usual pipeline.

Comparisons (images/s; the ratio is ours / reference, above 1 means lab3 is faster):

* ``data_pipeline``: augmented, normalised batches on the device, no model: lab3's loader over
  its uint8 cache against the usual DataLoader that decodes and transforms every image.
* ``model_step/<model>``: training steps on batches already on the device, lab3's ResNet
  against torchvision's, both under lab3's settings for the device.
* ``epoch/<model>``: lab3's end-to-end training epoch against the same steps with the batches
  already on the device (compute only): how much of an epoch the input costs.
* ``usual_pipeline/<model>``: lab3's end-to-end epoch against the usual pipeline's.

Settings default to the `full` profile's (224 px, batch 128, its augmentation): the GPU recipe.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lab3.bench import provenance
from lab3.bench.machine import device_name
from lab3.bench.passes import EngineSide, loader_pass, stage, staged_pass, usual_pass
from lab3.bench.student_pipeline import (
    TutorialStep,
    UsualDataset,
    torchvision_resnet,
    usual_loader,
    usual_transform,
)
from lab3.bench.timing import Pass, Timing, interleave, synchronize
from lab3.config import COURSE_MODELS, TrainConfig, make_config, parse_models
from lab3.data.layouts import DEFAULT_DATA
from lab3.data.preprocess import Augment
from lab3.engine.data import PreparedData, prepare_data
from lab3.errors import UserError
from lab3.models import build_model

STAGED_BATCHES = 8  # distinct batches the compute-only side cycles through
NO_MODELS = "none"  # `--models none`: time the data pipeline only


@dataclass
class BenchSettings:
    """What to time and how often. The training settings are no part of it: they are the full
    profile's (`config`), and image_size, batch_size and augment left None keep its values;
    `lab3 bench`'s flags default to these fields' defaults."""

    data: str = DEFAULT_DATA
    device: str = "auto"  # auto | cpu | cuda
    # lab3's depths as a list or a comma string; NO_MODELS or none at all: data pipeline only
    models: tuple[str, ...] | str = COURSE_MODELS
    image_size: int | None = None  # None: the full profile's
    batch_size: int | None = None  # None: the full profile's
    augment: str | None = None  # lab3's augmentation; None: the full profile's
    images: int = 0  # training images per epoch; 0: the whole training split
    rounds: int = 3  # timed passes of each side, interleaved
    workers: int = 0  # the usual DataLoader's worker processes; 0: one per core
    profile_steps: int = 3  # steps of lab3's epoch recorded by torch.profiler; 0: none
    threads: int = 0  # torch's threads in this process (both sides); 0: torch's default

    def __post_init__(self) -> None:
        if isinstance(self.models, str) and self.models.strip().lower() == NO_MODELS:
            self.models = ()
        self.models = tuple(parse_models(self.models)) if self.models else ()
        if self.rounds < 1 or self.images < 0:
            raise UserError("--rounds must be at least 1 and --images at least 0")

    def config(self, model: str) -> TrainConfig:
        return make_config(
            "full",
            model=model,
            data=self.data,
            device=self.device,
            image_size=self.image_size,
            batch_size=self.batch_size,
            augment=self.augment,
            train_limit=self.images,
        )


def run_bench(
    settings: BenchSettings, command: str, report: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Measure every comparison; returns the results document (see `write_results`)."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    config = settings.config(settings.models[0] if settings.models else "resnet18")
    device = config.resolved_device()
    started = time.perf_counter()
    data = prepare_data(config, progress=False)
    cache_seconds = time.perf_counter() - started
    rows = data.rows("train")
    if len(rows) < config.batch_size:
        raise UserError(
            f"{len(rows)} training images are fewer than one batch of {config.batch_size}; "
            "lower --batch-size or raise --images",
            data.layout.root,
        )
    ours = data.loader("train", train=True)
    usual = _usual_data(data, rows, settings.workers)
    report(f"data_pipeline: {len(rows)} images, batch {config.batch_size}, on {device}")
    timings = interleave(
        {"lab3 loader": loader_pass(ours), "usual loader": usual_pass(usual, device)},
        settings.rounds,
        device,
        report=report,
    )
    results = [
        comparison("data_pipeline", timings["lab3 loader"], timings["usual loader"]),
    ]
    profiles = {}
    for model in settings.models:
        report(f"{model}: {len(ours)} steps an epoch")
        model_results, profiles[model] = _bench_model(
            dataclasses.replace(config, model=model), data, usual, settings, report
        )
        results += model_results
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "settings": {
            "data": settings.data,
            "device_type": device.type,
            "images_per_epoch": int(len(rows) // config.batch_size * config.batch_size),
            "image_size": config.image_size,
            "batch_size": config.batch_size,
            "augment": config.augment,
            "amp_bf16": config.precision() == "bf16",
            "precision": config.precision(),
            "channels_last": config.use_channels_last(),
            "compile": config.use_compile(),
            "cache_on_device": isinstance(data.images, torch.Tensor),
            "usual_workers": usual.num_workers,
            "threads": torch.get_num_threads(),
            "rounds": settings.rounds,
        },
        "setup_seconds": {"cache": round(cache_seconds, 2), "cache_rebuilt": data.cache.rebuilt},
        "results": results,
        "profile": profiles,
    }


def _usual_data(data: PreparedData, rows: np.ndarray, workers: int) -> DataLoader:
    """The usual DataLoader over the same training images, labels and normalisation."""
    config = data.config
    dataset = UsualDataset(
        data.layout.table["path"].to_numpy()[rows].tolist(),
        data.labels[rows].tolist(),
        usual_transform(
            config.image_size, data.cache.mean, data.cache.std, Augment.parse(config.augment)
        ),
    )
    return usual_loader(dataset, config.batch_size, data.device, workers)


def _bench_model(
    config: TrainConfig,
    data: PreparedData,
    usual: DataLoader,
    settings: BenchSettings,
    report: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    device = data.device
    loader = data.loader("train", train=True)
    torch.manual_seed(config.seed)
    num_classes = data.layout.num_classes
    ours_model = build_model(
        config.model, num_classes=num_classes, zero_init_residual=config.zero_init_residual
    )
    theirs_model = torchvision_resnet(config.model, num_classes)
    theirs_model.load_state_dict(ours_model.state_dict())  # same weights on both sides
    usual_model = torchvision_resnet(config.model, num_classes).to(device)
    usual_model.load_state_dict(ours_model.state_dict())
    ours = EngineSide(ours_model, config, device)
    theirs = EngineSide(theirs_model, config, device)
    staged = stage(loader, STAGED_BATCHES)
    passes: dict[str, Pass] = {
        "lab3 epoch": loader_pass(loader, ours),
        "compute only": staged_pass(staged, len(loader), ours),
        "torchvision step": staged_pass(staged, len(loader), theirs),
        "usual epoch": usual_pass(usual, device, TutorialStep(usual_model, config.lr, device)),
    }
    timings = interleave(passes, settings.rounds, device, report=report)
    name = config.model
    results = [
        comparison(f"model_step/{name}", timings["compute only"], timings["torchvision step"]),
        comparison(f"epoch/{name}", timings["lab3 epoch"], timings["compute only"]),
        comparison(f"usual_pipeline/{name}", timings["lab3 epoch"], timings["usual epoch"]),
    ]
    profile = top_ops(passes["lab3 epoch"], device, settings.profile_steps)
    del ours, theirs, staged, passes, usual_model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results, profile


def comparison(name: str, ours: Timing, reference: Timing) -> dict[str, Any]:
    """One result row; the ratio is computed from the rounded rates it reports."""
    ours_rate, reference_rate = round(ours.rate, 2), round(reference.rate, 2)
    return {
        "name": name,
        "ours": ours_rate,
        "reference": reference_rate,
        "ratio": round(ours_rate / reference_rate, 4),
        "ours_images": ours.images,
        "reference_images": reference.images,
        "ours_rounds": [round(r, 2) for r in ours.rates],
        "reference_rounds": [round(r, 2) for r in reference.rates],
        # the first two batches, untimed; includes torch.compile where it is on
        "warmup_seconds": {
            "ours": round(ours.warmup_seconds, 2),
            "reference": round(reference.warmup_seconds, 2),
        },
    }


def top_ops(run: Pass, device: torch.device, steps: int, count: int = 10) -> list[dict[str, Any]]:
    """Where `steps` batches of the pass spend their time: the ops with the most self time
    (on the GPU where there is one)."""
    if steps <= 0:
        return []
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as recorded:
        run(steps)
        synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in recorded.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events) or 1
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [
        {
            "op": e.key,
            "self_ms": round(getattr(e, key) / 1000, 3),
            "share": round(getattr(e, key) / total, 4),
            "calls": e.count,
        }
        for e in events[:count]
    ]


def format_table(document: dict[str, Any]) -> str:
    lines = [
        "| comparison | ours (img/s) | reference (img/s) | ours / reference |",
        "|---|---:|---:|---:|",
    ]
    for r in document["results"]:
        lines.append(f"| {r['name']} | {r['ours']:.1f} | {r['reference']:.1f} | {r['ratio']:.2f} |")
    return "\n".join(lines)


def write_results(document: dict[str, Any], out: Path) -> Path:
    """The JSON at `out` and a markdown twin beside it (same name, .md), both atomically, each
    opening with the provenance header (`lab3.bench.provenance`)."""
    _, markdown = provenance.write_results(
        Path(out), bench_provenance(document), document, "lab3 bench", _markdown(document)
    )
    return markdown


def bench_provenance(document: dict[str, Any]) -> dict[str, str]:
    """How the bench was made: its command, this machine, and lab3's execution settings (the
    usual pipeline's side always runs float32, NCHW and eager)."""
    settings = document["settings"]
    execution = {
        name: f"{settings[key]} (lab3's settings; the usual pipeline: False)"
        for name, key in (
            ("bf16", "amp_bf16"),
            ("compile", "compile"),
            ("channels_last", "channels_last"),
        )
    }
    header = provenance.provenance(document["command"], settings["device_type"], execution)
    header["date"] = document.get("date") or header["date"]  # when the bench ran
    return header


SIDES = """\
- data_pipeline: lab3's loader (uint8 cache, batched augmentation on the device) against the
  usual DataLoader (PIL decode + per-sample transforms in worker processes), no model.
- model_step: lab3's ResNet against torchvision's, same weights, same batches already on the
  device, same settings (lab3's for the device).
- epoch: lab3's end-to-end training epoch against the same steps on batches already on the device.
- usual_pipeline: lab3's end-to-end epoch against the usual pipeline's (torchvision ResNet,
  fp32, NCHW, default settings, the tutorial's loop).
"""


def _markdown(document: dict[str, Any]) -> str:
    """The body under the title and the provenance header."""
    settings = ", ".join(f"{k} {v}" for k, v in document["settings"].items())
    parts = [
        f"- command: `{document['command']}`",
        f"- device: {document['device']}; torch {document['torch']}; {document['date']}",
        f"- settings: {settings}",
        f"- cache: {document['setup_seconds']['cache']} s to open"
        + (" (built in this run)" if document["setup_seconds"]["cache_rebuilt"] else ""),
        "",
        "Medians of interleaved rounds; a ratio above 1 means lab3 is faster.",
        "",
        SIDES,
        format_table(document),
    ]
    for model, ops in document["profile"].items():
        if ops:
            parts += ["", f"## Where lab3's {model} epoch spends its time", ""]
            parts += ["| op | self ms | share | calls |", "|---|---:|---:|---:|"]
            parts += [
                f"| `{o['op']}` | {o['self_ms']:.1f} | {o['share']:.1%} | {o['calls']} |"
                for o in ops
            ]
    return "\n".join(parts) + "\n"
