"""The time estimate `lab3 run` prints, and the machine-dependent choices a run records."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from lab3.config import NATIVE_BF16_ENV, TrainConfig, cpu_has_native_bf16, make_config
from lab3.data.layouts import load_layout
from lab3.engine.optim import WeightAverage
from lab3.engine.step import TrainStep, grad_scaler
from lab3.workbook import attention, estimate
from lab3.workbook import runner as workbook
from lab3.workbook.estimate import Estimate, Prices, Work, count_work, estimate_run
from lab3.workbook.results import ModelResults, training_setup

MODELS = ["resnet18", "resnet50"]
PRICES = {"resnet18": Prices(train_step=0.5, forward_image=0.01), "resnet50": Prices(2.0, 0.04)}


def stub_price(config: TrainConfig) -> Prices:
    return PRICES[config.model]


def outputs(data: Path, models: list[str]) -> list[str]:
    return [s.output for s in workbook.plan(data, Path("run"), "tiny", models)]


def test_work_is_counted_from_the_data_and_the_profile(small_synthetic: Path) -> None:
    """Catches an estimate that ignores the profile's epochs, step floor, train limit, precise
    BN or TTA views: each notebook's steps and evaluated images follow from them."""
    layout = load_layout(small_synthetic)
    work = count_work(layout, "quick", MODELS)
    n_train, n_valid, n_test = 48, 16, 12
    r18 = make_config("quick", model="resnet18")
    per_epoch = n_train // r18.batch_size
    epochs = r18.planned_epochs(per_epoch)
    assert epochs == math.ceil(r18.min_steps / per_epoch)  # the floor decides on 48 images
    train = work["04_train_resnet18"]
    assert train.steps == {"resnet18": epochs * per_epoch}
    per_evaluation = min(r18.precise_bn, n_train) + n_valid + n_test
    assert train.images == {"resnet18": epochs * per_evaluation}
    # the final evaluation (the labelled test split in TTA views, valid beside it in one), and
    # the Grad-CAM maps of the report split (the labelled test split: all 12 images, under the
    # cap) and of the ablation's three ResNet18 runs on valid
    maps = {m: estimate.MAP_FORWARDS * n_test for m in MODELS}
    maps["resnet18"] += estimate.MAP_FORWARDS * 3 * n_valid
    assert work["05_evaluation_and_report"].images == {
        m: n_valid + make_config("quick", model=m).tta * n_test + maps[m] for m in MODELS
    }
    ablation = work["02_preprocessing_experiments"]
    assert set(ablation.steps) == {"resnet18"} and ablation.steps["resnet18"] > 0
    assert not work["01_data_exploration"].steps and not work["03_resnet_definitions"].images


def test_the_estimate_times_the_engines_own_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches a timed step that is not the one `fit` takes: fp16 without its loss scaler, the
    loss without the config's label smoothing, no weight average where the config keeps one,
    or timed steps the scaler skipped for an overflow (they leave out the update)."""
    steps: list[TrainStep] = []
    real_step = TrainStep.__call__

    def recorded(step, images, labels):
        steps.append(step)
        return real_step(step, images, labels)

    monkeypatch.setattr(TrainStep, "__call__", recorded)
    averaged: list[int] = []
    monkeypatch.setattr(WeightAverage, "update", lambda self, model, step: averaged.append(step))
    scalers: list[torch.amp.GradScaler] = []

    def overflowing(config: TrainConfig) -> torch.amp.GradScaler | None:
        """The engine's scaler, started at a scale every gradient overflows at."""
        if grad_scaler(config) is None:
            return None
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**40))
        return scalers[-1]

    monkeypatch.setattr(estimate, "grad_scaler", overflowing)
    config = make_config(
        "tiny", amp="fp16", ema=0.9, label_smoothing=0.2, image_size=16, device="cpu"
    )
    prices = estimate.time_depth(config, steps=2)
    assert len(steps) == len(averaged) == 3  # one to warm up, two timed
    assert steps[0].scaler is scalers[0] and steps[0].criterion.label_smoothing == 0.2
    assert prices.train_step > 0 and prices.forward_image > 0
    # the warm-up step overflowed; the timed ones updated the weights, as most steps do
    assert steps[0].take_skipped() == 1


def test_the_maps_counted_are_capped_per_group() -> None:
    """Catches an estimate that counts a map for every image of a large split (notebook 05 maps
    at most `MAPS_PER_GROUP` right answers and as many mistakes of a depth, `ABLATION_MAPS`
    images of an ablation run), or maps the wrong split."""
    cap = attention.MAPS_PER_GROUP
    assert estimate.maps_per_depth({"valid": 300, "test_labelled": 5000}) == 2 * cap
    assert estimate.maps_per_depth({"valid": 300, "test_labelled": 0}) == cap + 30
    assert estimate.maps_per_depth({"valid": 16, "test_labelled": 12}) == 12
    # the ablation's runs are mapped on valid without their predictions: up to the cap in all
    assert attention.planned_ablation_maps(300) == attention.ABLATION_MAPS
    assert attention.planned_ablation_maps(16) == 16


