"""Per-stage table of output shape, parameters and multiply-accumulates (MACs) of a ResNet.

MACs are counted by the project itself, with forward hooks on every Conv2d and Linear layer, so
the report's cost figures (1.82 / 4.11 / 11.56 GMACs at 224 px for ResNet-18/50/152) are measured
on the model actually trained, not quoted. BatchNorm, ReLU, pooling and additions are left out,
as in the published figures; they are well under 1 % of the total.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

__all__ = ["count_macs", "format_summary", "summary"]

_STAGE_ATTRS = {
    "stem": ("conv1", "bn1", "relu", "maxpool"),
    "layer1": ("layer1",),
    "layer2": ("layer2",),
    "layer3": ("layer3",),
    "layer4": ("layer4",),
    "head": ("avgpool", "fc"),
}


def _stages(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The model's stages; any module with torchvision's ResNet attribute names works too."""
    if hasattr(model, "stages"):
        return model.stages()
    return {name: [getattr(model, a) for a in attrs] for name, attrs in _STAGE_ATTRS.items()}


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one Conv2d/Linear call for one image: outputs x inputs feeding each output."""
    per_image = output[0].numel()  # output of the first image in the batch
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    return per_image * module.in_features  # nn.Linear


def count_macs(
    model: nn.Module, input_size: Sequence[int] = (3, 224, 224)
) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """Run one image through ``model`` and return per-stage MACs and output shapes.

    The model is run in eval mode without gradients (so BatchNorm statistics are untouched) and
    its training flag is restored afterwards.
    """
    stages = _stages(model)
    macs = dict.fromkeys(stages, 0)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def mac_hook(stage: str):
        def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            macs[stage] += _layer_macs(module, output)

        return hook

    def shape_hook(stage: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            shapes[stage] = tuple(output.shape[1:])

        return hook

    for stage, modules in stages.items():
        for top in modules:
            for m in top.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    handles.append(m.register_forward_hook(mac_hook(stage)))
        handles.append(modules[-1].register_forward_hook(shape_hook(stage)))

    param = next(model.parameters())
    x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs, shapes


def summary(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> pd.DataFrame:
    """One row per stage (stem, layer1..layer4, head) and a total row.

    Columns: ``stage``, ``output_shape`` (per image, C x H x W), ``params`` and ``macs`` (per
    image). ``df.attrs`` keeps the input size and model name; :func:`format_summary` prints it.
    """
    macs, shapes = count_macs(model, input_size)
    rows = []
    for stage, modules in _stages(model).items():
        params = sum(p.numel() for m in modules for p in m.parameters())
        rows.append(
            {"stage": stage, "output_shape": shapes[stage], "params": params, "macs": macs[stage]}
        )
    rows.append(
        {
            "stage": "total",
            "output_shape": shapes["head"],
            "params": sum(p.numel() for p in model.parameters()),
            "macs": sum(macs.values()),
        }
    )
    df = pd.DataFrame(rows)
    df.attrs["input_size"] = tuple(input_size)
    df.attrs["arch"] = getattr(model, "arch", type(model).__name__)
    return df


def format_summary(df: pd.DataFrame) -> str:
    """The summary as a fixed-width text table, parameters in millions and MACs in GMACs."""
    shown = pd.DataFrame(
        {
            "stage": df["stage"],
            "output": ["x".join(str(d) for d in s) for s in df["output_shape"]],
            "params (M)": [f"{p / 1e6:.3f}" for p in df["params"]],
            "GMACs": [f"{m / 1e9:.3f}" for m in df["macs"]],
        }
    )
    size = "x".join(str(d) for d in df.attrs.get("input_size", ()))
    title = f"{df.attrs.get('arch', 'model')} @ {size}" if size else str(df.attrs.get("arch", ""))
    return f"{title}\n{shown.to_string(index=False)}"
