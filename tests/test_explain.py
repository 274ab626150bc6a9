"""Grad-CAM (`lab3.engine.explain`), the attention numbers and their prose, and `lab3 explain`."""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from builders import assert_matches_golden, copy_cnmc_cells
from PIL import Image
from torch import nn

from lab3.cli import main
from lab3.engine.explain import choose_layer, foreground_share, grad_cam
from lab3.models import build_model
from lab3.workbook.attention import (
    COLUMNS,
    AttentionShares,
    attention_table,
    compare,
    style_summary,
    summarise,
)
from lab3.workbook.narrative import attention_text, map_resolution_text

# ------------------------------------------------------------------------- a known answer


class QuadrantNet(nn.Module):
    """Logits that depend only on one quadrant of the image: the input outside it is zeroed,
    and a 4x4-stride stem (aligned with the quadrant's edges) carries nothing across them.
    Class 0 reads channels 0-1 of `layer4`, class 1 channels 2-3, all positive."""

    def __init__(self, quadrant: tuple[int, int]):
        super().__init__()
        self.quadrant = quadrant
        self.stem = nn.Conv2d(3, 8, kernel_size=4, stride=4, bias=False)
        self.layer4 = nn.Sequential(nn.Conv2d(8, 4, kernel_size=1, bias=False), nn.ReLU())
        self.fc = nn.Linear(4, 2, bias=False)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.stem.weight.copy_(torch.rand(self.stem.weight.shape, generator=generator))
            self.layer4[0].weight.copy_(torch.rand((4, 8, 1, 1), generator=generator))
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))

    def mask(self, height: int, width: int) -> torch.Tensor:
        mask = torch.zeros(height, width)
        r, c = self.quadrant
        mask[r * height // 2 : (r + 1) * height // 2, c * width // 2 : (c + 1) * width // 2] = 1
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.mask(*x.shape[-2:])
        features = self.layer4(F.relu(self.stem(x)))
        return self.fc(features.mean(dim=(2, 3)))


@pytest.mark.parametrize("size", [(32, 32), (48, 48), (64, 64), (32, 64)])
@pytest.mark.parametrize("quadrant", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_the_map_of_a_quadrant_model_sits_in_its_quadrant(
    size: tuple[int, int], quadrant: tuple[int, int]
) -> None:
    """Catches maps transposed, flipped, taken from the wrong layer, spread over the image or
    upsampled to the wrong size: the evidence is in one quadrant, so must be the map's mass."""
    model = QuadrantNet(quadrant)
    images = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(1))
    mask = model.mask(*size).numpy()
    for target in (0, 1):
        cams = grad_cam(model, images, [target] * len(images))
        assert cams.maps.shape == (3, *size)
        share = foreground_share(cams.maps.numpy(), np.broadcast_to(mask, (3, *size)))
        assert (share > 0.9).all(), (target, share)


# ------------------------------------------------------------------------- against a reference


def reference_grad_cam(model: nn.Module, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Grad-CAM written out on lab3's ResNet stages, with autograd on layer4's output."""
    model.eval()
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    a = model.layer4(model.layer3(model.layer2(model.layer1(x)))).detach().requires_grad_(True)
    logits = model.fc(torch.flatten(model.avgpool(a), 1))
    score = logits[torch.arange(len(classes)), torch.tensor(classes)].sum()
    (grad,) = torch.autograd.grad(score, a)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _small_resnet(channels_last: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=2)
    with torch.no_grad():  # BN statistics and scales away from their defaults, as after training
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


@pytest.mark.parametrize("channels_last", [False, True])
def test_grad_cam_agrees_with_an_independent_computation(channels_last: bool) -> None:
    """Catches a wrong channel weighting (sum instead of mean, gradient of the softmax, of the
    wrong class), a missing ReLU, or maps that differ in channels_last layout."""
    model = _small_resnet(channels_last)
    images = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    for classes in ([0, 1, 1, 0], None):
        cams = grad_cam(model, images, classes)
        expected = reference_grad_cam(model, images, cams.classes.tolist())
        assert cams.grid == (3, 3)
        assert expected.abs().max() > 1e-3  # a map with something in it
        torch.testing.assert_close(cams.maps, expected, atol=1e-5, rtol=1e-5)
    assert cams.classes.tolist() == model(images).argmax(1).tolist()


def test_grad_cam_agrees_with_torchcam() -> None:
    """Catches a hand-written Grad-CAM that drifts from a maintained implementation."""
    methods = pytest.importorskip("torchcam.methods")
    model = _small_resnet().eval()
    images = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    classes = [1, 0, 1, 0]
    ours = grad_cam(model, images, classes)
    with methods.GradCAM(model, target_layer="layer4", input_shape=(3, 128, 128)) as extractor:
        (theirs,) = extractor(class_idx=classes, scores=model(images))
    theirs = F.interpolate(theirs[:, None], size=(128, 128), mode="bilinear", align_corners=False)
    for a, b in zip(ours.maps, theirs[:, 0], strict=True):
        correlation = np.corrcoef(a.flatten().numpy(), b.detach().flatten().numpy())[0, 1]
        assert correlation > 0.99


def test_grad_cam_leaves_the_model_and_the_images_as_they_were() -> None:
    """Catches BN statistics updated by the map's forward pass, a model left in eval mode (or
    every module set to one mode), gradients written into `.grad`, changed inputs, and the
    autograd mode of the caller changed."""
    model = _small_resnet()
    model.train()
    model.layer2.eval()  # a mix of modes must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)
    before = images.clone()
    grad_cam(model, images)
    with torch.no_grad():
        grad_cam(model, images)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert {name: m.training for name, m in model.named_modules()} == modes
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(images, before)


@pytest.mark.parametrize(
    ("size", "layer", "side"),
    [(224, "layer4", 7), (192, "layer4", 6), (128, "layer3", 8), (96, "layer3", 6),
     (48, "layer2", 6), (32, "layer2", 4)],
)  # fmt: skip
def test_the_stage_is_the_deepest_with_enough_cells(size: int, layer: str, side: int) -> None:
    """Catches a map too coarse to tell a centred cell from its frame (layer4 at 48 px is 2x2)
    and a stage side that is not the model's."""
    assert choose_layer(size) == layer
    cams = grad_cam(_small_resnet(), torch.randn(1, 3, size, size), layer=layer)
    assert cams.grid == (side, side)


def test_a_missing_layer_is_named() -> None:
    with pytest.raises(ValueError, match="layer9"):
        grad_cam(_small_resnet(), torch.randn(1, 3, 32, 32), layer="layer9")


# ------------------------------------------------------------------------- numbers and prose


def _frame(rng: np.random.Generator, right: float, wrong: float, n_wrong: int) -> pd.DataFrame:
    """Constructed maps' numbers: 100 images, `n_wrong` of them wrong, with the given mean
    foreground shares (spread 0.05), the cell covering 60 % of each image."""
    correct = np.r_[np.ones(100 - n_wrong), np.zeros(n_wrong)]
    share = np.where(correct == 1, right, wrong) + rng.normal(0, 0.05, 100)
    return pd.DataFrame(
        {
            "row": np.arange(100),
            "label": 1,
            "predicted": np.where(correct == 1, 1, 0),
            "prob": 0.9,
            "correct": correct,
            "share": share,
            "area": 0.6,
        }
    )


def test_foreground_share_is_the_maps_mass_on_the_mask() -> None:
    maps = np.zeros((3, 4, 4))
    maps[0, :2] = 1  # all on the mask
    maps[1] = 1  # evenly spread: the mask's area
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[:, :2] = True
    share = foreground_share(maps, masks)
    assert share[0] == pytest.approx(1.0) and share[1] == pytest.approx(0.5)
    assert np.isnan(share[2])  # an empty map says nothing


def test_the_attention_sentence_follows_the_numbers() -> None:
    """Catches prose that calls a difference inside the noise a finding, misses a real one,
    or gives numbers that are not the table's."""
    rng = np.random.default_rng(0)
    frames = {
        "resnet18": {"test": _frame(rng, right=0.91, wrong=0.78, n_wrong=20)},
        "resnet50": {"test": _frame(rng, right=0.90, wrong=0.89, n_wrong=20)},
        "resnet152": {"test": _frame(rng, right=0.90, wrong=0.80, n_wrong=1)},
    }
    summary = summarise(frames)
    text = attention_text(summary, "test", layers={"resnet18": ("layer4", (7, 7))}, image_size=224)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[3] == "- The maps come from `layer4`, 7x7 cells at 224 px."
    r18, r50, r152, _ = lines
    row = summary["resnet18"]["test"]
    assert f"{100 * row.on_cell:.1f} %" in r18 and "60.0 %" in r18
    assert f"{100 * row.wrong:.1f} %" in r18 and "less at the cell" in r18
    assert "more than an evenly spread map" in r18 and "inside the noise" not in r18
    assert "inside the noise" in r50 and "less at the cell" not in r50
    assert "one mistake" in r152 and "too few to compare" in r152


def test_an_even_map_and_a_coarse_grid_are_called_what_they_are() -> None:
    frame = _frame(np.random.default_rng(1), right=0.6, wrong=0.6, n_wrong=0)
    frame["share"] = frame["area"]  # the maps of a 1x1 layer4 output: evenly spread
    summary = summarise({"resnet18": {"valid": frame}})
    assert compare(frame).mistakes == 0
    text = attention_text(summary, "valid", layers={"resnet18": ("layer4", (1, 1))}, image_size=32)
    assert "no more than an evenly spread map" in text and "no mistakes" in text
    assert "a single cell spreads every map evenly" in text
    coarse = attention_text(summary, "valid", layers={"resnet18": ("layer4", (2, 2))})
    assert "2x2 cells" in coarse and "only coarsely" in coarse
    finer = attention_text(summary, "valid", layers={"resnet18": ("layer2", (6, 6))}, image_size=48)
    assert "`layer2`, 6x6 cells at 48 px, rather than from the last stage, whose 2x2" in finer
    ablation = {"plain resize": compare(frame), "tight crop": compare(frame)}
    with_ablation = attention_text(summary, "valid", ablation)
    assert "with plain resize" in with_ablation and "with tight crop" in with_ablation


def test_a_sampled_split_is_weighed_by_its_groups() -> None:
    """90 right images on 80 % of the cell, 10 wrong ones on 40 %, of which only 9 right and
    all 10 wrong were mapped: the split's mean is the groups' means weighed 9:1 (76 %), not the
    sample's 60 %. Catches a mean that lets a sample rich in mistakes tilt the split's number."""
    rng = np.random.default_rng(2)
    frame = _frame(rng, right=0.8, wrong=0.4, n_wrong=10)
    unmapped = frame.index[:90][np.arange(90) % 10 != 0]  # 81 right answers without a map
    frame.loc[unmapped, ["share", "area"]] = np.nan
    row = compare(frame)
    assert (row.images, row.maps, row.mistakes) == (100, 19, 10)
    right = frame.loc[frame["correct"] == 1, "share"].mean()
    wrong = frame.loc[frame["correct"] == 0, "share"].mean()
    assert row.on_cell == pytest.approx(0.9 * right + 0.1 * wrong)
    assert row.on_cell == pytest.approx(0.76, abs=0.03)
    assert row.above_even == pytest.approx(row.on_cell - 0.6)
    assert row.right_minus_wrong == pytest.approx(right - wrong)
    assert row.cell_area == pytest.approx(0.6)
    summary = summarise({"resnet18": {"test": frame}})
    assert "from 19 maps per depth of the 100 test images" in attention_text(summary, "test")
    full = summarise({"resnet18": {"test": _frame(rng, right=0.8, wrong=0.4, n_wrong=10)}})
    assert "maps per depth" not in attention_text(full, "test")


def test_sampled_maps_are_those_of_the_same_images(explained_run: Path) -> None:
    """`per_group` maps at most that many right and wrong images, keeps every image's evaluated
    prediction, and a sampled image's share is the one it has when every image is mapped.
    Catches a sample that drops rows, mixes up which image a share belongs to, or maps more
    than it was allowed."""
    from lab3.engine.evaluate import LoadedCheckpoint
    from lab3.engine.explain import explain_split

    loaded = LoadedCheckpoint.open(explained_run / "runs" / "resnet18" / "best.pt", device="cpu")
    predictions = loaded.predict("test")
    full = explain_split(loaded, "test", predictions, "layer2")
    sampled = explain_split(loaded, "test", predictions, "layer2", per_group=3)
    assert full["share"].notna().all() and len(full) == len(predictions.rows)
    columns = ["row", "label", "predicted", "prob", "correct"]
    pd.testing.assert_frame_equal(sampled[columns], full[columns])
    mapped = sampled.dropna(subset=["share"])
    assert mapped.groupby("correct").size().max() <= 3 and len(mapped) >= 3
    expected = full.set_index("row").loc[mapped["row"], "share"].to_numpy()
    np.testing.assert_allclose(mapped["share"].to_numpy(), expected, atol=1e-5)
    one_view = explain_split(loaded, "valid", layer="layer2", per_group=5)
    assert len(one_view) == 5 and one_view["share"].notna().all()


def test_checkpoints_of_one_data_folder_parse_it_once(
    explained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ablation's runs share their data: `layouts` parses the folder for the first one and
    hands the same layout to the next; another split seed parses it again."""
    import lab3.engine.data as engine_data
    from lab3.engine.evaluate import LoadedCheckpoint

    parsed = []
    real = engine_data.load_layout
    monkeypatch.setattr(
        engine_data, "load_layout", lambda *a, **k: parsed.append(k) or real(*a, **k)
    )
    checkpoint = explained_run / "runs" / "resnet18" / "best.pt"
    layouts: dict = {}
    first = LoadedCheckpoint.open(checkpoint, device="cpu", layouts=layouts)
    second = LoadedCheckpoint.open(checkpoint, device="cpu", layouts=layouts)
    assert len(parsed) == 1 and second.data.layout is first.data.layout
    LoadedCheckpoint.open(checkpoint, device="cpu")  # without the dict: parsed as before
    assert len(parsed) == 2
    key = next(iter(layouts))
    layouts[(key[0], key[1], key[2] + 1)] = layouts.pop(key)  # only another seed's is known
    LoadedCheckpoint.open(checkpoint, device="cpu", layouts=layouts)
    assert len(parsed) == 3 and len(layouts) == 2


# ------------------------------------------------------------------------- lab3 explain


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def explained_run(learnable: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workbook-shaped run folder with one trained depth (tiny profile)."""
    from lab3.config import make_config
    from lab3.engine.loop import fit

    run = tmp_path_factory.mktemp("explain") / "run"
    config = make_config(
        "tiny", model="resnet18", data=str(learnable), out=str(run / "runs" / "resnet18"),
        device="cpu", epochs=2, compile="off",
    )  # fmt: skip
    fit(config, progress=False)
    return run


def test_explain_writes_the_panels_of_a_run(
    explained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches a panel not written where the run keeps its figures, or not a PNG."""
    assert main(["explain", "--run", str(explained_run), "--n", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    written = explained_run / "figures" / "attention_resnet18_test.png"
    assert f"figure: {written}" in out
    with Image.open(written) as image:
        assert image.format == "PNG" and image.width > 200


def test_explain_refuses_a_run_without_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches a traceback or a half-written figures folder for a run that has not trained."""
    (tmp_path / "runs" / "resnet18").mkdir(parents=True)
    (tmp_path / "runs" / "resnet18" / "history.csv").write_text("epoch\n")
    before = _snapshot(tmp_path)
    assert main(["explain", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab3 explain: error:") and "no checkpoint" in err and "\n" not in err
    assert _snapshot(tmp_path) == before and not (tmp_path / "figures").exists()
    assert main(["explain", "--run", str(tmp_path / "missing")]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


def test_explain_images_writes_only_the_named_png(
    explained_run: Path, learnable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches `--images` writing into the checkpoint's run folder, or not where it was told."""
    before = _snapshot(explained_run)
    checkpoint = explained_run / "runs" / "resnet18" / "best.pt"
    images = [str(learnable / "new_dataset" / "test" / f"{i}.bmp") for i in (0, 1)]
    out = tmp_path / "maps.png"
    args = ["explain", "--checkpoint", str(checkpoint), "--images", *images, "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    assert f"figure: {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG"
    assert _snapshot(explained_run) == before
    assert main(args) == 2  # no --out: one line, nothing written
    assert "--out" in capsys.readouterr().err
    assert main([*args[:-2], "--out", str(tmp_path / "missing.bmp")]) == 2
    assert main([*args, "--out", str(tmp_path / "x.png"), "--layer", "layer9"]) == 2
    assert "no layer 'layer9'" in capsys.readouterr().err
    assert _snapshot(explained_run) == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "maps.png"
    ]


def test_the_section_on_a_cnmc_fold_layout_of_real_cells(
    fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Catches anything in the section tied to the synthetic set or the course's CSVs: on the
    C-NMC fold layout (the real cells of the fixtures, each under four cell numbers) a trained
    depth gets its maps, its shares on the real cells' own masks, and its panel."""
    from lab3.config import make_config
    from lab3.engine.evaluate import LoadedCheckpoint
    from lab3.engine.explain import explain_split
    from lab3.engine.loop import fit

    data = copy_cnmc_cells(fixtures / "cnmc", tmp_path / "C-NMC_training_data", 4, folds=True)
    run = tmp_path / "run"
    config = make_config(
        "tiny", model="resnet18", data=str(data), out=str(run / "runs" / "resnet18"),
        device="cpu", epochs=1, compile="off", split_mode="stratified",
    )  # fmt: skip
    fit(config, progress=False)
    loaded = LoadedCheckpoint.open(run / "runs" / "resnet18" / "best.pt", device="cpu")
    assert loaded.data.layout.name == "cnmc"
    frame = explain_split(loaded, "valid", layer="layer3")
    row = compare(frame)
    assert row.maps == len(frame) > 0
    assert 0.05 < row.cell_area < 0.95  # the real cells' masks: neither empty nor the frame
    assert 0.0 <= row.on_cell <= 1.0
    assert main(["explain", "--run", str(run), "--n", "4", "--device", "cpu"]) == 0
    split = "test" if loaded.data.has_labels("test") else "valid"
    assert (run / "figures" / f"attention_resnet18_{split}.png").is_file()
    assert "figure:" in capsys.readouterr().out


def test_the_attention_prose_reads_as_reviewed() -> None:
    """The Grad-CAM paragraphs whole, against their reviewed copy (tests/golden/attention.md):
    a difference beyond and inside the noise, one mistake, none, an even map, sampled maps, each
    map resolution and the ablation's variants."""
    rng = np.random.default_rng(0)
    frames = {
        "resnet18": {"test": _frame(rng, right=0.91, wrong=0.78, n_wrong=20)},
        "resnet50": {"test": _frame(rng, right=0.78, wrong=0.91, n_wrong=20)},
        "resnet152": {"test": _frame(rng, right=0.90, wrong=0.80, n_wrong=1)},
        "resnet34": {"test": _frame(rng, right=0.90, wrong=0.90, n_wrong=20)},
    }
    even = _frame(rng, right=0.6, wrong=0.6, n_wrong=0)
    even["share"] = even["area"]
    sampled = _frame(rng, right=0.8, wrong=0.4, n_wrong=10)
    sampled.loc[sampled.index[:80], ["share", "area"]] = np.nan
    frames["resnet50"]["valid"] = sampled
    fewer = _frame(rng, right=0.8, wrong=0.4, n_wrong=10)
    fewer.loc[fewer.index[:70], ["share", "area"]] = np.nan
    frames["resnet18"]["valid"] = fewer
    frames["resnet152"]["valid"] = even
    summary = summarise(frames)
    ablation = {"plain resize": compare(even), "tight crop": compare(sampled)}
    last_stage = {"resnet18": ("layer4", (7, 7))}
    finer = {"resnet18": ("layer3", (3, 3)), "resnet50": ("layer2", (6, 6))}
    sections = {
        "test split, last stage": attention_text(
            summary, "test", layers=last_stage, image_size=224
        ),
        "valid split, sampled, finer stage": attention_text(
            summary, "valid", ablation, layers=finer, image_size=48
        ),
        "a single cell": map_resolution_text({"resnet18": ("layer4", (1, 1))}, 32),
        "two by two, size unknown": map_resolution_text({"resnet18": ("layer4", (2, 2))}),
        "four by four": map_resolution_text({"resnet18": ("layer4", (4, 4))}, 128),
        "five by five": map_resolution_text({"resnet18": ("layer4", (5, 5))}, 160),
        "an earlier stage at 66 px": map_resolution_text({"resnet18": ("layer3", (5, 5))}, 66),
    }
    assert_matches_golden("attention", sections)


# One depth's numbers, each field a value no other field has: 61 % of the map on a cell of 42 %
SHARES = AttentionShares(
    cell_area=0.42, on_cell=0.61, above_even=0.19, above_even_two_se=0.03, right=0.64,
    wrong=0.53, mistakes=7, right_minus_wrong=0.11, right_minus_wrong_two_se=0.04, images=90,
    maps=40,
)  # fmt: skip


def _depth(**values: float) -> dict[str, dict[str, AttentionShares]]:
    """A one-depth summary (ResNet18 on test) with `SHARES`, some of its numbers replaced."""
    return {"resnet18": {"test": replace(SHARES, **values)}}


def test_the_attention_sentence_reads_each_field_of_the_record() -> None:
    """The interface between `attention` and `narrative` is the record, not a table's titles:
    each field, set apart from the others, lands in its own place of the sentence. Catches a
    field read in place of another (the cell's area for the map's share, right for wrong, one
    standard error for the other, the mapped images for the split's)."""
    assert attention_text(_depth(), "test", {"plain resize": SHARES}) == (
        "- **ResNet18** puts 61.0 % of its attention on the cell, which covers 42.0 % of the "
        "image (19.0 points more than an evenly spread map would put there, two standard errors "
        "±3.0); its 7 mistakes 53.0 %, right answers 64.0 %: its mistakes look less at the cell, "
        "by 11.0 points, more than two standard errors (±4.0 points).\n"
        "- The shares come from 40 maps per depth of the 90 test images: each depth's mistakes "
        "and its right answers, each evenly sampled when there are many, and weighed by their "
        "share of the split.\n"
        "- In the preprocessing ablation (ResNet18, validation split, one view) the share of map "
        "mass on the cell is 61.0 % with plain resize (the cell covers 42.0 %)."
    )
    assert attention_text(_depth(), "valid") == "", "no depth on the valid split"


def test_the_attention_table_titles_each_field() -> None:
    """The notebook's table: one titled column per field, in the record's order, shares as
    percentages and counts as they are. Catches a field left out of the table or under
    another's title."""
    assert list(COLUMNS.values()) == [f.name for f in fields(AttentionShares)]
    summary = {"resnet18": {"test": SHARES}, "resnet50": {"valid": replace(SHARES, mistakes=0)}}
    table = attention_table(summary)
    assert table.index.tolist() == [("ResNet18", "test"), ("ResNet50", "valid")]
    assert list(table.columns) == list(COLUMNS)
    assert table.loc[("ResNet18", "test")].tolist() == [
        getattr(SHARES, name) for name in COLUMNS.values()
    ]
    html = style_summary(summary).to_html()
    assert ">61.0 %<" in html and ">7<" in html and ">90<" in html and ">40<" in html


def test_attention_sentences_at_their_thresholds() -> None:
    """A difference of exactly two standard errors is inside the noise; less attention than an
    even map is called less; several mistakes without an error bar are counted, not 'one'."""
    at_noise = attention_text(
        _depth(above_even=0.05, above_even_two_se=0.05, right_minus_wrong=0.05,
               right_minus_wrong_two_se=0.05),
        "test",
    )  # fmt: skip
    assert "(no more than an evenly spread map" in at_noise
    assert "a difference of 5.0 points, inside the noise (two standard errors: ±5.0" in at_noise
    less = attention_text(_depth(above_even=-0.2, above_even_two_se=0.1), "test")
    assert "(20.0 points less than an evenly spread map would put there, two standard " in less
    assert "errors ±10.0)" in less
    few = attention_text(_depth(mistakes=3, right_minus_wrong_two_se=np.nan), "test")
    assert "; its 3 mistakes 53.0 %, too few to compare with its right answers (64.0 %)." in few
