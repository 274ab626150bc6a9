"""The committed notebooks are clean: no outputs, a kernelspec, one parameters cell, glue only."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab3.config import COURSE_MODELS, DEFAULT_PROFILE, TrainConfig
from lab3.data.layouts import DEFAULT_DATA
from lab3.workbook import folders
from lab3.workbook.report import SECTION_TAGS
from lab3.workbook.runner import NOTEBOOKS, NOTEBOOKS_DIR, TRAIN_NOTEBOOK

ROOT = Path(__file__).resolve().parents[1]
PARAMETERS = {"data_dir", "run_dir", "profile", "models", "device"}
# the opt-in comparison from ImageNet weights (outside the course's rules): 04 and 05 only
PRETRAINED_NOTEBOOKS = {"04_train", "05_evaluation_and_report"}
# the notebooks that load the data take the split mode (C-NMC layouts); 03 reads no data
SPLIT_MODE_NOTEBOOKS = set(NOTEBOOKS) - {"03_resnet_definitions"}
MAX_CODE_LINES = 15  # a notebook cell is glue; anything longer belongs in lab3


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def test_the_workbook_is_the_five_notebooks() -> None:
    found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_and_with_a_kernelspec(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["kernelspec"]["language"] == "python"
    assert nb.metadata["language_info"]["name"] == "python"
    assert "papermill" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a code cell has outputs"
            assert cell.execution_count is None, f"{name}: a code cell has an execution count"
        assert "injected-parameters" not in _tags(cell)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_one_parameters_cell_with_defaults_for_jupyterlab(name: str) -> None:
    nb = _read(name)
    cells = [c for c in nb.cells if "parameters" in _tags(c)]
    assert len(cells) == 1, f"{name}: {len(cells)} cells tagged parameters"
    cell = cells[0]
    assert cell.cell_type == "code"
    assert not set(_tags(cell)) & set(SECTION_TAGS), "the parameters cell never goes in the report"
    assigned = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign), f"{name}: parameters cell holds only assignments"
        assigned[node.targets[0].id] = ast.literal_eval(node.value)
    expected = PARAMETERS | ({"model", "nproc"} if name == TRAIN_NOTEBOOK else set())
    expected |= {"pretrained"} if name in PRETRAINED_NOTEBOOKS else set()
    expected |= {"split_mode"} if name in SPLIT_MODE_NOTEBOOKS else set()
    assert set(assigned) == expected
    # Opened in JupyterLab from notebooks/, the defaults point at the repo's folders.
    assert assigned["data_dir"] == f"../{DEFAULT_DATA}"
    assert (assigned["profile"], assigned["models"]) == (DEFAULT_PROFILE, ",".join(COURSE_MODELS))
    assert assigned["run_dir"].startswith("../outputs/")
    assert assigned["device"] == "auto"
    if name in SPLIT_MODE_NOTEBOOKS:
        assert assigned["split_mode"] == TrainConfig.split_mode  # the config's default
    if name == TRAIN_NOTEBOOK:
        # JupyterLab trains every depth of `models` in turn; `lab3 run` passes one `model`
        assert assigned["model"] == folders.ALL_DEPTHS
        assert assigned["nproc"] == 1  # one process unless `lab3 run --nproc N`
    if name in PRETRAINED_NOTEBOOKS:
        assert assigned["pretrained"] is False  # the course forbids pretrained weights


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_opens_with_markdown_and_holds_glue_only(name: str) -> None:
    nb = _read(name)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse("\n".join(ln for ln in cell.source.splitlines() if not ln.startswith("%")))
        defined = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defined, f"{name}: define functions in lab3, not in the notebook"
        lines = [ln for ln in cell.source.splitlines() if ln.strip()]
        assert len(lines) <= MAX_CODE_LINES, f"{name}: a {len(lines)}-line cell is not glue"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_report_tags_are_known_and_headings_leave_level_one_to_the_report(name: str) -> None:
    for cell in _read(name).cells:
        tags = _tags(cell)
        for tag in tags:
            if tag.startswith("report:"):
                assert tag in SECTION_TAGS, f"{name}: unknown report tag {tag}"
        if set(tags) & set(SECTION_TAGS) and cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                assert not line.startswith("# "), f"{name}: use ## in report cells: {line}"


def test_every_report_section_has_content() -> None:
    used = {tag for name in NOTEBOOKS for cell in _read(name).cells for tag in _tags(cell)}
    assert set(SECTION_TAGS) <= used


def test_only_the_equivalence_check_imports_torchvision() -> None:
    for name in NOTEBOOKS:
        source = "\n".join(c.source for c in _read(name).cells if c.cell_type == "code")
        assert ("torchvision" in source) == (name == "03_resnet_definitions"), name


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean_on_the_notebooks(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
