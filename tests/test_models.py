"""Proof that lab3's ResNets are the published architectures, using torchvision as the reference.

torchvision is only imported here (and in the benchmark); lab3 itself never imports it. Each
depth is checked for: identical module tree (types, kernel sizes, strides, paddings), identical
parameter count, torchvision's state_dict loading with strict=True both ways, identical outputs
in eval mode at 224x224, 450x450 and 200x320, and identical gradients in train mode.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

from lab3.errors import UserError
from lab3.models import (
    MODELS,
    BasicBlock,
    Bottleneck,
    ResNet,
    build_model,
    format_summary,
    resnet18,
    resnet50,
    summary,
)
from lab3.models.reference import realistic_batchnorm

ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
# Published multiply-accumulates per 224x224 image (torchvision's model cards, in GMACs).
PUBLISHED_GMACS = {"resnet18": 1.82, "resnet50": 4.11, "resnet152": 11.56}


def _reference(arch: str, **kwargs) -> nn.Module:
    return getattr(torchvision.models, arch)(weights=None, **kwargs)


def _make_realistic(model: nn.Module) -> None:
    """Non-trivial BatchNorms (see `realistic_batchnorm`), so the comparison discriminates and
    outputs stay O(1), where an absolute tolerance of 1e-5 means something."""
    realistic_batchnorm(model, seed=1)


@pytest.fixture(scope="module", params=ARCHS)
def pair(request) -> tuple[str, ResNet, nn.Module]:
    """(arch, ours, torchvision's) at 1000 classes with the same, non-trivial weights."""
    arch = request.param
    torch.manual_seed(0)
    ref = _reference(arch, num_classes=1000)
    _make_realistic(ref)
    ours = build_model(arch, num_classes=1000)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return arch, ours.eval(), ref.eval()


def _tree(model: nn.Module) -> list[tuple[str, str, str]]:
    return [(n, type(m).__name__, m.extra_repr()) for n, m in model.named_modules()]


def test_module_tree_matches(pair):
    """Same names, layer types, channels, kernels, strides and paddings, module by module."""
    _, ours, ref = pair
    assert _tree(ours) == _tree(ref)


@pytest.mark.parametrize("num_classes", [1000, 2])
@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_matches(arch, num_classes):
    ours = build_model(arch, num_classes=num_classes)
    ref = _reference(arch, num_classes=num_classes)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters())
    assert ours.fc.out_features == num_classes


def test_state_dict_loads_strictly_both_ways(pair):
    _, ours, ref = pair
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert all(ours_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    ours.load_state_dict(ref_sd, strict=True)
    ref.load_state_dict(ours_sd, strict=True)


@pytest.mark.parametrize("size", [(224, 224), (450, 450), (200, 320)], ids=str)
def test_eval_outputs_match(pair, size):
    arch, ours, ref = pair
    # One image at 450 px keeps the deep nets to a single forward each.
    batch = 1 if size == (450, 450) else 2
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert got.shape == (batch, 1000)
    assert torch.isfinite(want).all()
    assert (got - want).abs().max().item() <= 1e-5, arch


def test_train_mode_gradients_match(pair):
    _, ours, ref = pair
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([1, 7])
    grads = []
    for model in (ours, ref):
        model.train()
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        grads.append((loss.detach(), model.conv1.weight.grad, model.fc.weight.grad))
        model.zero_grad(set_to_none=True)
        model.eval()
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # Train mode updated both models' BatchNorm statistics the same way.
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_init_residual(arch):
    model = build_model(arch, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock | Bottleneck)]
    assert len(blocks) == sum(len(getattr(model, f"layer{i}")) for i in range(1, 5))
    for block in blocks:
        last = block.bn3 if isinstance(block, Bottleneck) else block.bn2
        assert last.weight.abs().sum() == 0
        assert torch.all(block.bn1.weight == 1)
    default = build_model(arch)
    assert all(torch.all(m.weight == 1) for m in default.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize(
    ("name", "fan_out", "fan_in"),
    [("conv1", 64 * 7 * 7, 3 * 7 * 7), ("layer3.0.conv3", 1024, 256)],
)
def test_kaiming_init_statistics(name: str, fan_out: int, fan_in: int):
    """Convolutions use He fan-out init: std = sqrt(2 / (out_channels * k * k)).

    The stem (3 -> 64, 7x7) and a bottleneck's expansion (256 -> 1024, 1x1) have fan-in and
    fan-out 4x or more apart, so fan-in init (std twice as large or more) fails here."""
    torch.manual_seed(0)
    conv = resnet50().get_submodule(name)
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.03)
    assert abs(conv.weight.std().item() - (2 / fan_in) ** 0.5) > 0.03 * (2 / fan_out) ** 0.5


