"""Models and initial weights beyond the course's rules: torchvision's classifiers by name and
ImageNet (or any saved) weights as a starting point.

The course trains lab3's own ResNets from scratch, and that stays the default. This module is
what the opt-in comparisons need:

* ``torchvision:<name>`` builds any classifier of ``torchvision.models`` (``densenet121``,
  ``efficientnet_b0``, ``mobilenet_v3_small``, ...) with its head sized for the task.
* `initial_state` reads the weights a run starts from: ``imagenet`` (torchvision's weights enum,
  through torch's hub cache under ``$TORCH_HOME``, downloaded once where there is a network) or a
  path (a state dict or a lab3 checkpoint). It runs before a run folder exists, so a missing file
  leaves nothing behind.
* `load_initial_state` puts them into a model: every tensor strictly, except the classifier head,
  which is kept fresh where its shape differs (1000 ImageNet classes against the task's).

torchvision is imported only here, and only when one of these is asked for.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from lab3.errors import UserError
from lab3.models.resnet import MODELS
from lab3.models.resnet import build_model as build_resnet

PREFIX = "torchvision:"
INITS = ("scratch", "imagenet")  # or a path to a state dict / lab3 checkpoint
# ImageNet's per-channel statistics, which torchvision's pretrained weights expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision classifiers that return auxiliary outputs in training unless told otherwise
_AUX_LOGITS = ("googlenet", "inception_v3")


def torchvision_name(model: str) -> str | None:
    """``mobilenet_v3_small`` for ``torchvision:mobilenet_v3_small``; None for lab3's own."""
    return model[len(PREFIX) :] if model.startswith(PREFIX) else None


def torchvision_classifiers() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_model_name(model: str) -> None:
    """A model name a config may hold: lab3's ResNets, or a torchvision classifier."""
    name = torchvision_name(model)
    if name is None:
        if model not in MODELS:
            raise UserError(
                f"unknown model {model!r}; choose one of {', '.join(MODELS)} or "
                f"{PREFIX}<name> (any classifier in torchvision.models.list_models())"
            )
        return
    known = torchvision_classifiers()
    if name not in known:
        import torchvision

        kind = "not an image classifier" if name in torchvision.models.list_models() else "unknown"
        raise UserError(
            f"{model!r}: {kind} in torchvision {torchvision.__version__}; "
            f"classifiers: {', '.join(known[:8])}, ... ({len(known)} in all)"
        )


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """lab3's ResNet by name, or ``torchvision:<name>``; both carry ``arch``, ``num_classes`` and
    ``in_channels`` so a checkpoint rebuilds them."""
    if torchvision_name(name) is None:
        return build_resnet(name, **kwargs)
    return build_torchvision(name, **kwargs)


def build_torchvision(
    model: str,
    num_classes: int = 2,
    in_channels: int = 3,
    zero_init_residual: bool = False,
    imagenet_input: bool = False,
) -> nn.Module:
    """A torchvision classifier with `num_classes` outputs and random weights.

    ``imagenet_input``: googlenet and inception_v3 re-normalise their input when they carry
    ImageNet weights (``transform_input``), as torchvision's own builders set it.
    """
    import torchvision

    check_model_name(model)
    name = torchvision_name(model)
    assert name is not None
    if in_channels != 3:
        raise UserError(f"{model} takes colour images (3 channels); drop 'grey' from --preprocess")
    extra: dict[str, Any] = {}
    if name in _AUX_LOGITS:
        extra = {"aux_logits": False, "transform_input": imagenet_input, "init_weights": True}
    if name.startswith("resnet") or name.startswith("wide_resnet") or name.startswith("resnext"):
        extra["zero_init_residual"] = zero_init_residual
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)
    net.arch = model
    net.num_classes = num_classes
    net.in_channels = in_channels
    return net


def head_name(model: nn.Module) -> str:
    """The classifier head: the last module with parameters of their own (``fc``,
    ``classifier.3``, ``heads.head``, ...): the one whose shape follows the number of classes."""
    last = ""
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = name
    return last


# --- initial weights ------------------------------------------------------------------------
def weights_enum(model: str) -> Any:
    """torchvision's ImageNet weights of a model (its DEFAULT entry)."""
    import torchvision

    name = torchvision_name(model) or model
    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise UserError(f"torchvision has no pretrained weights for {model}") from None