def test_the_final_evaluation_counts_views_where_they_are_averaged() -> None:
    """Catches an estimate of notebook 05 that prices valid in TTA views beside a labelled test
    split (it is read in one view there), or in one view where valid is the ranked split."""
    config = make_config("quick", model="resnet50")  # 8 views
    labelled = {"valid": 300, "test": 200, "test_labelled": 200}
    assert estimate.evaluated_views(config, labelled) == 300 + 8 * 200
    unlabelled = {"valid": 300, "test": 200, "test_labelled": 0}
    assert estimate.evaluated_views(config, unlabelled) == 8 * 300 + 8 * 200


def test_estimate_arithmetic_with_stub_prices(small_synthetic: Path) -> None:
    layout = load_layout(small_synthetic)
    names = outputs(small_synthetic, MODELS)
    result = estimate_run(layout, "tiny", MODELS, names, price=stub_price, cores=2)
    work = count_work(layout, "tiny", MODELS)
    for name, seconds in result.planned.items():
        w = work[name]
        expected = estimate.fixed_seconds(name) + w.decoded * estimate.DECODE_SECONDS / 2
        compute = sum(n * PRICES[m].train_step for m, n in w.steps.items())
        compute += sum(n * PRICES[m].forward_image for m, n in w.images.items())
        loop = estimate.LOOP_OVERHEAD if w.steps else 1.0
        assert seconds == pytest.approx(expected + loop * compute)
    assert result.total == pytest.approx(sum(result.planned.values()))
    assert list(result.planned) == [n.removesuffix(".ipynb") for n in names]


def test_the_rest_is_rescaled_by_the_pace_of_the_finished_notebooks() -> None:
    e = Estimate({"01_a": 10.0, "02_b": 20.0, "04_train_x": 70.0})
    assert e.left() == 100.0
    e.finished("01_a", 15.0)  # 1.5x slower than planned
    assert e.pace() == pytest.approx(1.5)
    assert e.left() == pytest.approx(1.5 * 90.0)
    e.finished("02_b", 15.0)  # 30 s for 30 planned: on time again
    assert e.left() == pytest.approx(70.0)
    e.finished("04_train_x", 700.0)  # the pace is bounded
    assert e.pace() == 2.0 and e.left() == 0.0
    assert "04 1.2 min" in Estimate({"04_train_x": 30.0, "04_train_y": 40.0}).opening_line()


def test_pretrained_doubles_each_depths_training_and_final_evaluation(
    small_synthetic: Path,
) -> None:
    """Catches an estimate that ignores --pretrained: notebook 04 then trains each depth twice,
    and notebook 05 evaluates both inits (the Grad-CAM section maps and the submissions predict
    the scratch runs only)."""
    layout = load_layout(small_synthetic)
    alone = count_work(layout, "tiny", MODELS)
    both = count_work(layout, "tiny", MODELS, pretrained=True)
    for model in MODELS:
        train = f"04_train_{model}"
        assert both[train].steps[model] == 2 * alone[train].steps[model]
        assert both[train].images[model] == 2 * alone[train].images[model]
        tta = 16 + make_config("tiny", model=model).tta * 12  # valid in one view, test in TTA
        final = "05_evaluation_and_report"
        assert both[final].images[model] == alone[final].images[model] + tta
    assert both["02_preprocessing_experiments"].steps == alone["02_preprocessing_experiments"].steps
    # an unlabelled test split: the ImageNet runs rank valid in TTA views, but only the runs
    # from scratch predict test, for their submissions
    table = layout.table.copy()
    table.loc[table["split"] == "test", "label"] = -1
    unlabelled = dataclasses.replace(layout, table=table)
    alone = count_work(unlabelled, "tiny", MODELS)
    both = count_work(unlabelled, "tiny", MODELS, pretrained=True)
    for model in MODELS:
        tta = make_config("tiny", model=model).tta
        final = "05_evaluation_and_report"
        assert both[final].images[model] == alone[final].images[model] + tta * 16


def test_a_slow_fixed_notebook_does_not_rescale_the_timed_training() -> None:
    """Catches the exploration notebook's slow imports doubling the training's estimate: the
    notebooks that are mostly fixed allowance set the pace of their own kind only."""
    e = Estimate(
        {"01_a": 10.0, "03_c": 10.0, "04_train_x": 100.0},
        fixed={"01_a": 10.0, "03_c": 10.0, "04_train_x": 5.0},
    )
    assert [e.kind(n) for n in e.planned] == ["fixed", "fixed", "compute"]
    e.finished("01_a", 25.0)  # 2.5x its allowance: bounded to 2 for its kind
    assert e.pace("fixed") == 2.0 and e.pace("compute") == 1.0
    assert e.left() == pytest.approx(2.0 * 10.0 + 100.0)
    e.finished("04_train_x", 150.0)
    assert e.left() == pytest.approx(2.0 * 10.0)
    fresh = Estimate({"03_c": 10.0, "04_train_x": 100.0}, fixed={"03_c": 10.0})
    fresh.finished("04_train_x", 150.0)  # no fixed notebook finished: compute's pace serves
    assert fresh.left() == pytest.approx(1.5 * 10.0)


