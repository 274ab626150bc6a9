"""Every option has an effect: for each TrainConfig field, a test here (or the one named in
tests/README.md) fails when the option is ignored or its effect inverted.

The trainer is built as `fit` builds it (`prepare_data` + `_make_trainer`) on a small dataset
of known class counts, without training, so each option's effect is read off the objects it
configures: loss, loaders, model, optimizer, schedule.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import write_course_dataset

from lab3.config import TrainConfig, make_config
from lab3.data.preprocess import Augment, dihedral_views
from lab3.engine import data as engine_data
from lab3.engine.data import prepare_data
from lab3.engine.distributed import Distributed
from lab3.engine.evaluate import predict
from lab3.engine.loop import Trainer, _make_trainer

TRAIN, VALID, TEST = 64, 16, 16
BLASTS = 48  # of the 64 training images (blast_share 0.75): 16 normal cells


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("options") / "data"
    return write_course_dataset(
        root, train=TRAIN, valid=VALID, test=TEST, size=32, blast_share=0.75
    )


def _trainer(data_dir: Path, **settings: object) -> Trainer:
    base = {"image_size": 32, "device": "cpu", "workers": 1, "compile": "off", "amp": "off"}
    config = make_config("tiny", data=str(data_dir), **{"train_limit": 0, **base, **settings})
    data = prepare_data(config, progress=False)
    return _make_trainer(config, data, Distributed.single())


def _train_labels(trainer: Trainer) -> np.ndarray:
    return trainer.data.labels[trainer.data.rows("train")]


# ---------------------------------------------------------------------------------------------
# class_balance


def test_class_balance_weights_are_inverse_to_class_frequency_and_reach_the_loss(
    data_dir: Path,
) -> None:
    trainer = _trainer(data_dir, class_balance="weights")
    assert np.bincount(_train_labels(trainer)).tolist() == [TRAIN - BLASTS, BLASTS]
    weight = trainer.criterion.weight
    assert weight is not None
    # n / (classes * count): 64 / (2 * 16) = 2 for the rarer normal cells, 64 / 96 for blasts
    expected = torch.tensor([TRAIN / (2 * (TRAIN - BLASTS)), TRAIN / (2 * BLASTS)])
    torch.testing.assert_close(weight.cpu(), expected)
    assert weight[0] > weight[1], "the rarer class weighs more"
    # the loss the step uses is weighted with them (label smoothing included)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]])
    labels = torch.tensor([0, 1, 1])
    smoothing = trainer.config.label_smoothing
    manual = torch.nn.functional.cross_entropy(
        logits, labels, weight=expected, label_smoothing=smoothing
    )
    torch.testing.assert_close(trainer.criterion(logits, labels), manual)
    assert trainer.train_step.criterion is trainer.criterion

    for other in ("none", "sampler"):
        assert _trainer(data_dir, class_balance=other).criterion.weight is None, other


def test_class_balance_sampler_balances_batches_in_expectation(data_dir: Path) -> None:
    sampled = _trainer(data_dir, class_balance="sampler").train_loader
    plain = _trainer(data_dir, class_balance="none").train_loader
    assert sampled.balanced and not plain.balanced

    def blast_share(loader) -> float:
        seen = []
        for epoch in range(1, 31):
            loader.set_epoch(epoch)
            seen.append(loader.labels[torch.as_tensor(loader.epoch_order())].float().mean())
        return float(torch.stack(seen).mean())

    # 30 epochs of 64 draws: the mean share's standard error is about 0.008
    assert abs(blast_share(sampled) - 0.5) < 0.05
    assert abs(blast_share(plain) - BLASTS / TRAIN) < 1e-6, "a permutation keeps the 75 %"


# ---------------------------------------------------------------------------------------------
# tta


def test_tta_views_are_the_8_distinct_dihedral_transforms() -> None:
    image = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    views = dihedral_views(image, 8)
    assert len(views) == 8
    assert torch.equal(views[0], image), "identity first"
    flat = {tuple(v.flatten().tolist()) for v in views}
    assert len(flat) == 8, "8 distinct transforms"
    group = set()
    for quarter in range(4):
        for flip in (False, True):
            x = torch.flip(image, dims=(3,)) if flip else image
            group.add(tuple(torch.rot90(x, k=quarter, dims=(2, 3)).flatten().tolist()))
    assert flat == group, "exactly the dihedral group of the square"
    for count in range(1, 9):
        assert len(dihedral_views(image, count)) == count


@pytest.mark.parametrize("views", [1, 2, 8])
def test_tta_averages_the_probabilities_of_that_many_views(data_dir: Path, views: int) -> None:
    trainer = _trainer(data_dir, tta=views)
    model = trainer.eval_model.eval()
    loader = trainer.data.loader("valid")
    result = predict(model, loader, tta=trainer.config.tta)
    images = torch.cat([batch for batch, _, _ in loader])
    with torch.no_grad():
        manual = sum(torch.softmax(model(v), 1) for v in dihedral_views(images, views)) / views
    np.testing.assert_allclose(result.probs, manual.numpy(), rtol=1e-4, atol=1e-5)
    if views > 1:
        with torch.no_grad():
            single = torch.softmax(model(images), 1).numpy()
        assert not np.allclose(result.probs, single, atol=1e-6), "the views change the average"


# ---------------------------------------------------------------------------------------------
# precise_bn and augment


def test_precise_bn_statistics_come_from_training_images_unaugmented(data_dir: Path) -> None:
    trainer = _trainer(data_dir, precise_bn=24, augment="dihedral,affine,color")
    loader = trainer.statistics_loader
    assert loader is not None
    rows = loader.indices
    assert len(rows) == 24 and len(set(rows.tolist())) == 24
    assert set(rows.tolist()) <= set(trainer.data.rows("train").tolist()), "training images"
    assert loader.augment is None, "unaugmented, as evaluation sees them"
    assert trainer.train_loader.augment is not None
    assert _trainer(data_dir, precise_bn=0).statistics_loader is None
    everything = _trainer(data_dir, precise_bn=10_000).statistics_loader
    assert everything is not None and len(everything.indices) == TRAIN


def test_evaluation_loaders_never_augment(data_dir: Path) -> None:
    trainer = _trainer(data_dir, augment="dihedral,affine,color", precise_bn=8)
    assert trainer.train_loader.augment == Augment(dihedral=True, affine=True, color=True)
    for split in ("valid", "test"):
        assert trainer.data.loader(split).augment is None, split
        assert not trainer.data.loader(split).shuffle
    assert _trainer(data_dir, augment="dihedral").train_loader.augment == Augment(
        dihedral=True, affine=False, color=False
    )
    assert _trainer(data_dir, augment="none").train_loader.augment is None


# ---------------------------------------------------------------------------------------------
# ema


def test_ema_the_evaluated_weights_are_the_averaged_ones(data_dir: Path) -> None:
    trainer = _trainer(data_dir, ema=0.9)
    assert trainer.ema is not None and trainer.eval_model is trainer.ema.model
    assert trainer.ema.decay == 0.9
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    before = [p.clone() for p in trainer.ema.model.parameters()]
    trainer.ema.update(trainer.model, step=1000)  # decay min(0.9, 1001/1010) = 0.9
    for avg, old, cur in zip(
        trainer.ema.model.parameters(), before, trainer.model.parameters(), strict=True
    ):
        torch.testing.assert_close(avg, 0.9 * old + 0.1 * cur)
    plain = _trainer(data_dir, ema=0.0)
    assert plain.ema is None and plain.eval_model is plain.model


# ---------------------------------------------------------------------------------------------
# the optimisation settings


def test_optimizer_lr_weight_decay_and_label_smoothing_reach_the_step(data_dir: Path) -> None:
    sgd = _trainer(data_dir, optimizer="sgd", lr=0.123, weight_decay=3e-4, label_smoothing=0.2)
    assert isinstance(sgd.optimizer, torch.optim.SGD)
    assert sgd.optimizer.defaults["nesterov"] and sgd.optimizer.defaults["momentum"] == 0.9
    assert sgd.schedule.peak_lr == 0.123
    decays = [group["weight_decay"] for group in sgd.optimizer.param_groups]
    assert decays == [3e-4, 0.0], "no decay on BatchNorm weights and biases"
    assert sgd.criterion.label_smoothing == 0.2
    assert sgd.train_step.optimizer is sgd.optimizer
    adamw = _trainer(data_dir, optimizer="adamw", lr=0.004)
    assert isinstance(adamw.optimizer, torch.optim.AdamW)
    assert adamw.schedule.peak_lr == 0.004


def test_schedule_warmup_epochs_and_the_budget_set_the_schedule(data_dir: Path) -> None:
    trainer = _trainer(data_dir, schedule="cosine", warmup_epochs=2.0, epochs=3, batch_size=16)
    steps = TRAIN // 16
    assert len(trainer.train_loader) == steps
    assert trainer.schedule.kind == "cosine" and trainer.schedule.warmup == 2 * steps
    assert trainer.epochs == 3 and trainer.schedule.total == 3 * steps
    floor = _trainer(data_dir, epochs=1, min_steps=10, batch_size=16)
    assert floor.epochs == 3, "ceil(10 / 4) epochs give at least min_steps updates"
    assert _trainer(data_dir, schedule="onecycle").schedule.kind == "onecycle"


def test_batch_size_train_limit_and_seed_shape_the_epoch(data_dir: Path) -> None:
    trainer = _trainer(data_dir, batch_size=8, train_limit=40, seed=3)
    assert trainer.train_loader.batch_size == 8
    assert trainer.data.loader("valid").batch_size == 16, "evaluation batches are twice as big"
    assert len(trainer.data.rows("train")) == 40 and len(trainer.train_loader.indices) == 40
    same = _trainer(data_dir, batch_size=8, train_limit=40, seed=3)
    other = _trainer(data_dir, batch_size=8, train_limit=40, seed=4)
    assert np.array_equal(trainer.data.rows("train"), same.data.rows("train"))
    assert not np.array_equal(trainer.data.rows("train"), other.data.rows("train"))
    trainer.train_loader.set_epoch(1)
    other.train_loader.set_epoch(1)
    assert trainer.train_loader.seed == 3 and other.train_loader.seed == 4


def test_model_image_size_preprocess_and_zero_init_build_what_they_name(data_dir: Path) -> None:
    trainer = _trainer(data_dir, model="resnet50", image_size=40, preprocess="tightcrop,grey")
    assert trainer.model.arch == "resnet50"
    assert trainer.data.cache.images.shape[1:] == (40, 40, 1)
    assert [step.name for step in trainer.data.pipeline.steps] == ["tightcrop", "grey", "resize"]
    assert trainer.model.conv1.in_channels == 1

    def last_bn_weights(t: Trainer) -> list[torch.Tensor]:
        return [block.last_bn().weight for layer in (t.model.layer1, t.model.layer4)
                for block in layer]  # fmt: skip

    zero = _trainer(data_dir, zero_init_residual=True)
    assert all(bool((w == 0).all()) for w in last_bn_weights(zero))
    kept = _trainer(data_dir, zero_init_residual=False)
    assert all(bool((w == 1).all()) for w in last_bn_weights(kept))


def test_workers_reach_the_cache_builder(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    build = engine_data.load_or_build

    def spy(*args: object, **kwargs: object):
        seen.append(kwargs.get("workers"))
        return build(*args, **kwargs)

    monkeypatch.setattr(engine_data, "load_or_build", spy)
    config = make_config("tiny", data=str(data_dir), image_size=32, device="cpu", workers=3)
    prepare_data(config, progress=False)
    config = make_config("tiny", data=str(data_dir), image_size=32, device="cpu", workers=0)
    prepare_data(config, progress=False)
    assert seen == [3, None], "0 means all cores (the builder's default)"


# ---------------------------------------------------------------------------------------------
# execution: amp, channels_last, compile, device, sync_bn


def test_amp_switches_bf16_autocast(data_dir: Path) -> None:
    x = torch.randn(2, 3, 32, 32)
    on = _trainer(data_dir, amp="on")
    with on.config.autocast():
        assert on.model.conv1(x).dtype == torch.bfloat16
    off = _trainer(data_dir, amp="off")
    with off.config.autocast():
        assert off.model.conv1(x).dtype == torch.float32
    assert on.train_step.autocast is not None


@pytest.mark.parametrize("value", ["on", "off"])
def test_channels_last_sets_the_model_and_loader_layout(data_dir: Path, value: str) -> None:
    trainer = _trainer(data_dir, channels_last=value)
    weight = trainer.model.conv1.weight
    last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert last == (value == "on")
    assert trainer.train_loader.channels_last == (value == "on")
    images, _, _ = next(iter(trainer.data.loader("valid")))
    assert images.is_contiguous(memory_format=torch.channels_last) == (value == "on")


def test_compile_wraps_the_training_model_and_keeps_the_eager_one(data_dir: Path) -> None:
    compiled = _trainer(data_dir, compile="on")
    assert compiled.train_model is not compiled.model
    assert type(compiled.train_model).__name__ == "OptimizedModule"
    assert compiled.train_step.eager is compiled.model, "a failed compile falls back to it"
    eager = _trainer(data_dir, compile="off")
    assert eager.train_model is eager.model and eager.train_step.eager is None


def test_device_is_resolved_and_cuda_without_a_gpu_is_refused(data_dir: Path) -> None:
    from lab3.errors import UserError

    assert _trainer(data_dir, device="cpu").data.device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is visible"):
            make_config("tiny", device="cuda").resolved_device()


def test_execution_settings_are_recorded_in_the_saved_config(tmp_path: Path) -> None:
    config = make_config(
        "tiny", amp="on", channels_last="off", compile="on", sync_bn=True, world_size=4
    )
    config.save(tmp_path / "config.json")
    again = TrainConfig.read(tmp_path / "config.json")
    assert again == config
    for field in ("amp", "channels_last", "compile", "sync_bn", "world_size"):
        assert getattr(again, field) == getattr(config, field), field


# ---------------------------------------------------------------------------------------------
# the command line: every train flag reaches the TrainConfig


def test_every_train_flag_reaches_the_config(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `lab3 train` flag with a non-default value lands in the config `fit` receives."""
    from lab3 import cli
    from lab3.engine import loop

    captured: list[tuple[TrainConfig, bool]] = []

    class Done(Exception):
        pass

    def fake_fit(config: TrainConfig, resume: bool = False) -> None:
        captured.append((config, resume))
        raise Done

    monkeypatch.setattr(loop, "fit", fake_fit)
    values = {
        "model": "resnet50", "data": str(data_dir), "epochs": 7, "min_steps": 11,
        "batch_size": 12, "lr": 0.0123, "image_size": 40, "preprocess": "tightcrop,equalize",
        "augment": "affine", "optimizer": "sgd", "schedule": "cosine", "class_balance": "sampler",
        "ema": 0.5, "precise_bn": 9, "tta": 3, "train_limit": 13, "split_mode": "subject",
        "amp": "off", "compile": "off", "channels_last": "on", "seed": 5,
        "out": str(tmp_path / "run"), "device": "cpu", "init": "imagenet",
    }  # fmt: skip
    argv = ["train", "--profile", "full"]
    for name, value in values.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    with pytest.raises(Done):
        cli.main([*argv, "--resume", "--sync-bn"])
    config, resume = captured[-1]
    assert resume and config.sync_bn and config.profile == "full"
    for name, value in values.items():
        assert getattr(config, name) == value, name
    defaults = make_config("full", model="resnet50")
    assert defaults.lr != values["lr"] and defaults.batch_size != values["batch_size"]

    # every train flag (but the CLI's own) is a field, and is in the list above
    parser = cli.build_parser()
    train_parser = next(
        action.choices["train"]
        for action in parser._actions
        if getattr(action, "choices", None) and "train" in action.choices
    )
    flags = {
        re.sub("^--", "", option).replace("-", "_")
        for action in train_parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert flags - fields == {"config", "resume"}
    assert flags & fields == set(values) | {"profile", "sync_bn"}


def test_config_flag_starts_from_a_saved_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--config` takes every saved setting (its profile too); flags given on top win."""
    from lab3 import cli
    from lab3.engine import loop

    captured: list[TrainConfig] = []

    class Done(Exception):
        pass

    def fake_fit(config: TrainConfig, resume: bool = False) -> None:
        captured.append(config)
        raise Done

    monkeypatch.setattr(loop, "fit", fake_fit)
    saved = make_config("full", model="resnet50", data="somewhere", ema=0.25, tta=5, seed=7)
    saved.save(tmp_path / "config.json")
    with pytest.raises(Done):
        cli.main(["train", "--config", str(tmp_path / "config.json"), "--tta", "2"])
    config = captured[-1]
    assert config == dataclasses.replace(saved, tta=2)
