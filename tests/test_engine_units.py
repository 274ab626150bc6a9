"""The engine's and the config's small functions against values worked out by hand: loss weights,
learning-rate factors, the best epoch, the weight average, budgets, profiles, validation and the
learning rate of several processes. Fast (no model, no data), so mutation runs map to them."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lab3.config import PROFILES, TrainConfig, make_config
from lab3.engine.distributed import scaled_lr
from lab3.engine.loop import class_weights
from lab3.engine.optim import Schedule, WeightAverage, lr_factor, make_optimizer
from lab3.engine.run_folder import best_of
from lab3.errors import UserError

# ---------------------------------------------------------------------------------------------
# class_weights


def _data(labels: list[int], num_classes: int = 2, train: list[int] | None = None):
    rows = np.arange(len(labels)) if train is None else np.array(train)
    other = np.setdiff1d(np.arange(len(labels)), rows)
    return SimpleNamespace(
        labels=np.array(labels),
        rows=lambda split: rows if split == "train" else other,
        layout=SimpleNamespace(num_classes=num_classes),
    )


def test_class_weights_are_n_over_classes_times_count() -> None:
    weights = class_weights(_data([0] * 2 + [1] * 6))
    torch.testing.assert_close(weights, torch.tensor([8 / (2 * 2), 8 / (2 * 6)]))
    # only the training rows count (valid and test labels do not)
    weights = class_weights(_data([0, 0, 1, 1, 1, 0, 0, 0], train=[0, 2, 3, 4]))
    torch.testing.assert_close(weights, torch.tensor([4 / 2, 4 / 6]))
    # balanced classes weigh 1 each; a class absent from training counts as one image
    torch.testing.assert_close(class_weights(_data([0, 1, 1, 0])), torch.tensor([1.0, 1.0]))
    weights = class_weights(_data([0, 0, 0, 1], num_classes=3))
    torch.testing.assert_close(weights, torch.tensor([5 / 9, 5 / 3, 5 / 3]))
    assert weights.dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# lr_factor


def test_onecycle_factor_at_known_steps() -> None:
    total = 100  # peak at step 25
    assert lr_factor(0, total, 0, "onecycle") == pytest.approx(0.04)
    half_up = 0.04 + 0.96 * (1 - math.cos(math.pi * 12 / 25)) / 2
    assert lr_factor(12, total, 0, "onecycle") == pytest.approx(half_up)
    assert lr_factor(25, total, 0, "onecycle") == pytest.approx(1.0)
    down = 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * 25 / 75)) / 2
    assert lr_factor(50, total, 0, "onecycle") == pytest.approx(down)
    assert lr_factor(100, total, 0, "onecycle") == pytest.approx(1e-4)
    steps = [lr_factor(s, total, 0, "onecycle") for s in range(total + 1)]
    assert all(a < b for a, b in zip(steps[:25], steps[1:26], strict=True)), "rises to the peak"
    assert all(a > b for a, b in zip(steps[25:-1], steps[26:], strict=True)), "then falls"
    # a tiny run still has a peak of at least one step
    assert lr_factor(0, 2, 0, "onecycle") == pytest.approx(0.04)
    assert lr_factor(1, 2, 0, "onecycle") == pytest.approx(1.0)
    assert lr_factor(2, 2, 0, "onecycle") == pytest.approx(1e-4), "one decay step"


def test_cosine_factor_warms_up_linearly_then_decays() -> None:
    total, warmup = 110, 10
    assert [lr_factor(s, total, warmup, "cosine") for s in range(3)] == pytest.approx(
        [0.1, 0.2, 0.3]
    )
    assert lr_factor(9, total, warmup, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, total, warmup, "cosine") == pytest.approx(1.0)
    assert lr_factor(60, total, warmup, "cosine") == pytest.approx(0.5)
    assert lr_factor(110, total, warmup, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(500, total, warmup, "cosine") == pytest.approx(0.0, abs=1e-12), "clamped"
    assert lr_factor(0, 10, 0, "cosine") == pytest.approx(1.0), "no warm-up"
    assert lr_factor(5, 10, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(2, 2, 1, "cosine") == pytest.approx(0.0, abs=1e-12), "one decay step"


# ---------------------------------------------------------------------------------------------
# best_of


def test_best_of_is_the_first_epoch_of_the_highest_valid_accuracy() -> None:
    history = [
        {"epoch": 1, "valid_acc": 0.5},
        {"epoch": 2, "valid_acc": 0.8},
        {"epoch": 3, "valid_acc": 0.7},
        {"epoch": 4, "valid_acc": 0.8},
    ]
    assert best_of(history) == (2, 0.8)
    assert best_of([]) == (0, -1.0)
    assert best_of([{"epoch": 1, "valid_acc": 0.0}]) == (1, 0.0)
    epoch, accuracy = best_of([{"epoch": np.int64(3), "valid_acc": np.float32(0.5)}])
    assert type(epoch) is int and type(accuracy) is float


# ---------------------------------------------------------------------------------------------
# WeightAverage (the EMA)


def test_weight_average_lerps_floats_copies_counters_and_warms_up() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.99)
    assert average.model is not model and not average.model.training
    assert all(not p.requires_grad for p in average.model.parameters())
    assert all(p.requires_grad for p in model.parameters()), "the model itself still learns"
    start = {k: v.clone() for k, v in average.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model[1].num_batches_tracked += 5
    average.update(model, step=0)  # decay min(0.99, 1 / 10) = 0.1: short runs do not lag
    current = model.state_dict()
    for key, value in average.model.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, 0.1 * start[key] + 0.9 * current[key])
        else:
            assert torch.equal(value, current[key]), key
    before = {k: v.clone() for k, v in average.model.state_dict().items()}
    average.update(model, step=10_000)  # decay min(0.99, 10001 / 10010) = 0.99
    for key, value in average.model.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, 0.99 * before[key] + 0.01 * current[key])


def test_optimizer_decays_weights_but_not_batchnorm_and_follows_the_config() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(2, 3)
    )
    adamw = make_optimizer(model, make_config("quick", weight_decay=0.03, lr=0.004))
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["fused"] is True
    decay, no_decay = adamw.param_groups
    assert [p.shape for p in decay["params"]] == [(2, 1, 3, 3), (3, 2)], "conv, linear weights"
    assert decay["weight_decay"] == 0.03
    assert [p.shape for p in no_decay["params"]] == [(2,), (2,), (2,), (3,)], "biases and BN"
    assert no_decay["weight_decay"] == 0.0
    assert decay["lr"] == no_decay["lr"] == 0.004
    sgd = make_optimizer(model, make_config("full", optimizer="sgd", lr=0.2))
    assert type(sgd) is torch.optim.SGD and sgd.defaults["lr"] == 0.2
    assert (sgd.defaults["momentum"], sgd.defaults["nesterov"], sgd.defaults["fused"]) == (
        0.9, True, True)  # fmt: skip


def test_schedule_sets_each_steps_rate_then_counts_it() -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=1.0)
    schedule = Schedule(peak_lr=0.5, total=8, warmup=2, kind="cosine")
    assert schedule.lr(3) == 0.5 * lr_factor(3, 8, 2, "cosine")
    schedule.advance(optimizer)
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25], "step 0: half the warm-up"
    schedule.advance(optimizer)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.5]
    assert schedule.state_dict() == {"step": 2, "total": 8, "kind": "cosine"}
    onecycle = Schedule(peak_lr=0.5, total=8, warmup=0, kind="onecycle")
    assert onecycle.lr(1) == 0.5 * lr_factor(1, 8, 0, "onecycle") != 0.5 * lr_factor(1, 8, 0, "")


# ---------------------------------------------------------------------------------------------
# config: budgets, profiles, validation


def test_planned_epochs() -> None:
    config = TrainConfig(epochs=3, min_steps=10)
    assert config.planned_epochs(4) == 3, "ceil(10 / 4) = 3"
    assert config.planned_epochs(3) == 4, "ceil(10 / 3) = 4"
    assert config.planned_epochs(100) == 3
    assert config.planned_epochs(0) == 10, "steps per epoch floored at 1"
    assert TrainConfig(epochs=2, min_steps=0).planned_epochs(1) == 2


def test_profile_values_and_per_model_tables() -> None:
    quick18 = make_config("quick", model="resnet18")
    assert quick18.epochs == PROFILES["quick"]["epochs"]["resnet18"] == 6
    assert quick18.min_steps == 220 and quick18.batch_size == 32 and quick18.tta == 8
    quick152 = make_config("quick", model="resnet152")
    assert (quick152.epochs, quick152.min_steps) == (4, 140)
    full = make_config("full", model="resnet50")
    assert (full.epochs, full.min_steps, full.ema, full.image_size) == (40, 1000, 0.999, 224)
    assert make_config() == make_config("quick"), "quick is the default profile"
    tiny = make_config("tiny")
    assert (tiny.epochs, tiny.batch_size, tiny.train_limit, tiny.profile) == (1, 16, 64, "tiny")
    # explicit settings win, None leaves the profile's
    assert make_config("quick", model="resnet18", epochs=None).epochs == 6
    assert make_config("quick", model="resnet18", epochs=3, lr=0.1).lr == 0.1
    assert make_config("full", model="resnet50").profile == "full"


def test_unknown_names_list_the_known_ones() -> None:
    from lab3.config import MODEL_NAMES

    with pytest.raises(UserError) as err:
        make_config("huge")
    assert str(err.value) == f"unknown profile 'huge'; choose one of {', '.join(PROFILES)}"
    with pytest.raises(UserError) as err:
        make_config("quick", model="resnet19")
    assert f"unknown model 'resnet19'; choose one of {', '.join(MODEL_NAMES)} or torchvision:" in (
        str(err.value)
    )
    with pytest.raises(UserError) as err:
        make_config("quick", colour=1)
    known = ", ".join(sorted(f.name for f in dataclasses.fields(TrainConfig)))
    assert str(err.value) == f"unknown setting 'colour'; known: {known}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "resnet19"}, "unknown model 'resnet19'"),
        ({"colour": 1}, "unknown setting 'colour'"),
        ({"schedule": "step"}, "schedule must be one of onecycle, cosine"),
        ({"class_balance": "oversample"}, "class_balance must be one of none, weights, sampler"),
        ({"split_mode": "patient"}, "split_mode must be one of random, stratified, subject"),
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
        ({"epochs": 0}, "epochs must be at least 1, not 0"),
        ({"batch_size": 0}, "batch_size must be at least 1, not 0"),
        ({"image_size": -1}, "image_size must be at least 1, not -1"),
        ({"tta": 0}, "tta must be at least 1, not 0"),
        ({"tta": 9}, "tta must be between 1 and 8 dihedral views, not 9"),
        ({"min_steps": -1}, "min_steps must be 0 or more, not -1"),
        ({"precise_bn": -2}, "precise_bn must be 0 or more, not -2"),
    ],
)
def test_bad_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        make_config("quick", **overrides)
    assert message in str(err.value)


def test_edge_settings_are_accepted() -> None:
    config = make_config("quick", epochs=1, batch_size=1, image_size=1, tta=8, min_steps=0,
                         precise_bn=0)  # fmt: skip
    assert (config.epochs, config.tta, config.min_steps) == (1, 8, 0)
    assert make_config("quick", tta=1).tta == 1


def test_config_round_trip_and_read(tmp_path) -> None:
    config = make_config("full", model="resnet50", seed=4)
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == config == TrainConfig.read(tmp_path / "c.json")
    values = {**config.to_dict(), "retired_setting": 1}
    assert TrainConfig.from_dict(values) == config, "unknown keys of older runs are dropped"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="cannot read a config"):
        TrainConfig.read(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"lr": 1}')
    with pytest.raises(UserError, match="not a lab3 config.json"):
        TrainConfig.read(tmp_path / "other.json")
    with pytest.raises(UserError, match="cannot read a config"):
        TrainConfig.read(tmp_path / "missing.json")
    assert set(config.to_dict()) == {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize(
    ("value", "auto", "expected"),
    [("on", False, True), ("bf16", False, True), ("off", True, False), ("auto", True, True),
     ("auto", False, False)],
)  # fmt: skip
def test_switches(value: str, auto: bool, expected: bool, monkeypatch) -> None:
    monkeypatch.setattr("lab3.config.cpu_has_native_bf16", lambda: auto)
    monkeypatch.delenv("LAB3_NATIVE_BF16", raising=False)
    config = TrainConfig(amp=value, device="cpu")
    assert config.use_amp() is expected
    # channels_last's auto is on for every CPU run, whatever the precision
    switch = "on" if value == "bf16" else value
    channels = TrainConfig(amp=value, channels_last=switch, device="cpu")
    assert channels.use_channels_last() is (True if value == "auto" else expected)
    with pytest.raises(
        UserError, match="amp must be one of auto, on, bf16, fp16, off, not 'maybe'"
    ):
        TrainConfig(amp="maybe", device="cpu").use_amp()


def test_scaled_lr() -> None:
    assert scaled_lr(0.1, 1, "sgd") == 0.1
    assert scaled_lr(0.1, 0, "sgd") == 0.1
    assert scaled_lr(0.1, 4, "sgd") == pytest.approx(0.4), "SGD: linear in the global batch"
    assert scaled_lr(0.1, 4, "adamw") == pytest.approx(0.2), "AdamW: by the square root"
    assert scaled_lr(0.1, 2, "adamw") == pytest.approx(0.1 * math.sqrt(2))


def test_config_read_errors_name_the_file_and_the_cause(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UserError) as err:
        TrainConfig.read(bad)
    assert (
        str(err.value) == f"{bad}: cannot read a config (JSONDecodeError); pass a run's config.json"
    )
    assert err.value.path == bad
    with pytest.raises(UserError) as err:
        TrainConfig.read(tmp_path / "none.json")
    assert "(FileNotFoundError)" in str(err.value) and err.value.path == tmp_path / "none.json"
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    with pytest.raises(UserError) as err:
        TrainConfig.read(other)
    assert str(err.value) == f"{other}: not a lab3 config.json (no model in it); pass a run's one"


@pytest.mark.parametrize("name", ["amp", "channels_last", "compile"])
def test_a_bad_switch_names_itself(name: str) -> None:
    config = TrainConfig(device="cpu", **{name: "maybe"})
    use = {"amp": config.use_amp, "channels_last": config.use_channels_last,
           "compile": config.use_compile}[name]  # fmt: skip
    with pytest.raises(UserError) as err:
        use()
    allowed = "auto, on, bf16, fp16, off" if name == "amp" else "auto, on, off"
    assert str(err.value) == f"{name} must be one of {allowed}, not 'maybe'"


@pytest.mark.parametrize("gpu", [True, False])
def test_resolved_device(gpu: bool, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert TrainConfig(device="auto").resolved_device() == torch.device("cuda" if gpu else "cpu")
    assert TrainConfig(device="cpu").resolved_device() == torch.device("cpu")
    assert TrainConfig(compile="auto", device="auto").use_compile() is gpu
    if gpu:
        assert TrainConfig(device="cuda").resolved_device() == torch.device("cuda")
    else:
        with pytest.raises(UserError) as err:
            TrainConfig(device="cuda").resolved_device()
        assert str(err.value) == (
            "--device cuda asked for, but no CUDA GPU is visible; use --device cpu"
        )


# ------------------------------------------------------------- the machine's choices, recorded


@pytest.mark.parametrize(
    ("forced", "avx512_bf16", "amx", "expected"),
    [
        ("1", False, False, True),  # LAB3_NATIVE_BF16 overrides the probes both ways
        (" 0 ", True, True, False),
        ("", True, False, True),  # unset: either probe is enough
        ("", False, True, True),
        ("", False, False, False),
        ("yes", False, False, False),  # not 0 or 1: the probes decide
    ],
)
def test_native_bf16_follows_the_override_then_either_probe(
    forced: str, avx512_bf16: bool, amx: bool, expected: bool, monkeypatch
) -> None:
    """Catches an override read wrongly, or one probe ignored."""
    from lab3.config import NATIVE_BF16_ENV, cpu_has_native_bf16

    monkeypatch.setenv(NATIVE_BF16_ENV, forced)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert cpu_has_native_bf16() is expected


def test_native_bf16_is_off_with_a_torch_that_has_no_probes(monkeypatch) -> None:
    """Catches a missing probe (an older torch) read as native bf16, or as an error."""
    from lab3.config import NATIVE_BF16_ENV, cpu_has_native_bf16

    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, probe, raising=False)
    assert cpu_has_native_bf16() is False


@pytest.mark.parametrize(
    ("device", "amp", "native", "expected"),
    [
        ("cpu", "auto", False, ("cpu", False, True, False, "no native support on this CPU")),
        ("cpu", "auto", True, ("cpu", True, True, False, "this CPU computes bf16 natively")),
        ("cpu", "off", True, ("cpu", False, True, False, "--amp off")),
        ("cpu", "bf16", False, ("cpu", True, True, False, "--amp bf16")),
        (
            "cuda",
            "auto",
            False,
            ("cuda", True, True, True, "CUDA compute capability 8.0 computes bf16 natively"),
        ),
        ("cuda", "off", False, ("cuda", False, False, True, "--amp off")),
    ],
)
def test_execution_records_each_choice_and_why(
    device: str, amp: str, native: bool, expected: tuple, monkeypatch, tmp_path
) -> None:
    """Catches a recorded choice that does not follow the (mocked) machine: bf16 on a CPU
    without native support, a wrong reason, compile off on CUDA, channels_last off on the CPU;
    and a config.json that leaves the execution out."""
    import json

    from lab3.config import NATIVE_BF16_ENV

    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: device == "cuda")
    monkeypatch.setattr("lab3.config.cuda_capability", lambda device: (8, 0))
    config = make_config("quick", device=device, amp=amp)
    keys = ("device", "bf16", "channels_last", "compile", "bf16_reason")
    precision = "bf16" if expected[1] else "float32"
    assert config.execution() == {**dict(zip(keys, expected, strict=True)), "precision": precision}
    config.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["execution"] == config.execution()
    assert {k: v for k, v in saved.items() if k != "execution"} == config.to_dict()


@pytest.mark.parametrize("forced", ["0", "1"])
def test_execution_names_the_override_instead_of_the_cpu(forced: str, monkeypatch) -> None:
    """Catches a report that blames (or credits) the CPU for a choice LAB3_NATIVE_BF16 made:
    forcing float32 on a CPU with bf16 must not read "no native support on this CPU"."""
    from lab3.config import NATIVE_BF16_ENV

    monkeypatch.setenv(NATIVE_BF16_ENV, forced)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: forced == "0")
    execution = make_config("quick", device="cpu").execution()
    assert execution["bf16"] is (forced == "1")
    assert execution["bf16_reason"] == f"LAB3_NATIVE_BF16={forced} overrides the CPU probe"


def test_normalisation_follows_the_initial_weights() -> None:
    """Catches the report naming the wrong normalisation for ImageNet weights or from scratch."""
    imagenet = "ImageNet's mean and std (what the pretrained weights expect)"
    assert make_config(init="imagenet").normalisation() == imagenet
    assert make_config().normalisation() == "the training split's own mean and std"
    assert make_config(init="weights.pt").normalisation() == "the training split's own mean and std"


def test_an_empty_init_is_refused_and_other_nets_take_resnet18s_budget() -> None:
    """Catches a blank --init accepted, and a torchvision classifier left without the profile's
    per-depth values (it takes ResNet18's)."""
    with pytest.raises(UserError) as refused:
        make_config(init="  ")
    assert str(refused.value) == (
        "init must be scratch, imagenet or the path of a state dict, not empty"
    )
    other = make_config("quick", model="torchvision:efficientnet_b0")
    resnet18 = make_config("quick", model="resnet18")
    assert (other.epochs, other.min_steps) == (resnet18.epochs, resnet18.min_steps)


def test_autocast_is_bf16_on_the_resolved_device_where_amp_is_on(monkeypatch) -> None:
    """Catches autocast on when amp is off, or in another dtype or on another device."""
    import contextlib

    assert isinstance(make_config(amp="off", device="cpu").autocast(), contextlib.nullcontext)
    on = make_config(amp="bf16", device="cpu").autocast()
    assert isinstance(on, torch.autocast)
    assert (on.device, on.fast_dtype) == ("cpu", torch.bfloat16)
    # bf16 is the CPU's default autocast dtype but not CUDA's (float16, which would need loss
    # scaling): the config must name it, or a GPU run trains in float16
    calls = []
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: calls.append((args, kwargs)))
    make_config(amp="bf16", device="cpu").autocast()
    assert calls == [(("cpu",), {"dtype": torch.bfloat16})]
