"""`TrainConfig`: the one carrier of settings.

CLI flags, papermill parameters and profiles all become a TrainConfig, saved as ``config.json``
beside each run. A profile is a named set of defaults; explicit settings override it.

How long a run trains follows the data (`TrainConfig.planned_epochs`). A profile gives each depth
`epochs`, the passes over the training set a large set needs, and `min_steps`, a floor in
optimizer steps. A run trains

    epochs_run = max(epochs, ceil(min_steps / steps_per_epoch))

epochs, so its budget in optimizer steps is max(epochs * steps_per_epoch, min_steps): it grows
with the dataset above the floor, and a small set still gets `min_steps` updates (150 images at
batch 32 are 4 steps an epoch; a fixed 5 epochs would be 20 steps, after which ResNet50 still
answers one class). Epochs stay the unit of the history and the curves.

The floor counts images seen, `min_steps` batches of one process's `batch_size`: with N
processes (torchrun) each step takes N batches, so the same floor is reached in 1/N of the steps
and a run trains the same epochs whatever N (the course data with the full profile: 40 / 40 / 35
epochs on one GPU or four). Counting each process's steps instead would train N times longer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lab3.data.formats import TEST_CSVS
from lab3.data.layouts import DEFAULT_DATA, DEFAULT_SPLIT_MODE, SPLIT_MODES, load_layout
from lab3.data.working_size import SizeRule, choose_size, median_cell_side
from lab3.errors import UserError
from lab3.models.resnet import MODEL_NAMES

DEFAULT_PROFILE = "quick"  # the CPU demo (`PROFILES`)
# The course's depths, one test CSV each: what the workbook trains and the bench times by default.
COURSE_MODELS = tuple(TEST_CSVS)
SWITCH_CHOICES = ("auto", "on", "off")
AMP_CHOICES = ("auto", "on", "bf16", "fp16", "off")
# The values each setting of a closed set may take: `make_config` refuses any other, and the
# command line offers these as its flags' choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adamw"),
    "schedule": ("onecycle", "cosine"),
    "class_balance": ("none", "weights", "sampler"),
    "split_mode": SPLIT_MODES,
    "device": ("auto", "cpu", "cuda"),
    "amp": AMP_CHOICES,
    "channels_last": SWITCH_CHOICES,
    "compile": SWITCH_CHOICES,
}


@dataclass
class TrainConfig:
    # what to train, on what, and where the run folder goes
    model: str = "resnet18"  # resnet18 | resnet34 | resnet50 | resnet101 | resnet152
    # or torchvision:<name>, any classifier of torchvision.models (outside the course's rules)
    data: str = DEFAULT_DATA  # a dataset folder of any known layout
    out: str | None = None  # run folder; default outputs/runs/<model>-<timestamp>
    profile: str = DEFAULT_PROFILE  # the defaults this config started from (quick | full | tiny)
    # optimisation
    epochs: int = 6  # passes over a large training set; see the module docstring
    min_steps: int = 0  # floor in batches of batch_size seen (any number of processes)
    batch_size: int = 64
    lr: float = 0.05  # peak learning rate (reached after warm-up)
    optimizer: str = "sgd"  # sgd (Nesterov momentum 0.9) | adamw
    weight_decay: float = 5e-4  # not applied to BatchNorm weights and biases
    schedule: str = "onecycle"  # onecycle | cosine (linear warm-up, then cosine decay)
    warmup_epochs: float = 1.0  # for the cosine schedule
    label_smoothing: float = 0.1
    class_balance: str = "none"  # none | weights (loss weights) | sampler (balanced sampler)
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    # "precise BN": before each evaluation (and so before best.pt is saved), BatchNorm running
    # statistics are re-estimated over this many training images (train mode, no gradients,
    # cumulative average), so they match the weights evaluated; 0 = keep the running averages
    precise_bn: int = 0
    zero_init_residual: bool = True  # last BN of each block starts at 0: blocks start as identity
    # initial weights: scratch (the course's rule) | imagenet (torchvision's ImageNet weights, from
    # torch's hub cache under $TORCH_HOME) | a path to a state dict or a lab3 checkpoint. The
    # normalisation follows: ImageNet's mean/std for imagenet, the dataset's own otherwise.
    init: str = "scratch"
    # data
    image_size: int = 64  # working resolution (pixels a side)
    # why this working size: where a profile has a size rule (WORKING_SIZE) and the data folder
    # is given, the size is chosen from its cells (`lab3.data.working_size`) and this says how;
    # empty where the size was set explicitly or taken from the profile unmeasured
    image_size_reason: str = ""
    preprocess: str = "tightcrop"  # host steps before the cache, e.g. "tightcrop,equalize"
    augment: str = "dihedral,affine,color"  # device augmentation; "none" for none
    split_mode: str = DEFAULT_SPLIT_MODE  # for layouts without a split (C-NMC): SPLIT_MODES
    train_limit: int = 0  # use only this many training images (0 = all); for quick ablations
    tta: int = 1  # dihedral views averaged at evaluation (1 = none, 8 = all)
    # execution
    # mixed precision (`TrainConfig.precision`). auto: bf16 autocast where the hardware computes
    # bf16 natively (NVIDIA GPUs from compute capability 8.0, Ampere; CPUs with AVX512-BF16 or AMX,
    # where a step is about 1.5x faster, benchmarks/results/cpu_step.md); fp16 autocast with
    # gradient scaling on older GPUs (T4, P100, V100, GTX 10 / RTX 20), where bf16 is emulated or
    # fails; float32 on other CPUs, where emulated bf16 is slower. on: the device's low precision
    # even where it is emulated; bf16 / fp16 force one; off: float32.
    amp: str = "auto"  # auto | on | bf16 | fp16 | off
    # auto: on on the CPU, in either precision (a step takes 0.86-0.97x the time of the
    # contiguous layout in float32 for ResNet50/152, benchmarks/results/cpu_step_*.md), and on
    # CUDA where amp is
    channels_last: str = "auto"  # auto | on | off
    compile: str = "auto"  # auto (on for CUDA) | on | off
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    workers: int = 0  # processes decoding the cache; 0 = all cores
    # several processes (torchrun): batch_size and workers are per process; the global batch is
    # batch_size x world_size and lr scales with it (`lab3.engine.distributed.scaled_lr`)
    world_size: int = 1  # processes that trained together; set from torchrun's environment
    sync_bn: bool = False  # BatchNorm statistics over the global batch (CUDA only)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, path: str | Path) -> None:
        """The settings, and under "execution" what they resolved to on this machine."""
        from lab3.fileio import write_json_atomic

        write_json_atomic(path, {**self.to_dict(), "execution": self.execution()})

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def normalisation(self) -> str:
        """The inputs' normalisation, in words (it follows `init`; see `PreparedData`)."""
        if self.init == "imagenet":
            return "ImageNet's mean and std (what the pretrained weights expect)"
        return "the training split's own mean and std"

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """Epochs this run trains: `epochs`, or more where they give fewer than `min_steps`.

        `steps_per_epoch` counts batches of `batch_size` over the whole epoch, all processes'
        together (the floor counts images seen; see the module docstring).
        """
        floor = math.ceil(self.min_steps / max(steps_per_epoch, 1))
        return max(int(self.epochs), floor)

    @classmethod
    def read(cls, path: str | Path) -> TrainConfig:
        """A config file a user names: a missing or malformed one is one clear error."""
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise UserError(
                f"cannot read a config ({type(err).__name__}); pass a run's config.json", path
            ) from None
        if not isinstance(values, dict) or "model" not in values:
            raise UserError("not a lab3 config.json (no model in it); pass a run's one", path)
        return cls.from_dict(values)

    # resolved execution settings -------------------------------------------------------------
    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
        return torch.device(self.device)

    def _switch(self, value: str, name: str, auto: bool) -> bool:
        check_choice(name, value)
        if value == "auto":
            return auto
        return value == "on"

    def precision(self) -> str:
        """The training precision on the resolved device: "bf16", "fp16" or "float32"."""
        return self._precision_and_reason()[0]

    def _precision_and_reason(self) -> tuple[str, str]:
        check_choice("amp", self.amp)
        if self.amp in ("bf16", "fp16"):
            return self.amp, f"--amp {self.amp}"
        if self.amp == "off":
            return "float32", "--amp off"
        device = self.resolved_device()
        if device.type == "cuda":
            return _cuda_precision(device, emulated_ok=self.amp == "on")
        if self.amp == "on":
            return "bf16", "--amp on"
        if (forced := native_bf16_override()) is not None:
            return ("bf16" if forced == "1" else "float32"), (
                f"{NATIVE_BF16_ENV}={forced} overrides the CPU probe"
            )
        if cpu_has_native_bf16():
            return "bf16", "this CPU computes bf16 natively"
        return "float32", "no native support on this CPU"

    def use_amp(self) -> bool:
        """Whether training runs under autocast (bf16 or fp16), not in float32."""
        return self.precision() != "float32"

    def uses_loss_scaling(self) -> bool:
        """fp16 needs its loss scaled (`torch.amp.GradScaler`): small gradients underflow in
        float16's narrow range; bf16 has float32's range and needs none."""
        return self.precision() == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast in the run's precision where amp is on, else a no-op."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision())
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.resolved_device().type, dtype=dtype)

    def use_channels_last(self) -> bool:
        auto = self.resolved_device().type == "cpu" or self.use_amp()
        return self._switch(self.channels_last, "channels_last", auto)

    def use_compile(self) -> bool:
        # auto: on a GPU only; on the CPU a compiled step is no faster than an eager one
        # (benchmarks/results/cpu_step_compile_amd.md), so the compile time is never earned back
        return self._switch(self.compile, "compile", self.resolved_device().type == "cuda")

    def execution(self) -> dict[str, Any]:
        """The machine-dependent choices this config resolves to, and why this precision:
        saved beside the settings (config.json) and stated in the report."""
        precision, why = self._precision_and_reason()
        return {
            "device": self.resolved_device().type,
            "precision": precision,
            "bf16": precision == "bf16",
            "channels_last": self.use_channels_last(),
            "compile": self.use_compile(),
            "bf16_reason": why,
        }


