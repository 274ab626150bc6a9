"""The layering of shared/DESIGN.md, enforced: lab3's imports run one way, bottom up.

    base      errors, fileio, formatting
    leaves    data/ and models/: each imports only the base and itself
    core      config, metrics, plots, submission
    engine    engine/
    workbook  workbook/: the glue the notebooks call
    face      cli, bench/, the package's entry points

A module imports only from its own layer or below; the notebooks import from `lab3.workbook` and
the core's public names. Every import is read with `ast`, the ones inside functions included, so a
lazy import cannot hide an upward one. A new top-level module must be given a layer here.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lab3"

BASE = {"lab3.errors", "lab3.fileio", "lab3.formatting"}
CORE = {"lab3.config", "lab3.metrics", "lab3.plots", "lab3.submission"}
FACE = {"lab3", "lab3.__main__", "lab3.cli"}
RANKS = {"base": 0, "data": 1, "models": 1, "core": 2, "engine": 3, "workbook": 4, "face": 5}
# what a notebook may import: the glue, and the core (leaves included) by its public names
NOTEBOOK_SOURCES = (
    "lab3.workbook",
    "lab3.config",
    "lab3.formatting",
    "lab3.metrics",
    "lab3.plots",
    "lab3.submission",
    "lab3.models",
    "lab3.data",
    "lab3.engine",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (
        ROOT / relative / "__init__.py"
    ).is_file()


def layer(module: str) -> str | None:
    top = module.split(".")[1] if "." in module else ""
    if module in BASE:
        return "base"
    if module in CORE:
        return "core"
    if module in FACE or top == "bench":
        return "face"
    if top in ("data", "models", "engine", "workbook"):
        return top
    return None


def imported_modules(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of lab3, a ``from lab3.x import y`` naming module
    ``lab3.x.y`` where y is a module itself."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "lab3"
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "lab3":
                continue
            names = [a.name for a in node.names]
            submodules = [f"{node.module}.{n}" for n in names if is_module(f"{node.module}.{n}")]
            plain = [n for n in names if not is_module(f"{node.module}.{n}")]
            found += [(node.lineno, m, []) for m in submodules]
            if plain or not submodules:
                found.append((node.lineno, node.module, plain))
    return found


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(p) for p in package_modules() if layer(module_name(p)) is None]
    assert not unplaced, f"give these modules a layer (tests/test_layering.py): {unplaced}"


def upward_imports(importer: str, tree: ast.AST, where: str) -> list[str]:
    """The imports of module `importer` (parsed as `tree`) that break the layering."""
    mine = layer(importer)
    if mine is None:
        return []  # reported by test_every_module_has_a_layer
    wrong = []
    for line, target, _ in imported_modules(tree):
        theirs = layer(target)
        if theirs is None:
            continue
        leaf_crossing = mine in ("data", "models") and theirs not in ("base", mine)
        if RANKS[theirs] > RANKS[mine] or leaf_crossing:
            wrong.append(f"{where}:{line} ({mine}) imports {target} ({theirs})")
    return wrong


def test_no_upward_imports() -> None:
    wrong = [
        w
        for p in package_modules()
        for w in upward_imports(
            module_name(p), ast.parse(p.read_text(), str(p)), str(p.relative_to(ROOT))
        )
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_checker_sees_upward_and_sideways_imports() -> None:
    """A model importing plots (even inside a function), the data importing the models, or the
    engine importing the glue is caught; the glue importing the engine is not."""
    lazy = ast.parse("def f():\n    from lab3.plots import plot_history\n")
    assert imported_modules(lazy) == [(2, "lab3.plots", ["plot_history"])]
    assert upward_imports("lab3.models.reference", lazy, "m")
    assert upward_imports("lab3.data.cache", ast.parse("import lab3.models.resnet"), "d")
    glue = ast.parse("from lab3.workbook import results")
    assert upward_imports("lab3.engine.loop", glue, "e")
    assert not upward_imports(
        "lab3.workbook.results", ast.parse("from lab3.engine import loop"), "w"
    )


def notebook_sources(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            # IPython magics are not Python
            lines += [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
            lines.append("")
    return "\n".join(lines)


@pytest.mark.parametrize(
    "notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem
)
def test_notebooks_import_the_workbook_and_public_core_names(notebook: Path) -> None:
    tree = ast.parse(notebook_sources(notebook), str(notebook))
    wrong = []
    for _, target, names in imported_modules(tree):
        allowed = any(target == s or target.startswith(s + ".") for s in NOTEBOOK_SOURCES)
        private = [n for n in [*target.split("."), *names] if n.startswith("_")]
        if not allowed or private or layer(target) == "face":
            wrong.append(f"{target} {names}")
    assert not wrong, f"{notebook.name} imports outside lab3.workbook and the core: {wrong}"


def test_the_import_paths_users_notebooks_know_still_work() -> None:
    from lab3.data.dataset import LeukemiaDataset
    from lab3.engine import fit
    from lab3.engine.loop import fit as loop_fit
    from lab3.models import resnet18, resnet50, resnet152

    assert fit is loop_fit and LeukemiaDataset.__name__ == "LeukemiaDataset"
    assert [f.__name__ for f in (resnet18, resnet50, resnet152)] == [
        "resnet18",
        "resnet50",
        "resnet152",
    ]
