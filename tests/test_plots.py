"""Every figure function writes a real, non-blank PNG and draws what the lab asks for."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from lab3 import plots  # noqa: E402

CLASSES = ["normal", "blast"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def assert_png(path, min_side: int = 100) -> None:
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 0, "blank image"
    assert not list(path.parent.glob(f".{path.name}.*")), "temporary file left behind"


def history(epochs: int, offset: float, with_test: bool) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    acc = 0.95 - 0.4 * np.exp(-e / 3) - offset
    frame = pd.DataFrame(
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_acc": acc,
            "valid_loss": 1.2 / e,
            "valid_acc": acc - 0.03,
            "lr": 0.1 * 0.5 ** (e // 2),
            "seconds": 1.0,
            "images_per_s": 100.0,
        }
    )
    if with_test:
        frame["test_loss"] = 1.3 / e
        frame["test_acc"] = acc - 0.05
    return frame


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_save_figure_is_atomic_png(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out = plots.save_figure(fig, tmp_path / "sub" / "line.png")
    assert out == tmp_path / "sub" / "line.png"
    assert_png(out)


def test_class_counts_shows_unlabelled_test_rows(tmp_path):
    table = pd.DataFrame(
        {
            "split": ["train"] * 6 + ["valid"] * 3 + ["test"] * 2,
            "label": [0, 1, 1, 1, 0, 1, 0, 1, 1, np.nan, -1],
        }
    )
    fig = plots.plot_class_counts(table, tmp_path / "counts.png", class_names=CLASSES)
    assert_png(tmp_path / "counts.png")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["normal", "blast", "unlabelled"]
    heights = sorted(p.get_height() for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [1, 2, 2, 2, 4]


def test_image_grid_mixes_colour_and_grey(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 256, (32, 32), dtype=np.uint8))
    fig = plots.plot_image_grid(
        images, ["a", "b", "c", "grey"], ncols=3, path=tmp_path / "grid.png", suptitle="Samples"
    )
    assert_png(tmp_path / "grid.png")
    assert len(fig.axes) == 6  # 2 rows x 3 columns, two left empty
    assert [ax.get_title() for ax in fig.axes[:4]] == ["a", "b", "c", "grey"]
    with pytest.raises(ValueError, match="titles"):
        plots.plot_image_grid(images, ["only one"])


def test_intensity_histograms(tmp_path):
    rng = np.random.default_rng(1)
    stats = pd.DataFrame(
        {
            "label": rng.integers(0, 2, 200),
            "mean_pixel": rng.normal(40, 8, 200),
            "black_fraction": rng.uniform(0.7, 0.9, 200),
        }
    )
    fig = plots.plot_intensity_histograms(stats, tmp_path / "hist.png", class_names=CLASSES)
    assert_png(tmp_path / "hist.png")
    assert len(fig.axes) == 2


def test_accuracy_curves_one_axes_all_depths(tmp_path):
    histories = {
        "resnet18": history(5, 0.0, with_test=True),
        "resnet50": history(5, 0.02, with_test=True),
        "resnet152": history(4, 0.04, with_test=False),
    }
    histories["resnet50"]["test_acc"] = np.nan  # a test column without values draws no line
    fig = plots.plot_accuracy_curves(histories, tmp_path / "acc.png")
    assert_png(tmp_path / "acc.png")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert len(ax.lines) == 7  # 3 x (train, valid) + ResNet18 test
    assert lines["ResNet18 train"].get_linestyle() == "-"
    assert lines["ResNet18 valid"].get_linestyle() == "--"
    assert lines["ResNet18 test"].get_linestyle() == ":"
    assert lines["ResNet50 train"].get_color() == lines["ResNet50 valid"].get_color()
    assert lines["ResNet18 train"].get_color() != lines["ResNet50 train"].get_color()
    y = lines["ResNet18 train"].get_ydata()
    assert 1 < max(y) <= 100  # shown in percent
    assert "accuracy" in ax.get_ylabel()


def test_loss_and_lr_curves(tmp_path):
    histories = {"resnet18": history(4, 0.0, with_test=False)}
    fig = plots.plot_loss_curves(histories, tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")
    assert len(fig.axes[0].lines) == 2
    plots.plot_lr_schedule(histories["resnet18"], tmp_path / "lr.png")
    assert_png(tmp_path / "lr.png")


def test_confusion_matrix_annotations(tmp_path):
    cm = np.array([[40, 10], [5, 145]])
    fig = plots.plot_confusion_matrix(cm, CLASSES, tmp_path / "cm.png", title="ResNet18")
    assert_png(tmp_path / "cm.png")
    assert sorted(texts(fig)) == ["10", "145", "40", "5"]
    assert "92.50%" in fig.axes[0].get_title()

    fig = plots.plot_confusion_matrix(cm, CLASSES, normalize=True)
    assert "80.0%\n(40)" in texts(fig) and "96.7%\n(145)" in texts(fig)

    with pytest.raises(ValueError, match="class names"):
        plots.plot_confusion_matrix(cm, ["only one"])


def test_normalised_confusion_rows_sum_to_one_and_empty_rows_stay_zero():
    confusion = np.array([[3, 1, 0, 0], [0, 0, 0, 0], [2, 6, 0, 0], [0, 1, 0, 0]])
    for _ in range(3):
        # leave non-zero memory where numpy allocates next: an output array that is not
        # explicitly zeroed shows it in the empty row
        junk = [np.full(confusion.shape, 7.0) for _ in range(3)]
        del junk
        fig = plots.plot_confusion_matrix(confusion, list("abcd"), normalize=True)
        shown = texts(fig)
        assert shown[:4] == ["75.0%\n(3)", "25.0%\n(1)", "0.0%\n(0)", "0.0%\n(0)"]
        assert shown[4:8] == ["0.0%\n(0)"] * 4
        assert shown[12:14] == ["0.0%\n(0)", "100.0%\n(1)"]
        plt.close(fig)


def test_confusion_matrices_one_panel_per_model(tmp_path):
    cm = np.array([[40, 10], [5, 145]])
    fig = plots.plot_confusion_matrices(
        {"resnet18": cm, "resnet50": cm, "resnet152": cm}, CLASSES, tmp_path / "cms.png"
    )
    assert_png(tmp_path / "cms.png")
    titles = [ax.get_title().splitlines()[0] for ax in fig.axes]
    assert titles == ["ResNet18", "ResNet50", "ResNet152"]


def test_metric_bars_percent_and_hue(tmp_path):
    results = pd.DataFrame(
        {
            "preprocess": ["none", "crop", "none", "crop", "crop"],
            "tta": [False, False, True, True, True],
            "valid_acc": [0.81, 0.9, 0.83, 0.91, 0.93],  # crop+tta repeated: mean 92.0
        }
    )
    fig = plots.plot_metric_bars(
        results, "preprocess", "valid_acc", hue="tta", path=tmp_path / "b.png"
    )
    assert_png(tmp_path / "b.png")
    assert sorted(texts(fig)) == ["81.0", "83.0", "90.0", "92.0"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["none", "crop"]
    with pytest.raises(ValueError, match="no column"):
        plots.plot_metric_bars(results, "preprocess", "missing")


def test_misclassified_grid_and_empty_case(tmp_path):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(3)]
    probs = [0.9, np.array([0.2, 0.8]), 0.6]
    fig = plots.plot_misclassified(
        images, [0, 0, 1], [1, 1, 0], probs, CLASSES, tmp_path / "mis.png", ncols=2
    )
    assert_png(tmp_path / "mis.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["normal / blast (0.90)", "normal / blast (0.80)", "blast / normal (0.60)"]

    fig = plots.plot_misclassified([], [], [], [], CLASSES, tmp_path / "none.png")
    assert_png(tmp_path / "none.png")
    assert "no misclassified images" in texts(fig)


def test_scratch_vs_pretrained_shows_a_one_epoch_run(tmp_path):
    """Catches the comparison figure drawing nothing for one-epoch runs (a line through a single
    point is invisible): each curve is a marker then, and both inits of each depth are drawn."""
    one = pd.DataFrame({"epoch": [1], "train_acc": [0.6], "valid_acc": [0.7]})
    two = pd.DataFrame({"epoch": [1, 2], "train_acc": [0.6, 0.8], "valid_acc": [0.7, 0.9]})
    fig = plots.plot_scratch_vs_pretrained(
        {"resnet18": one, "resnet50": two},
        {"resnet18": one, "resnet50": two},
        path=tmp_path / "cmp.png",
    )
    assert_png(tmp_path / "cmp.png")
    lines = fig.axes[0].lines
    assert len(lines) == 8  # 2 depths x 2 inits x (valid, train)
    markers = [line.get_marker() for line in lines]
    assert markers[:4] == ["o"] * 4  # ResNet18's one-epoch curves
    assert all(m in (None, "None", "") for m in markers[4:])  # ResNet50's are lines


@pytest.mark.parametrize("width", [48, 67, 224])
def test_side_by_side_tiles_sit_where_their_titles_are_written(width):
    colours = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0)]
    tiles = [np.broadcast_to(np.array(c), (width, width, 3)) for c in colours]
    picture = plots._side_by_side(*tiles)
    assert picture.shape[0] == width and picture.shape[1] > 4 * width  # white gaps between
    for index, colour in enumerate(colours):
        column = int(plots._tile_centre(index, len(colours), width) * picture.shape[1])
        assert tuple(picture[width // 2, column]) == colour


def test_cam_overlay_puts_the_outline_in_white_and_the_peak_in_red():
    image = np.zeros((48, 48, 3), dtype=np.uint8)
    cam = np.zeros((48, 48))
    cam[10, 30] = 5.0
    mask = np.zeros((48, 48), dtype=bool)
    mask[8:40, 8:40] = True
    overlay = plots.cam_overlay(image, cam, mask)
    assert overlay.shape == (48, 48, 3) and 0 <= overlay.min() and overlay.max() <= 1
    assert np.all(overlay[8, 8:40] == 1.0) and np.all(overlay[20, 8] == 1.0)  # the mask's edge
    assert np.all(overlay[20, 20] < 1.0)  # inside: the blend, no outline
    red, green, blue = overlay[10, 30]
    assert red > 0.2 and red > 2 * blue and red > 2 * green  # jet's top (dark red), blended


def test_depth_figure_draws_one_picture_per_cell_with_each_depths_title(tmp_path):
    rng = np.random.default_rng(0)
    images = [(rng.random((48, 48, 3)) * 255).astype(np.uint8) for _ in range(3)]
    models = ["resnet18", "resnet50"]
    maps = {m: [rng.random((48, 48)) for _ in images] for m in models}
    titles = {m: [f"{m} {i}" for i in range(3)] for m in models}
    colours = {m: ["#2E7D32", "#B22222", "#2E7D32"] for m in models}
    path = tmp_path / "depths.png"
    fig = plots.plot_attention_depths(
        images, maps, titles, ["true blast"] * 3, title_colors=colours, path=path
    )
    assert_png(path)
    assert len(fig.axes) == len(images)
    for i, ax in enumerate(fig.axes):
        assert ax.images[0].get_array().shape[1] > 3 * 48  # input and both maps, one picture
        written = {t.get_text(): t.get_color() for t in ax.texts}
        for m in models:
            assert written[titles[m][i]] == colours[m][i]
    headers = {t.get_text() for t in fig.axes[0].texts}
    assert {"input", "ResNet18", "ResNet50"} <= headers


def test_tile_titles_sit_just_above_their_images(tmp_path):
    """The titles of image tiles are placed at a fixed height (not re-placed at every draw):
    each must still sit right above its own image, neither on it nor drifting away."""
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    attention = plots.plot_attention(
        images=images,
        maps=[rng.random((32, 32)) for _ in images],
        titles=[f"blast 0.9{i}" for i in range(4)],
        groups=["right: blast", "right: blast", "wrong: true normal", "wrong: true normal"],
    )
    grid = plots.plot_misclassified(images, [0] * 4, [1] * 4, [0.9] * 4, CLASSES, ncols=2)
    for fig in (attention, grid):
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        titled = [ax for ax in fig.axes if ax.get_title(loc="left") or ax.get_title()]
        assert len(titled) == 4
        for ax in titled:
            title = ax.title if ax.get_title() else ax._left_title
            image_top = ax.get_images()[0].get_window_extent(renderer).y1
            gap = title.get_window_extent(renderer).y0 - image_top
            assert 0 <= gap <= 12, gap