def test_block_expansion_and_v15_stride():
    """Bottleneck carries the stride on its 3x3 conv ("v1.5"), not on the first 1x1."""
    assert BasicBlock.expansion == 1 and Bottleneck.expansion == 4
    first = resnet50().layer2[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    assert first.downsample[0].stride == (2, 2)


def test_grey_input_and_config_round_trip():
    model = resnet18(in_channels=1)
    assert model.conv1.in_channels == 1
    assert model.config() == {"name": "resnet18", "num_classes": 2, "in_channels": 1}
    rebuilt = build_model(**model.config())
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 2)
    assert (rebuilt.arch, rebuilt.num_classes, rebuilt.in_channels) == ("resnet18", 2, 1)


def test_build_model_names():
    assert list(MODELS) == ARCHS
    assert build_model("ResNet-18").arch == "resnet18"
    with pytest.raises(UserError) as err:
        build_model("resnet19")
    assert "resnet19" in str(err.value)
    assert all(name in str(err.value) for name in ARCHS)


def test_lab3_does_not_import_torchvision():
    code = "import sys, lab3.models; sys.exit('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("arch", sorted(PUBLISHED_GMACS))
def test_summary_matches_published_cost(arch):
    model = build_model(arch, num_classes=1000)
    model.train()
    df = summary(model, input_size=(3, 224, 224))
    assert model.training  # summary restores the mode
    assert list(df["stage"]) == ["stem", "layer1", "layer2", "layer3", "layer4", "head", "total"]
    total = df.set_index("stage").loc["total"]
    assert total["macs"] / 1e9 == pytest.approx(PUBLISHED_GMACS[arch], rel=0.02)
    assert total["params"] == sum(p.numel() for p in model.parameters())
    assert df["params"].iloc[:-1].sum() == total["params"]
    assert df["macs"].iloc[:-1].sum() == total["macs"]
    width = 512 * (1 if arch == "resnet18" else 4)
    assert df["output_shape"].iloc[4] == (width, 7, 7)
    assert df["output_shape"].iloc[0] == (64, 56, 56)
    # The hooks count torchvision's model the same way.
    ref = summary(_reference(arch, num_classes=1000))
    assert list(ref["macs"]) == list(df["macs"]) and list(ref["params"]) == list(df["params"])
    text = format_summary(df)
    assert arch in text and "layer4" in text and "total" in text


def test_summary_leaves_batchnorm_statistics_untouched():
    model = resnet18(in_channels=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert summary(model, input_size=(1, 96, 96))["output_shape"].iloc[4] == (512, 3, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("factory", [resnet18, resnet50], ids=["resnet18", "resnet50"])
def test_channels_last_and_bf16_autocast(factory):
    torch.manual_seed(0)
    model = factory().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (2, 2) and out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    grad = model.conv1.weight.grad
    assert grad is not None and grad.dtype == torch.float32 and torch.isfinite(grad).all()
    # channels_last alone changes only the memory layout, not the result.
    plain = factory()
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x.contiguous()), rtol=1e-4, atol=1e-4)
