"""Every results file records how it was made (issue 20): the provenance header that
`lab3.bench.provenance` writes, present in every file under benchmarks/results/, and every
benchmark script writing through it.

Only the results documents are checked: the *.json / *.md pairs. README.md describes the files,
and the per-epoch CSVs in history_cuda_full/ are raw training histories, not results documents;
the header of the file made from them (training_cuda_full.*) names how they were made.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
from pathlib import Path

import pytest

from lab3.bench import provenance as prov
from lab3.bench.provenance import FIELDS, NOT_RECORDED, provenance, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
JSON_FILES = sorted(RESULTS.rglob("*.json"))
MD_FILES = sorted(p for p in RESULTS.rglob("*.md") if p.name != "README.md")


def _name(path: Path) -> str:
    return str(path.relative_to(RESULTS))


def test_there_are_results_files_to_check() -> None:
    assert JSON_FILES and MD_FILES


@pytest.mark.parametrize("path", JSON_FILES, ids=_name)
def test_every_results_json_has_a_full_provenance(path: Path) -> None:
    document = json.loads(path.read_text())
    header = document.get("provenance")
    assert isinstance(header, dict), f"{_name(path)} has no provenance object"
    for field in FIELDS:
        value = header.get(field)
        assert isinstance(value, str) and value.strip(), f"{_name(path)}: {field} empty"
    assert next(iter(document)) == "provenance", "the provenance comes first"


@pytest.mark.parametrize("path", MD_FILES, ids=_name)
def test_every_results_markdown_lists_the_provenance(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert "How this file was made:" in lines, _name(path)
    start = lines.index("How this file was made:")
    listed = [line for line in lines[start : start + 2 + len(FIELDS)] if line.startswith("- ")]
    assert [line.split(":", 1)[0][2:] for line in listed] == list(FIELDS), _name(path)
    assert all(line.split(":", 1)[1].strip(" `") for line in listed), _name(path)


@pytest.mark.parametrize("path", JSON_FILES, ids=_name)
def test_each_pair_states_the_same_provenance(path: Path) -> None:
    markdown = path.with_suffix(".md")
    if markdown.is_file():
        header = json.loads(path.read_text())["provenance"]
        assert prov.header_markdown(header) in markdown.read_text()


# --- the helper ------------------------------------------------------------------------------


def test_write_results_writes_both_files_with_the_header(tmp_path: Path) -> None:
    header = provenance("python benchmarks/x.py --a 1", "cpu", {"bf16": True, "compile": False})
    json_path, md_path = write_results(
        tmp_path / "x_v1.5", header, {"rows": [1, 2]}, "A title", "the body"
    )
    assert (json_path.name, md_path.name) == ("x_v1.5.json", "x_v1.5.md")
    document = json.loads(json_path.read_text())
    assert list(document) == ["provenance", "rows"] and document["rows"] == [1, 2]
    assert set(FIELDS) <= set(document["provenance"])
    assert all(document["provenance"][f] for f in FIELDS)
    assert document["provenance"]["bf16"] == "True"
    assert document["provenance"]["channels_last"] == NOT_RECORDED
    date = dt.datetime.fromisoformat(document["provenance"]["date"])
    assert date.tzinfo is not None and abs(dt.datetime.now(dt.UTC) - date).total_seconds() < 600
    text = md_path.read_text()
    assert text.startswith("# A title\n\nHow this file was made:\n")
    assert text.rstrip().endswith("the body")
    assert "- command: `python benchmarks/x.py --a 1`" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_v1.5.json", "x_v1.5.md"], (
        "no temporaries left behind"
    )


def test_write_results_refuses_a_header_missing_a_field(tmp_path: Path) -> None:
    header = provenance("python x.py")
    for field in ("commit", "os"):
        broken = {k: v for k, v in header.items() if k != field}
        with pytest.raises(ValueError, match=field):
            write_results(tmp_path / "x", broken, {}, "t", "b")
    with pytest.raises(ValueError, match="machine"):
        write_results(tmp_path / "x", {**header, "machine": " "}, {}, "t", "b")
    assert not list(tmp_path.iterdir())


def test_execution_summary_and_command_line() -> None:
    same = {"a": {"bf16": True, "compile": False, "channels_last": True}}
    assert prov.execution_summary({**same, "b": same["a"]}, "model")["bf16"] == "True"
    mixed = prov.execution_summary({**same, "b": {**same["a"], "bf16": False}}, "model")
    assert mixed["bf16"] == "per model: a True, b False"
    command = prov.command_line(ROOT / "benchmarks" / "bench_models.py", ["--tag", "a b"])
    assert command == "python benchmarks/bench_models.py --tag 'a b'"


# --- every benchmark script writes through the helper ----------------------------------------


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch):
    """The benchmark scripts, imported, with the provenance writer recording its calls."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    calls: list[tuple] = []

    def fake_write(stem, header, document, title, body):
        assert all(header[f] for f in FIELDS)
        calls.append((Path(stem), header, document, title, body))
        return Path(f"{stem}.json"), Path(f"{stem}.md")

    names = ["bench_cpu_step", "bench_models", "bench_precise_bn", "bench_synthetic"]
    names += ["bench_training", "recipe_results"]
    modules = {}
    for name in names:
        modules[name] = sys.modules.get(name) or importlib.import_module(name)
        monkeypatch.setattr(modules[name], "write_results", fake_write)
    return modules, calls


