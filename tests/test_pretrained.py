"""Beyond the course's rules: ImageNet and saved initial weights, torchvision's classifiers.

Nothing here downloads: ImageNet "weights" are randomly initialised torchvision models saved in
torch's hub cache layout under a temporary TORCH_HOME, with torchvision's file names, and the
download function is replaced by one that fails as an offline machine does.
"""

from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from lab3.cli import main
from lab3.config import make_config
from lab3.engine.data import prepare_data
from lab3.engine.evaluate import predict_submission
from lab3.engine.loop import fit
from lab3.errors import UserError
from lab3.models import IMAGENET_MEAN, build_model, initial_state, load_initial_state
from lab3.models.pretrained import hub_file, weights_enum
from lab3.models.reference import realistic_batchnorm
from lab3.workbook import runner as workbook
from lab3.workbook.report import build_report

TINY = ["--profile", "tiny", "--image-size", "32", "--train-limit", "32", "--device", "cpu"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch home and no network: a download fails at once, as it does offline."""

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def place_imagenet_weights(arch: str, seed: int = 0) -> nn.Module:
    """A torchvision model with non-trivial weights, saved where torch's hub cache keeps arch's
    ImageNet weights; returns that model (eval mode)."""
    torch.manual_seed(seed)
    reference = torchvision.models.get_model(arch, weights=None)
    if isinstance(reference, torchvision.models.ResNet):
        realistic_batchnorm(reference, seed)
    path = hub_file(weights_enum(arch))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), path)
    return reference.eval()


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_init_equals_torchvision_model(arch: str) -> None:
    reference = place_imagenet_weights(arch)
    assert hub_file(weights_enum(arch)).name == Path(weights_enum(arch).url).name
    ours = build_model(arch, num_classes=3)
    note = load_initial_state(ours, initial_state(arch, "imagenet"), "imagenet")
    assert "head fc replaced for 3 classes" in note
    # the head aside: give torchvision's model the same 3-class head, then compare outputs
    reference.fc = nn.Linear(reference.fc.in_features, 3)
    reference.fc.load_state_dict(ours.fc.state_dict())
    ours.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5, rtol=1e-4)
    body = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    for key, value in body.items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_imagenet_offline_is_one_line_and_no_run_folder(
    learnable: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = ["train", "--model", "resnet18", "--data", str(learnable), "--out", str(out), *TINY]
    assert main([*args, "--init", "imagenet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "resnet18-f37072fd.pth" in err and str(hub_file(weights_enum("resnet18"))) in err
    assert not out.exists()


def test_imagenet_init_trains_with_imagenet_normalisation(learnable: Path, tmp_path: Path) -> None:
    place_imagenet_weights("resnet18")
    config = make_config(
        "tiny", model="resnet18", data=str(learnable), out=str(tmp_path / "run"), device="cpu"
    )
    config.init = "imagenet"
    assert prepare_data(config, progress=False).normalisation[0] == IMAGENET_MEAN
    result = fit(config, progress=False)
    assert json.loads((result.run_dir / "config.json").read_text())["init"] == "imagenet"
    record = json.loads((result.run_dir / "result.json").read_text())
    assert record["init"] == "imagenet" and 0 <= record["init_valid_acc"] <= 1
    scratch = make_config("tiny", model="resnet18", data=str(learnable), device="cpu")
    assert prepare_data(scratch, progress=False).normalisation[0] != IMAGENET_MEAN


def test_path_init_starts_where_the_run_ended(learnable: Path, tmp_path: Path) -> None:
    first = fit(
        make_config(
            "tiny",
            model="resnet18",
            data=str(learnable),
            out=str(tmp_path / "first"),
            device="cpu",
            epochs=3,
        ),
        progress=False,
    )
    best = first.run_dir / "best.pt"
    again = make_config(
        "tiny",
        model="resnet18",
        data=str(learnable),
        out=str(tmp_path / "again"),
        device="cpu",
        init=str(best),
    )
    result = fit(again, progress=False)
    record = json.loads((result.run_dir / "result.json").read_text())
    assert record["init"] == str(best)
    assert record["init_valid_acc"] == pytest.approx(first.best_valid_acc, abs=1e-6)
    # a plain state dict of the same model works too
    plain = tmp_path / "weights.pt"
    torch.save(torch.load(best, weights_only=True)["model"], plain)
    assert (
        initial_state("resnet18", str(plain)).keys() == build_model("resnet18").state_dict().keys()
    )


def test_path_init_shape_mismatch_is_one_line(
    learnable: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    wrong = tmp_path / "resnet34.pt"
    torch.save(build_model("resnet34").state_dict(), wrong)
    other = tmp_path / "resnet50.pt"
    torch.save(build_model("resnet50").state_dict(), other)
    for weights in (wrong, other, tmp_path / "missing.pt"):
        out = tmp_path / f"run-{weights.stem}"
        args = ["train", "--model", "resnet18", "--data", str(learnable), "--out", str(out)]
        assert main([*args, *TINY, "--init", str(weights)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(weights) in err, err
        assert not out.exists()
    # a grey model given colour weights: the first misfit is named with both shapes
    grey = build_model("resnet18", in_channels=1)
    with pytest.raises(UserError, match=r"conv1.weight has shape \(64, 3, 7, 7\)"):
        load_initial_state(grey, build_model("resnet18").state_dict(), "colour.pt")


def test_torchvision_model_trains_and_writes_a_submission(
    learnable: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    model = "torchvision:mobilenet_v3_small"
    assert (
        main(["train", "--model", model, "--data", str(learnable), "--out", str(out), *TINY]) == 0
    )
    assert (out / "best.pt").is_file()
    assert json.loads((out / "result.json").read_text())["model"] == model
    frame = predict_submission(out / "best.pt", device="cpu")
    err = capsys.readouterr().err
    assert "notice: torchvision:mobilenet_v3_small has no test CSV of its own" in err
    ids = pd.read_csv(learnable / "resnet_18_test.csv")["Path"].tolist()
    assert frame["ID"].tolist() == ids and set(frame["label"]) <= {0, 1}
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--device", "cpu"]) == 0


def test_torchvision_imagenet_init_and_unknown_names(tmp_path: Path) -> None:
    place_imagenet_weights("mobilenet_v3_small")
    net = build_model("torchvision:mobilenet_v3_small", num_classes=5)
    note = load_initial_state(net, initial_state("torchvision:mobilenet_v3_small", "imagenet"), "x")
    assert "head classifier.3 replaced for 5 classes" in note
    with pytest.raises(UserError, match="not an image classifier"):
        make_config("tiny", model="torchvision:fasterrcnn_resnet50_fpn")
    with pytest.raises(UserError, match="unknown"):
        make_config("tiny", model="torchvision:resnet9000")


def test_workbook_pretrained_offline_is_one_line_and_no_run_folder(
    learnable: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with pytest.raises(UserError, match="resnet18-f37072fd.pth") as err:
        workbook.run_workbook(
            data=learnable, profile="tiny", models=["resnet18"], out=out, pretrained=True
        )
    assert len(str(err.value).splitlines()) == 1
    assert not out.exists()


def test_workbook_pretrained_compares_beside_the_course_tables(
    learnable: Path, tmp_path: Path
) -> None:
    place_imagenet_weights("resnet18")  # a stand-in: not torchvision's published file
    run = workbook.run_workbook(
        data=learnable, profile="tiny", models=["resnet18"], out=tmp_path / "run", pretrained=True
    )
    record = json.loads((run / "runs" / "resnet18-imagenet" / "result.json").read_text())
    assert record["init"] == "imagenet"
    assert record["init_weights"] == {"file": "resnet18-f37072fd.pth", "published": False}
    for name in ("accuracy_scratch_vs_imagenet.png", "confusion_test_imagenet.png"):
        assert (run / "figures" / name).stat().st_size > 1000
    build_report(run)
    page = (run / "report.html").read_text()
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S))
    section = text.index("Beyond the course rules: ImageNet weights")
    assert "These runs are outside the course" in text[section:]
    assert "not torchvision's published ones" in text[section:]
    # the ImageNet model shows only in its own section, never in the course's tables
    assert text.index("ResNet18 (ImageNet)") > section
    assert text.index("Highest accuracy") < section and text.index("Metrics") < section


def test_plan_gives_pretrained_to_04_and_05_only() -> None:
    steps = workbook.plan(Path("/d"), Path("/r"), "quick", ["resnet18"], pretrained=True)
    flags = {s.output: s.parameters.get("pretrained") for s in steps}
    assert flags == {
        "01_data_exploration.ipynb": None,
        "02_preprocessing_experiments.ipynb": None,
        "03_resnet_definitions.ipynb": None,
        "04_train_resnet18.ipynb": True,
        "05_evaluation_and_report.ipynb": True,
    }
    assert main(["run", "--resume", "/nowhere", "--pretrained"]) == 2


def test_published_file_quirks_load() -> None:
    """torchvision's older published files: no BatchNorm step counters (saved before PyTorch
    0.4.1), and DenseNet's old key names ('norm.1'), which torchvision renames when it loads."""
    reference = torchvision.models.densenet121().eval()
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))(\d)\.", r"\1.\2.", k): v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path = hub_file(weights_enum("densenet121"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(old, path)
    net = build_model("torchvision:densenet121", num_classes=5)
    note = load_initial_state(net, initial_state("torchvision:densenet121", "imagenet"), "x")
    assert "head classifier replaced for 5 classes" in note
    reference.classifier = net.classifier
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), reference(x), atol=1e-5)
