"""The workbook on C-NMC's fold layout with a subject split: the split mode given to `lab3 run`
reaches every notebook that reads the data, the depth trains on it, and the report says that
the test patients were never seen in training."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from builders import copy_cnmc_cells

from lab3.cli import main
from lab3.data.layouts import load_layout
from lab3.workbook.exploration import subjects_per_split


@pytest.mark.slow
def test_the_workbook_trains_on_a_subject_split_of_cnmc_folds(
    fixtures: Path, tmp_path: Path
) -> None:
    """Catches a split mode that stops at the command line (the workbook splitting per image,
    patients on both sides) or at one notebook (a report on a split the depth was not trained
    on)."""
    data = copy_cnmc_cells(fixtures / "cnmc", tmp_path / "C-NMC_training_data", 8, folds=True)
    shared = subjects_per_split(load_layout(data, split_mode="subject"))
    assert shared is not None and not shared.drop(index="train")["also in train"].any()
    run = tmp_path / "run"
    argv = ["run", "--data", str(data), "--profile", "tiny", "--models", "resnet18"]
    assert main([*argv, "--split-mode", "subject", "--out", str(run)]) == 0

    assert json.loads((run / "workbook.json").read_text())["split_mode"] == "subject"
    config = json.loads((run / "runs" / "resnet18" / "config.json").read_text())
    assert config["split_mode"] == "subject"
    executed = {p.stem: nbformat.read(p, as_version=4) for p in (run / "notebooks").glob("*")}
    for name, notebook in executed.items():
        errors = [
            o for c in notebook.cells for o in c.get("outputs", ()) if o.output_type == "error"
        ]
        assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
        injected = [c.source for c in notebook.cells if "injected-parameters" in c.metadata.tags]
        if not name.startswith("03"):
            assert 'split_mode = "subject"' in injected[0], name
    report = json.dumps(executed["05_evaluation_and_report"].cells)
    assert "Split by subject" in report and "also have cells in the training split" not in report
