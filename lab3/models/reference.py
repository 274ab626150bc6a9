"""What notebook 03 (ResNet definitions) computes: stage and cost tables of the depths, and the
live check that they load and reproduce a reference ResNet's weights and outputs.

The reference (torchvision's ResNet) is passed in by the caller; this module never imports
torchvision, so lab3 does not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from lab3.formatting import pretty_model_name
from lab3.models import ARCHITECTURES, BasicBlock, build_model, summary


def stage_table(models: Sequence[str], num_classes: int = 2) -> pd.DataFrame:
    """Block type and blocks per stage, straight from `ARCHITECTURES` (depth is data)."""
    rows = []
    for name in models:
        block, layers = ARCHITECTURES[name]
        convs = 2 if block is BasicBlock else 3
        model = build_model(name, num_classes=num_classes)
        rows.append(
            {
                "model": pretty_model_name(name),
                "block": block.__name__,
                "convs per block": convs,
                **{f"layer{i + 1}": n for i, n in enumerate(layers)},
                "weighted layers": 1 + convs * sum(layers) + 1,
                "output width": 512 * block.expansion,
                "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def stage_summary(name: str, image_size: int = 224, num_classes: int = 2) -> pd.DataFrame:
    """`lab3.models.summary` of one model, in readable units."""
    frame = summary(build_model(name, num_classes=num_classes), (3, image_size, image_size))
    return pd.DataFrame(
        {
            "output (C x H x W)": ["x".join(map(str, s)) for s in frame["output_shape"]],
            "params (M)": frame["params"] / 1e6,
            "GMACs": frame["macs"] / 1e9,
        },
        index=pd.Index(frame["stage"], name=f"{pretty_model_name(name)} @ {image_size} px"),
    )


def cost_table(models: Sequence[str], image_size: int, num_classes: int = 2) -> pd.DataFrame:
    """Parameters and multiply-accumulates per image at 224 px and at the working size."""
    rows = []
    for name in models:
        model = build_model(name, num_classes=num_classes)
        at_224 = summary(model, (3, 224, 224))
        at_work = summary(model, (3, image_size, image_size))
        shape = at_work.set_index("stage").loc["layer4", "output_shape"]
        rows.append(
            {
                "model": pretty_model_name(name),
                "params (M)": int(at_224["params"].iloc[-1]) / 1e6,
                "GMACs @ 224 px": int(at_224["macs"].iloc[-1]) / 1e9,
                f"GMACs @ {image_size} px": int(at_work["macs"].iloc[-1]) / 1e9,
                f"layer4 map @ {image_size} px": "x".join(map(str, shape)),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def realistic_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm affines and running statistics: with the default init every BN is
    the identity, so a swapped or missing one would go unnoticed in an output comparison."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.uniform_(0.2, 0.6, generator=generator)
            bn.bias.normal_(0.0, 0.1, generator=generator)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative: one batch gives its exact statistics
        model.train()
        model(torch.randn(4, 3, 64, 64, generator=generator))
        for bn in norms:
            bn.momentum = 0.1
    model.eval()


def compare_with_reference(
    ours: nn.Module,
    reference: nn.Module,
    input_sizes: Sequence[Sequence[int]] = ((3, 224, 224),),
    seed: int = 0,
    tolerance: float = 1e-4,
) -> pd.DataFrame:
    """Load the reference's weights into `ours` with strict=True and compare outputs.

    `reference` is any ResNet with torchvision's names (the notebook passes torchvision's own,
    which lab3 never imports). A strict load proves the same tensors in the same places; equal
    outputs prove they are wired the same way. One row per input size.
    """
    realistic_batchnorm(reference, seed)
    state = reference.state_dict()
    ours.load_state_dict(state, strict=True)  # raises, naming the keys, if anything differs
    ours.eval()
    reference.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    rows = []
    for size in input_sizes:
        x = torch.randn(2, *size, generator=generator)
        with torch.no_grad():
            a, b = ours(x), reference(x)
        diff = float((a - b).abs().max())
        rows.append(
            {
                "model": pretty_model_name(getattr(ours, "arch", type(ours).__name__)),
                "input": "x".join(map(str, size)),
                "tensors loaded": len(state),
                "params (ours)": sum(p.numel() for p in ours.parameters()),
                "params (reference)": sum(p.numel() for p in reference.parameters()),
                "max |output|": float(b.abs().max()),
                "max abs diff": diff,
                "equal": diff <= tolerance * max(1.0, float(b.abs().max())),
            }
        )
    return pd.DataFrame(rows)


def cost_text(costs: pd.DataFrame) -> str:
    """How much more the deepest model of a cost table costs than the smallest."""
    small, large = costs.index[0], costs.index[-1]
    if small == large:
        return f"{small} has {costs.loc[small, 'params (M)']:.2f} M parameters."
    params = costs.loc[large, "params (M)"] / costs.loc[small, "params (M)"]
    macs = costs.loc[large, "GMACs @ 224 px"] / costs.loc[small, "GMACs @ 224 px"]
    return (
        f"{large} has {params:.1f}x the parameters of {small} and needs {macs:.1f}x its "
        "multiply-accumulates per image."
    )


def equivalence_text(checks: pd.DataFrame) -> str:
    """The verdict of `compare_with_reference` rows, in one sentence."""
    names = ", ".join(dict.fromkeys(checks["model"]))
    tensors = ", ".join(str(t) for t in dict.fromkeys(checks["tensors loaded"]))
    worst = float(checks["max abs diff"].max())
    agree = "are identical" if worst == 0 else f"agree to within {worst:.1e}"
    same_params = bool((checks["params (ours)"] == checks["params (reference)"]).all())
    verdict = (
        "**the models are the published architectures**."
        if checks["equal"].all() and same_params
        else "**but they differ: see the table**."
    )
    return (
        f"torchvision's weights load into {names} with `strict=True` ({tensors} tensors, "
        f"{'the same' if same_params else 'different'} parameter counts) and the outputs "
        f"{agree} at every input size: {verdict}"
    )