def hub_file(weights: Any) -> Path:
    """Where torch's hub cache keeps (or will keep) a weights file: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def fetch_imagenet_weights(model: str, progress: bool = True) -> Path:
    """The cached ImageNet weights file of `model`, downloaded first where it is missing (one
    line naming the file and where to put it when that cannot be done)."""
    path = hub_file(weights_enum(model))
    if not path.is_file():
        imagenet_state(model, progress)
    return path


def imagenet_state(model: str, progress: bool = False) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of `model`, from the hub cache or downloaded into it once.

    Without the file and without a network this is one line naming the file and where to put it.
    """
    weights = weights_enum(model)
    path = hub_file(weights)
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # torch's own download: a temporary file renamed into place once complete
            torch.hub.download_url_to_file(weights.url, str(path), progress=progress)
        except OSError as err:  # URLError and socket errors: no network, blocked, timed out
            reason = getattr(err, "reason", err)
            raise UserError(
                f"ImageNet weights for {model} are not in torch's cache and cannot be downloaded "
                f"({reason}); put {path.name} (from {weights.url}) at {path}"
            ) from None
    state = read_state_dict(path)
    if (torchvision_name(model) or "").startswith("densenet"):
        state = _densenet_keys(state)
    return state


def _densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DenseNet's published files use old key names ('norm.1'); torchvision renames them to
    today's ('norm1') when it loads them, and so does this."""
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
    )
    renamed = {}
    for key, value in state.items():
        match = pattern.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def imagenet_file_check(model: str) -> dict[str, Any]:
    """Which file the ImageNet weights came from, and whether it is torchvision's published one:
    its name carries the first hex digits of the file's SHA-256 (as torch.hub checks them). A
    stand-in placed in the cache under that name (tests, an offline demo) reads as not matching."""
    path = hub_file(weights_enum(model))
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    published = path.stem.rsplit("-", 1)[-1]
    return {"file": path.name, "published": digest.hexdigest().startswith(published)}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights in a file: a plain state dict, or a lab3 checkpoint (its weight average when
    it kept one, as that is what its accuracy was measured on)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            "init weights not found; pass --init scratch, imagenet, or an existing state dict "
            "or checkpoint (a run's best.pt)",
            path,
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"not a readable state dict ({first[:120]})", path) from None
    if isinstance(state, dict) and "model" in state and "arch" in state:
        state = state["ema"] if state.get("ema") is not None else state["model"]
    for wrapper in ("state_dict", "model"):  # other trainers' checkpoint dicts
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError("not a state dict (a mapping of names to tensors) nor a checkpoint", path)
    return {_strip(k): v for k, v in state.items()}


def _strip(key: str) -> str:
    for prefix in ("_orig_mod.", "module."):  # torch.compile, DistributedDataParallel
        key = key.removeprefix(prefix)
    return key


def initial_state(model: str, init: str, progress: bool = False) -> dict[str, torch.Tensor] | None:
    """The weights a run starts from (None: from scratch); read before any run folder exists."""
    if init == "scratch":
        return None
    if init == "imagenet":
        return imagenet_state(model, progress)
    return read_state_dict(init)


def load_initial_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> str:
    """Load `state` into `model`: every tensor by name and shape, strictly, except the head,
    which keeps its fresh weights where its shape differs (another number of classes).

    Returns a short note of what was loaded; raises one line naming the first misfit.
    """
    own = model.state_dict()
    head = head_name(model)
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    # files saved before PyTorch 0.4.1 (torchvision's ResNet and DenseNet weights among them)
    # have no BatchNorm step counters; torch fills them in from the file's version metadata,
    # which a plain dict no longer carries, so they start at the model's own (0) here
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    arch = getattr(model, "arch", type(model).__name__)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise UserError(
            f"the weights do not fit {arch}: {len(missing)} tensors missing, {len(unexpected)} "
            f"unexpected (first: {first}); pass weights of the same architecture",
            source,
        )
    replaced = []
    for key, tensor in state.items():
        if tensor.shape == own[key].shape:
            continue
        if head and key.startswith(head + "."):
            replaced.append(key)
            continue
        raise UserError(
            f"the weights do not fit {arch}: {key} has shape {tuple(tensor.shape)} there, "
            f"{tuple(own[key].shape)} in the model; pass weights of the same architecture "
            "and preprocessing (colour or grey)",
            source,
        )
    keep = {k: (own[k] if k in replaced else v) for k, v in state.items()}
    model.load_state_dict(keep, strict=True)
    loaded = len(keep) - len(replaced)
    note = f"{loaded} of {len(keep)} tensors loaded from {source}"
    if replaced:
        note += f"; head {head} replaced for {getattr(model, 'num_classes', '?')} classes"
    return note