def test_work_seconds_divides_decoding_over_the_cores() -> None:
    w = Work(steps={"m": 10}, images={"m": 100}, decoded=1000)
    prices = {"m": Prices(1.0, 0.1)}
    assert w.seconds(prices, fixed=5.0, cores=2) == pytest.approx(
        5 + estimate.LOOP_OVERHEAD * (10 + 10) + 1000 * estimate.DECODE_SECONDS / 2
    )
    evaluation_only = Work(images={"m": 100})
    assert evaluation_only.seconds(prices, fixed=0.0, cores=1) == pytest.approx(10.0)


def test_run_prints_the_estimate_first_and_after_each_notebook(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a stubbed clock (each notebook 'takes' 30 s) and stub prices: the opening line
    comes before the first notebook starts, and a progress line after each one."""
    events: list[str] = []

    def fake_step(step, source, run, kernel, prefix, stream) -> float:
        events.append(f"notebook {step.output}")
        (run / "notebooks" / step.output).write_text("{}")
        return 30.0

    real = estimate.estimate_run

    def priced(*args, **kwargs) -> Estimate:
        result = real(*args, **kwargs, price=stub_price, cores=2)
        events.append("estimate")
        return result

    monkeypatch.setattr(workbook, "_execute_step", fake_step)
    monkeypatch.setattr(estimate, "estimate_run", priced)
    monkeypatch.setattr(workbook, "check_kernel", lambda kernel: None)
    stream = io.StringIO()
    run = workbook.run_workbook(
        small_synthetic, "tiny", MODELS, out=tmp_path / "run", stream=stream
    )
    lines = stream.getvalue().splitlines()
    opening = [i for i, line in enumerate(lines) if "estimated" in line]
    progress = [line for line in lines if " left (estimate now " in line]
    assert events[0] == "estimate" and len(opening) == 1
    assert len(progress) == len(events) - 1 == len(outputs(small_synthetic, MODELS))
    assert progress[0].startswith("workbook: 30 s done")
    assert progress[-1].startswith("workbook: 3.0 min done, about 0 s left")
    record = json.loads((run / "workbook.json").read_text())
    assert record["seconds"] == 180.0
    assert sum(record["estimates"][0]["seconds"].values()) == pytest.approx(
        float(opening_total(lines[opening[0]])), rel=0.05
    )


def opening_total(line: str) -> float:
    """Seconds of the total an opening line states ("estimated 3.2 min" or "estimated 40 s")."""
    value, unit = line.split("estimated ", 1)[1].split()[:2]
    return float(value) * (60 if unit == "min" else 1)


@pytest.mark.parametrize("native", [True, False])
def test_machine_choices_follow_the_probe_and_are_recorded(
    native: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches a config.json or report that says bf16 was on where the CPU lacks it (or off
    where it has it): the recorded choices follow a mocked capability probe."""
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    config = make_config("quick", device="cpu")
    config.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())["execution"]
    assert saved["bf16"] is native and saved["channels_last"] is True  # on the CPU always
    assert saved["compile"] is False and saved["device"] == "cpu"
    reason = "this CPU computes bf16 natively" if native else "no native support on this CPU"
    assert saved["bf16_reason"] == reason
    assert TrainConfig.load(tmp_path / "config.json") == config  # the record reads back
    result = ModelResults("resnet18", tmp_path, config, pd.DataFrame({"epoch": [1]}))
    table = training_setup({"resnet18": result})  # the report's setup table
    assert table.loc["precision"].item() == f"{'bf16' if native else 'float32'}, {reason}"
    assert table.loc["channels_last"].item() == "on"
    forced = make_config("quick", device="cpu", amp="off").execution()
    assert forced["bf16"] is False and forced["bf16_reason"] == "--amp off"


@pytest.mark.parametrize("value", ["0", "1"])
def test_the_probe_can_be_forced_to_emulate_the_other_cpu_class(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: value == "0")
    monkeypatch.setenv(NATIVE_BF16_ENV, value)
    assert cpu_has_native_bf16() is (value == "1")
    assert make_config("quick", device="cpu").use_amp() is (value == "1")


def test_each_depth_is_priced_at_the_working_size_chosen_from_its_cells(
    small_synthetic: Path,
) -> None:
    """Catches an estimate priced at the profile's size where the run trains at the size its
    data chose (the full profile trains a smear's 110 px lymphocytes at 112 px, not 224)."""
    layout = load_layout(small_synthetic)
    chosen = make_config("full", model="resnet18", data=str(small_synthetic)).image_size
    assert chosen != make_config("full", model="resnet18").image_size  # the data decides here
    priced: list[int] = []

    def price(config: TrainConfig) -> Prices:
        priced.append(config.image_size)
        return PRICES["resnet18"]

    names = [s.output for s in workbook.plan(small_synthetic, Path("run"), "full", ["resnet18"])]
    estimate_run(layout, "full", ["resnet18"], names, price=price, cores=2)
    assert priced == [chosen]
