"""Checkpoints: what they hold, written atomically, loaded with `weights_only=True`, checked
against the model.

`checkpoint_state` is the one definition of what a checkpoint holds and `restore_state` the one
place that reads it back into a training (last.pt, `--resume`); `evaluation_state` is what
best.pt keeps. A checkpoint is a dict of tensors and plain Python values only, so it loads
without unpickling arbitrary objects; `model_from_state` rebuilds the model from one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lab3.errors import UserError
from lab3.fileio import atomic_path
from lab3.models import build_model, torchvision_name

if TYPE_CHECKING:
    from lab3.engine.loop import Trainer


def checkpoint_state(trainer: Trainer, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything `--resume` needs, as tensors and plain values (loads with weights_only)."""
    data = trainer.data
    return {
        "model": trainer.model.state_dict(),
        # the weight average, when the run keeps one: what the run's accuracy is measured on
        "ema": trainer.ema.model.state_dict() if trainer.ema is not None else None,
        "optimizer": trainer.optimizer.state_dict(),
        "lr_scheduler": trainer.schedule.state_dict(),
        # fp16's loss scale and its growth counter, so a resumed run scales as an unbroken one
        "scaler": None if (scaler := trainer.train_step.scaler) is None else scaler.state_dict(),
        "epoch": int(history[-1]["epoch"]),
        "config": trainer.config.to_dict(),
        "history": history,
        "rng": {"torch": torch.get_rng_state()},
        "arch": trainer.config.model,
        "num_classes": data.layout.num_classes,
        "in_channels": data.pipeline.channels,
        "class_names": list(data.layout.class_names),
        "world_size": trainer.group.world_size,
        # where the initial weights stood before training, and which file they came from
        "init_valid_acc": trainer.init_valid_acc,
        "init_weights": trainer.init_weights,
    }


def evaluation_state(state: dict[str, Any]) -> dict[str, Any]:
    """best.pt: the weights and what rebuilds the model, without the optimizer's moments."""
    return {key: value for key, value in state.items() if key != "optimizer"}


def restore_state(
    trainer: Trainer, state: dict[str, Any], path: Path
) -> tuple[list[dict[str, Any]], int]:
    """Weights, optimizer, EMA, schedule position, loss scale and RNG from a checkpoint into
    `trainer`; returns the history so far and the epoch to continue with."""
    load_weights(trainer.model, state, path)
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.ema is not None and state.get("ema") is not None:
        trainer.ema.model.load_state_dict(state["ema"])
    trainer.schedule.step = int(state["lr_scheduler"]["step"])
    scaler = trainer.train_step.scaler
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    trainer.init_valid_acc = state.get("init_valid_acc")
    trainer.init_weights = state.get("init_weights")
    torch.set_rng_state(state["rng"]["torch"])
    return [dict(row) for row in state["history"]], int(state["epoch"]) + 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: a failed write leaves the previous file as it was. torch's
    writer reports a full disk as "unexpected pos ...", not ENOSPC: the state's size tells."""
    with atomic_path(path, needed=state_bytes(state)) as tmp:
        torch.save(state, tmp)


def state_bytes(value: Any) -> int:
    """The bytes of the tensors in a (nested) checkpoint state: about what torch.save writes."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        return sum(state_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_bytes(v) for v in value)
    return 0


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError("checkpoint not found; pass the best.pt or last.pt of a training run", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises many types, with long texts, for a damaged or foreign file
        raise not_a_checkpoint(path) from None
    if not isinstance(state, dict) or "model" not in state or "arch" not in state:
        raise not_a_checkpoint(path)
    return state


def not_a_checkpoint(path: Path) -> UserError:
    """Our own line for a file torch cannot read as a lab3 checkpoint (never torch's text)."""
    err = UserError(
        f"not a lab3 checkpoint: {path} (pass the best.pt or last.pt of a training run)"
    )
    err.path = path
    return err


def model_from_state(state: dict[str, Any], path: str | Path) -> nn.Module:
    """The model of a read checkpoint, in eval mode, on the CPU."""
    extra = {}
    if torchvision_name(state["arch"]):  # googlenet/inception_v3 re-normalise for ImageNet weights
        extra["imagenet_input"] = (state.get("config") or {}).get("init") == "imagenet"
    model = build_model(
        state["arch"], num_classes=state["num_classes"], in_channels=state["in_channels"], **extra
    )
    # Evaluate the weight average when the run kept one: that is what its accuracy was measured on.
    load_weights(model, state, path, key="ema" if state.get("ema") is not None else "model")
    return model.eval()


def load_weights(
    model: nn.Module, state: dict[str, Any], path: str | Path, key: str = "model"
) -> None:
    """Load weights, naming both architectures when they do not fit."""
    arch = getattr(model, "arch", type(model).__name__)
    classes = getattr(model, "num_classes", None)
    if state.get("arch") != arch or (classes is not None and state.get("num_classes") != classes):
        raise UserError(
            f"checkpoint holds {state.get('arch')} with {state.get('num_classes')} classes, "
            f"but the model is {arch} with {classes} classes; pick the matching checkpoint "
            "or --model",
            path,
        )
    weights = {k.removeprefix("_orig_mod."): v for k, v in state[key].items()}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise UserError(
            f"weights do not fit {arch} ({str(err).splitlines()[0][:120]})", path
        ) from None