ROW = {"model": "resnet18", "threads": 2, "channels_last": True, "bf16": False}


def test_cpu_step_writes_through_the_helper(scripts) -> None:
    modules, calls = scripts
    row = {**ROW, "compile": False, "step_s": 0.1, "ratio": 1.0, "first_s": 0.2}
    args = argparse.Namespace(rounds=3, compile=False)
    modules["bench_cpu_step"].write(Path("cpu_step"), [row], args, ["--rounds", "3"])
    (stem, header, document, _, body) = calls[0]
    assert header["command"] == "python benchmarks/bench_cpu_step.py --rounds 3"
    assert (header["bf16"], header["compile"]) == ("per row", "False")
    assert document["rows"] == [row] and "| resnet18 |" in body


def test_models_writes_through_the_helper(scripts) -> None:
    modules, calls = scripts
    args = argparse.Namespace(
        batch_size=8, image_size=32, num_classes=2, repeats=1, steps=1, warmup=1,
        channels_last=True, amp=False,
    )  # fmt: skip
    row = {
        "arch": "resnet18", "ours_median": 1.0, "torchvision_median": 1.0, "ratio": 1.0,
        "ratio_paired": 1.0, "ratio_best": 1.0, "ratio_min": 1.0, "ratio_max": 1.0,
    }  # fmt: skip
    setup = {"device": "cpu", "torchvision": "x"}
    modules["bench_models"].write(Path("models_cpu"), "python b.py", setup, [row], args)
    header = calls[0][1]
    assert (header["bf16"], header["channels_last"], header["compile"]) == (
        "False",
        "True",
        "False",
    )


def test_precise_bn_and_recipe_write_through_the_helper(scripts, tmp_path: Path) -> None:
    modules, calls = scripts
    row = {"checkpoint": "r/best.pt", "model": "resnet18"}
    execution = {"bf16": "True", "compile": "False", "channels_last": "True"}
    modules["bench_precise_bn"].write(Path("pbn"), "python p.py", [row], execution)
    assert calls[-1][1]["channels_last"] == "True" and calls[-1][2] == {"rows": [row]}

    recipe = modules["recipe_results"]
    (tmp_path / "resnet18").mkdir()
    assert recipe.run_execution(tmp_path / "resnet18")["bf16"].startswith(NOT_RECORDED)
    (tmp_path / "resnet18" / "config.json").write_text(
        json.dumps({"execution": {"bf16": False, "compile": False, "channels_last": False}})
    )
    assert recipe.run_execution(tmp_path / "resnet18")["bf16"] is False
    recipe.write(Path("recipe_x"), "lab3 run; python r.py", "a note", [{"model": "m"}], execution)
    assert calls[-1][3] == "Recipe results: recipe_x" and calls[-1][2]["note"] == "a note"


def test_synthetic_and_training_write_through_the_helper(scripts) -> None:
    modules, calls = scripts
    args = argparse.Namespace(train=1, valid=1, test=1, size=8, seed=0)
    payload = {"cpu": "c", "numpy": "n", "pillow": "p"}
    modules["bench_synthetic"].write(Path("synthetic"), "python s.py", payload, [], "## r", args)
    assert calls[-1][1]["bf16"] == "not used (no ResNet trained)"
    header = provenance("python t.py", "cpu", {"bf16": False})
    modules["bench_training"].write(Path("training"), header, {"profile": "quick"}, [{"m": 1}])
    assert calls[-1][2] == {"meta": {"profile": "quick"}, "rows": [{"m": 1}]}


def test_lab3_bench_writes_the_header_first_and_keeps_its_keys(tmp_path: Path) -> None:
    from lab3.bench import write_results as bench_write

    settings = {"device_type": "cpu", "amp_bf16": False, "compile": False, "channels_last": True}
    document = {
        "device": "cpu", "torch": "t", "date": "2026-01-01T00:00:00+00:00",
        "command": "lab3 bench --device cpu", "settings": settings,
        "setup_seconds": {"cache": 0.1, "cache_rebuilt": False}, "results": [], "profile": {},
    }  # fmt: skip
    markdown = bench_write(document, tmp_path / "bench.json")
    written = json.loads((tmp_path / "bench.json").read_text())
    assert list(written)[0] == "provenance" and written["command"] == document["command"]
    assert written["provenance"]["date"] == document["date"]
    assert written["provenance"]["channels_last"].startswith("True")
    assert markdown.read_text().startswith("# lab3 bench\n\nHow this file was made:")


def test_recipe_results_reads_any_run_folders_shallow_depths_first(scripts, tmp_path) -> None:
    recipe = scripts[0]["recipe_results"]
    runs = {"r50_e6_s1": "resnet50", "r50_e5_s0": "resnet50", "b": "resnet152", "z": "resnet18"}
    for name, model in {**runs, "unfinished": "resnet18"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model": model, "seed": 1}))
        if name != "unfinished":
            (tmp_path / name / "best.pt").write_bytes(b"")
    assert [p.name for p in recipe.run_folders(tmp_path)] == ["z", "r50_e5_s0", "r50_e6_s1", "b"]
    assert recipe.saved_config(tmp_path / "b")["model"] == "resnet152"
    assert recipe.saved_config(tmp_path / "missing") == {}