# bf16 is native on NVIDIA GPUs from compute capability 8.0 (Ampere: A100, RTX 30); below it
# (T4 7.5, V100 7.0, P100 6.0, GTX 10 6.1) fp16 with gradient scaling is the standard.
NATIVE_BF16_CAPABILITY = (8, 0)


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device; tests stub this."""
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def _cuda_precision(device: torch.device, emulated_ok: bool) -> tuple[str, str]:
    major, minor = cuda_capability(device)
    where = f"CUDA compute capability {major}.{minor}"
    if (major, minor) >= NATIVE_BF16_CAPABILITY:
        return "bf16", f"{where} computes bf16 natively"
    if emulated_ok:
        return "bf16", f"--amp on (bf16 is emulated on {where})"
    return "fp16", f"{where} has no native bf16: fp16 with gradient scaling"


# Overrides the CPU probe below with 1 or 0: measure or test the other class of CPU on this one.
NATIVE_BF16_ENV = "LAB3_NATIVE_BF16"


def native_bf16_override() -> str | None:
    """The value of LAB3_NATIVE_BF16 where it overrides the CPU probe ("0" or "1"), else None."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    return forced if forced in ("0", "1") else None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX); without it bf16 autocast
    on the CPU is emulated and slower than float32."""
    forced = native_bf16_override()
    if forced is not None:
        return forced == "1"
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


# Profiles: defaults per purpose; a value may be a per-model table (deeper nets cost more).
PROFILES: dict[str, dict[str, Any]] = {
    # The CPU demo on the synthetic default: each depth trains in a few minutes on 2 cores.
    "quick": {
        # Tuned on the synthetic default (1200 training images, 2 cores): AdamW learns from
        # scratch in few steps where SGD sits at the majority class; the lossless dihedral views
        # are the only augmentation needed; 48 px keeps the deeper nets' epochs short (at 32 px
        # ResNet18 lost 3 points). The epochs are the fewest that keep every depth at its
        # 10 / 8 / 6-epoch accuracy on the default set (93.0 / 93.5 / 93.0 % at 6 / 5 / 4 epochs
        # against 94.5 / 93.5 / 93.5 %, one seed, 8-view TTA): they cut the float32 workbook's
        # training by 40 %. ResNet50 keeps a 6th epoch: at 5, in bf16, three seeds gave 91.0-
        # 93.0 % and normal-cell recall down to 78 %, at 6 93.5-94.0 % and 84-88 %
        # (recipe_cpu_resnet50_epochs.md). On a course-sized set ResNet18 gives up 1.6 points
        # (95.1 % against 96.7 %), ResNet50 0.8 (95.7 % against 96.5 %). Times and accuracies:
        # benchmarks/results/recipe_cpu_*.md, workbook_cpu_*.md.
        "epochs": {"resnet18": 6, "resnet34": 5, "resnet50": 6, "resnet101": 4, "resnet152": 4},
        # a small set trains at least this many steps (150 images: 4 steps an epoch); on the
        # default 1200 images (37 steps an epoch) the epochs above already give as many
        "min_steps": {
            "resnet18": 220,
            "resnet34": 180,
            "resnet50": 180,
            "resnet101": 140,
            "resnet152": 140,
        },
        "precise_bn": 256,
        "batch_size": 32,
        "optimizer": "adamw",
        "lr": 0.002,
        "weight_decay": 0.01,
        "image_size": 48,
        "preprocess": "tightcrop",
        "augment": "dihedral",
        "tta": 8,
    },
    # The GPU recipe for the real course data (one H100: minutes per depth).
    "full": {
        "epochs": {
            "resnet18": 40,
            "resnet34": 40,
            "resnet50": 40,
            "resnet101": 35,
            "resnet152": 35,
        },
        "min_steps": 1000,
        "precise_bn": 4096,
        "batch_size": 128,
        "lr": 0.2,
        "weight_decay": 5e-5,
        "image_size": 224,
        "preprocess": "tightcrop",
        "augment": "dihedral,affine,color",
        "ema": 0.999,
        "tta": 8,
    },
    # For tests: seconds per run.
    "tiny": {
        "epochs": 1,
        "batch_size": 16,
        "lr": 0.05,
        "image_size": 32,
        "train_limit": 64,
        "tta": 2,
        "workers": 1,
    },
}


# Profiles whose working size follows the data (`lab3.data.working_size`): the most native
# pixels one working pixel may average, and the sizes the profile's time budget allows. Quick:
# the recipe's 48 px averages about 5 of the synthetic default's and the course's 230-250 px
# cells, within 6, so it stays; 96 px costs 4x its time. Full: one working pixel per native
# pixel up to 224 (the course's cells at 224 as before; a smear's 110 px lymphocytes at 112).
WORKING_SIZE = {"quick": SizeRule(6.0, 48, 96), "full": SizeRule(1.0, 64, 224)}


def check_profile(profile: str) -> None:
    """One line naming `PROFILES` where `profile` is not one of them."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


