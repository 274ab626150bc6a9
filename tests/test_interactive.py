"""The JupyterLab path without a browser: the student's run folder (`lab3 lab`), notebook 04's
depths, notebook 05's finished depths, the one-sentence errors, the live curves and the report
naming a notebook not yet run. The browser itself: test_browser.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib
import nbformat
import pandas as pd
import pytest

from lab3 import plots
from lab3.cli import main
from lab3.config import make_config
from lab3.engine.loop import fit
from lab3.errors import UserError
from lab3.workbook import folders, interactive, live, training
from lab3.workbook.report import build_report_notebook
from lab3.workbook.runner import NOTEBOOKS, resume_workbook

matplotlib.use("Agg")


def _parameters(notebook: Path) -> dict[str, Any]:
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict[str, Any] = {}
    exec(cell.source, namespace)  # noqa: S102 - the committed parameters cell: assignments only
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def test_the_lab_folder_holds_copies_pointing_at_it_and_keeps_the_students_work(
    small_synthetic: Path, tmp_path: Path
) -> None:
    run = interactive.prepare_lab(small_synthetic, "tiny", ["resnet18", "resnet50"], tmp_path / "l")
    copies = sorted(p.stem for p in (run / "notebooks").glob("*.ipynb"))
    assert copies == sorted(NOTEBOOKS)
    record = folders.read_record(run)
    assert record["interactive"] is True and record["models"] == ["resnet18", "resnet50"]
    train = _parameters(run / "notebooks" / "04_train.ipynb")
    assert train["run_dir"] == str(run) and train["data_dir"] == str(small_synthetic.resolve())
    assert train["model"] == "all" and train["models"] == "resnet18,resnet50"
    assert train["profile"] == "tiny" and train["split_mode"] == "stratified"
    assert "split_mode" not in _parameters(run / "notebooks" / "03_resnet_definitions.ipynb")
    first = run / "notebooks" / "01_data_exploration.ipynb"
    first.write_text(first.read_text().replace("01 · Data exploration", "01 · my edit"))
    again = interactive.prepare_lab(small_synthetic, "tiny", ["resnet18", "resnet50"], run)
    assert "01 · my edit" in (again / "notebooks" / first.name).read_text()
    with pytest.raises(UserError, match=r"prepared with profile 'tiny', not 'quick'.*another"):
        interactive.prepare_lab(small_synthetic, "quick", ["resnet18", "resnet50"], run)
    with pytest.raises(UserError, match=r"a JupyterLab folder \(lab3 lab\)"):
        resume_workbook(run)  # `lab3 run --resume` never runs its batch notebooks beside them


def test_lab3_lab_prepares_then_becomes_jupyterlab_at_the_first_notebook(
    small_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda path, argv: calls.append(list(argv)))
    monkeypatch.setattr("os.geteuid", lambda: 0)  # root: Jupyter needs --allow-root
    monkeypatch.chdir(tmp_path)
    args = ["lab", "--data", str(small_synthetic), "--profile", "tiny", "--models", "resnet18"]
    assert main([*args, "--run", "mine", "--", "--no-browser", "--port", "8999"]) == 0
    (command,) = calls
    assert command[1:4] == ["-m", "jupyter", "lab"]
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in command
    assert "--allow-root" in command and command[-4:-1] == ["--no-browser", "--port", "8999"]
    assert command[-1] == "mine/notebooks/01_data_exploration.ipynb"
    assert _parameters(tmp_path / command[-1])["models"] == "resnet18"
    assert main(["lab", "--data", str(tmp_path / "nope"), "--run", "other"]) == 2
    assert not (tmp_path / "other").exists(), "a wrong data folder leaves nothing behind"


def test_a_wrong_data_dir_is_one_sentence_naming_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        interactive.open_layout(tmp_path / "nope")
    message = str(caught.value)
    assert message.startswith(f"data_dir = '{tmp_path / 'nope'}' is not a dataset lab3 can read")
    assert "set data_dir in this notebook's parameters cell" in message
    assert "--data" not in message


def test_notebook_04_trains_every_depth_by_default_and_one_under_lab3_run() -> None:
    assert folders.depths_to_train("resnet18,resnet50", "all") == ["resnet18", "resnet50"]
    assert folders.depths_to_train("resnet18,resnet50", "resnet50") == ["resnet50"]


def _finished_run(run: Path, done: int, planned: int) -> None:
    run.mkdir(parents=True)
    (run / "history.csv").write_text("epoch\n1\n")
    result = {"epochs_done": done, "epochs_planned": planned, "best_epoch": 1}
    (run / "result.json").write_text(json.dumps({**result, "best_valid_acc": 0.5}))


def test_notebook_05_reports_the_finished_depths_and_names_the_rest(tmp_path: Path) -> None:
    models = ["resnet18", "resnet50", "resnet152"]
    with pytest.raises(UserError, match="run notebook 04_train first"):
        training.finished_depths(tmp_path, models)
    _finished_run(tmp_path / "runs" / "resnet18", 2, 2)
    _finished_run(tmp_path / "runs" / "resnet50", 1, 2)  # interrupted
    done, missing = training.finished_depths(tmp_path, models)
    assert (done, missing) == (["resnet18"], ["resnet50", "resnet152"])
    text = training.missing_text(missing)
    assert text.startswith("ResNet50, ResNet152 have not finished training") and "them" in text
    assert "run notebook 04_train" in text and training.missing_text([]) == ""


def test_the_report_names_the_first_notebook_the_student_has_not_run(
    small_synthetic: Path, tmp_path: Path
) -> None:
    run = interactive.prepare_lab(small_synthetic, "tiny", ["resnet18"], tmp_path / "lab")
    with pytest.raises(UserError, match="01_data_exploration has not run to its end.*Run All"):
        build_report_notebook(run)
    for name in NOTEBOOKS:  # as if run: every code cell has its count
        path = run / "notebooks" / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            cell.execution_count = index + 1
        nbformat.write(nb, path)
    (run / "notebooks" / "03_resnet_definitions.ipynb").unlink()
    with pytest.raises(UserError, match="notebook 03_resnet_definitions has not been run"):
        build_report_notebook(run)


def test_live_curves_redraw_one_output_and_only_where_a_person_watches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown: list[Any] = []

    class Handle:
        def update(self, fig: Any) -> None:
            shown.append(("update", fig))

    def display(fig: Any, display_id: bool = False) -> Handle:
        shown.append(("display", fig))
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    curves = live.LiveCurves("resnet50")
    history = [{"epoch": 1, "train_acc": 0.6, "valid_acc": 0.5, "train_loss": 1.0}]
    curves(history, 4)
    curves([*history, {"epoch": 2, "train_acc": 0.7, "valid_acc": 0.6, "train_loss": 0.8}], 4)
    assert [kind for kind, _fig in shown] == ["display", "update"]
    assert shown[1][1]._suptitle.get_text() == "ResNet50: epoch 2 of 4"
    assert live.interactive() is False  # pytest is no Jupyter kernel
    with live.batch_kernels():
        assert os.environ[live.BATCH_ENV] == "1"
    assert live.BATCH_ENV not in os.environ


def test_the_live_figure_spans_the_planned_epochs_from_the_first() -> None:
    history = pd.DataFrame({"epoch": [1], "train_acc": [0.6], "valid_acc": [0.5]})
    fig = plots.plot_live_curves(history.assign(train_loss=0.9, valid_loss=1.0), "resnet18", 6)
    accuracy, loss = fig.axes
    assert accuracy.get_xlim() == (0.5, 6.5) and loss.get_xlim() == (0.5, 6.5)
    assert [line.get_label() for line in accuracy.lines] == ["ResNet18 train", "ResNet18 valid"]


def test_fit_calls_on_epoch_after_every_epoch_with_the_history(
    small_synthetic: Path, tmp_path: Path
) -> None:
    config = make_config(
        "tiny", model="resnet18", data=str(small_synthetic), out=str(tmp_path / "r"), epochs=2
    )
    seen: list[tuple[list[int], int]] = []

    def on_epoch(history: list[dict[str, Any]], planned: int) -> None:
        seen.append(([row["epoch"] for row in history], planned))

    planned = len(fit(config, progress=False, on_epoch=on_epoch).history)
    assert planned >= 2
    assert seen == [(list(range(1, k + 1)), planned) for k in range(1, planned + 1)]


def test_a_user_error_in_a_kernel_shows_as_its_one_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shown: list[list[str]] = []
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    monkeypatch.setattr(shell, "_showtraceback", lambda _type, _value, stb: shown.append(stb))
    try:
        interactive.short_errors()
        code = "from lab3.errors import UserError\nraise UserError('set data_dir to X')"
        assert not shell.run_cell(code).success  # the cell still fails: Run All stops there
        assert shown == [["\x1b[31mUserError: set data_dir to X\x1b[0m"]]
        assert shell.run_cell("1 / 0").success is False and len(shown) == 2
        assert len(shown[1]) > 1, "other errors keep their traceback"
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()