def parse_models(models: str | Sequence[str]) -> list[str]:
    """lab3's depths from a comma string (the command line's, the notebooks' parameter) or a
    list: stripped, lower-cased, blanks dropped. None at all, an unknown depth or one listed
    twice is one line."""
    names = models.split(",") if isinstance(models, str) else list(models)
    names = [name.strip().lower() for name in names if name.strip()]
    if not names:
        raise UserError(f"no models given; pass e.g. {','.join(COURSE_MODELS)}")
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown:
        raise UserError(f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_NAMES)}")
    if len(set(names)) != len(names):
        raise UserError(f"a model is listed twice in {','.join(names)}; list each depth once")
    return names


def check_choice(name: str, value: str) -> None:
    """One line naming the allowed values where `value` is not among `CHOICES[name]`."""
    if value not in CHOICES[name]:
        raise UserError(f"{name} must be one of {', '.join(CHOICES[name])}, not {value!r}")


def make_config(profile: str = DEFAULT_PROFILE, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a profile, with explicit settings (not None) on top."""
    check_profile(profile)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise UserError(
            f"unknown setting {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}"
        )
    model = overrides.get("model", TrainConfig.model)
    if model not in MODEL_NAMES:
        from lab3.models import check_model_name

        check_model_name(model)  # a torchvision classifier, or one line naming the choices
    # a profile's value may be a per-model table (deeper nets cost more per step); models not
    # in it (torchvision's) get ResNet18's entry
    values = {
        k: (v.get(model, v["resnet18"]) if isinstance(v, dict) else v)
        for k, v in PROFILES[profile].items()
    }
    values.update(overrides)
    values["profile"] = profile
    if "image_size" not in overrides and "data" in overrides and profile in WORKING_SIZE:
        measured = _measured_size(
            str(values["data"]),
            values.get("split_mode", TrainConfig.split_mode),
            int(values.get("seed", TrainConfig.seed)),
            WORKING_SIZE[profile],
        )
        if measured is not None:
            values["image_size"], values["image_size_reason"] = measured
    config = TrainConfig(**values)
    _validate(config)
    return config


@functools.lru_cache(maxsize=8)
def _measured_size(data: str, split_mode: str, seed: int, rule: SizeRule) -> tuple[int, str] | None:
    """The working size of `data`'s cells under `rule` and why, measured once per process; None
    for a folder that cannot be read, which keeps the profile's size (the stage that reads the
    folder then says what is wrong with it), or where no cell was found."""
    if not Path(data).is_dir():
        return None
    try:
        layout = load_layout(data, split_mode=split_mode, seed=seed)
        if layout.name == "retinopathy":  # a fundus is no cell: its recipe keeps its own size
            return None
        side = median_cell_side(layout.table, seed=seed)
    except UserError:
        return None
    return None if side is None else choose_size(side, rule)


def _validate(config: TrainConfig) -> None:
    for name in CHOICES:
        check_choice(name, getattr(config, name))
    for name in ("epochs", "batch_size", "image_size", "tta"):
        if int(getattr(config, name)) < 1:
            raise UserError(f"{name} must be at least 1, not {getattr(config, name)}")
    for name in ("min_steps", "precise_bn"):
        if int(getattr(config, name)) < 0:
            raise UserError(f"{name} must be 0 or more, not {getattr(config, name)}")
    if not str(config.init).strip():
        raise UserError("init must be scratch, imagenet or the path of a state dict, not empty")
    if not 1 <= config.tta <= 8:
        raise UserError(f"tta must be between 1 and 8 dihedral views, not {config.tta}")
