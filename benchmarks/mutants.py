"""`make mutants`: mutation testing with mutmut 3, and the results file it leaves.

Runs ``mutmut run`` over the modules and tests ``[tool.mutmut]`` in pyproject.toml names (or only
the mutants matching the globs given), then counts each module's mutants by outcome from mutmut's
own records (``mutants/**/*.py.meta``) and writes ``benchmarks/results/mutants.md`` (for globs
``mutants/partial.md``, beside mutmut's own files, which also counts what earlier runs left
there): killed, survived, equivalent (survivors listed in ``[tool.mutmut].equivalent`` with a
one-line reason each), no tests (no selected test runs the function), timeouts, and the
survivors left.

    python benchmarks/mutants.py                       # every mutant (make mutants)
    python benchmarks/mutants.py 'lab3.metrics.*'      # one module's
    python benchmarks/mutants.py --report-only         # recount the last run
    python benchmarks/mutants.py --report-only --notes-file benchmarks/mutants_notes.md

Not part of `make test`: a full run takes a long while on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lab3.bench.provenance import command_line, provenance, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutants"  # .json and .md
# where a run of some mutants (globs) reports: never over the committed full run's file
PARTIAL = ROOT / "mutants" / "partial"
# mutmut's exit codes (mutmut/stats.py): what each means for a mutant
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "killed", -9: "segfault", -11: "segfault", None: "not checked"}  # fmt: skip
COLUMNS = ("killed", "survived", "equivalent", "no tests", "timeout", "not checked", "other")


def config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def module_of(mutant: str) -> str:
    """`lab3.engine.optim.x_lr_factor__mutmut_3` -> `lab3/engine/optim.py`."""
    parts = mutant.split(".")
    for i in range(len(parts), 0, -1):
        path = Path(*parts[:i]).with_suffix(".py")
        if (ROOT / path).is_file():
            return path.as_posix()
    return parts[0]


def outcomes() -> dict[str, int | None]:
    """Every mutant of the last run and its exit code, from mutmut's records."""
    found: dict[str, int | None] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        found.update(json.loads(meta.read_text())["exit_code_by_key"])
    return found


def table(
    codes: dict[str, int | None], equivalent: dict[str, str]
) -> tuple[str, list[str], dict[str, dict[str, int]]]:
    counts: dict[str, Counter] = {}
    left = []
    for mutant, code in sorted(codes.items()):
        status = STATUS.get(code, "other")
        if status == "survived" and mutant in equivalent:
            status = "equivalent"
        elif status == "survived":
            left.append(mutant)
        if status not in COLUMNS:
            status = "other"
        counts.setdefault(module_of(mutant), Counter())[status] += 1
    lines = ["| module | mutants | " + " | ".join(COLUMNS) + " |",
             "|---|" + "---:|" * (len(COLUMNS) + 1)]  # fmt: skip
    total: Counter = Counter()
    for module, count in sorted(counts.items()):
        total.update(count)
        cells = " | ".join(str(count[c]) for c in COLUMNS)
        lines.append(f"| `{module}` | {sum(count.values())} | {cells} |")
    cells = " | ".join(str(total[c]) for c in COLUMNS)
    lines.append(f"| all | {sum(total.values())} | {cells} |")
    per_module = {m: {c: count[c] for c in COLUMNS} for m, count in sorted(counts.items())}
    return "\n".join(lines), left, per_module


def write_mutants(command: str, notes: str = "", out: Path = RESULTS) -> Path:
    settings = config()
    equivalent = settings.get("equivalent", {})
    codes = outcomes()
    if not codes:
        sys.exit("no mutmut records under mutants/: run `make mutants` first")
    text, left, per_module = table(codes, equivalent)
    stale = sorted(set(equivalent) - set(codes))
    parts = [
        f"mutmut {_version()}, {os.cpu_count()} CPU cores; the modules and their tests: "
        "`[tool.mutmut]` in pyproject.toml",
        "",
        text,
        "",
        "killed: a selected test failed; survived: every test passed (a hole, unless listed as "
        "equivalent below); no tests: no selected test runs that function (see pyproject.toml "
        "for which functions of a module are meant to be covered); not checked: outside the "
        "mutants this run was given.",
    ]
    if notes:
        parts += ["", notes.strip()]
    parts += ["", "## Equivalent mutants (they cannot change behaviour)", ""]
    parts += [f"- `{name}`: {reason}" for name, reason in sorted(equivalent.items())] or ["none"]
    if stale:
        parts += ["", "Listed as equivalent but no longer generated (the code moved): "
                  + ", ".join(f"`{s}`" for s in stale)]  # fmt: skip
    parts += ["", "## Survivors left", ""]
    parts += [f"- `{name}`" for name in left] or ["none"]
    document = {"modules": per_module, "survivors": left, "equivalent": equivalent}
    _, md_path = write_results(
        out, provenance(command), document, "Mutation testing (mutmut 3)", "\n".join(parts)
    )
    return md_path


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mutmut")
    except Exception:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", nargs="*", help="globs of mutant names (default: all)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report-only", action="store_true", help="recount the last run")
    parser.add_argument("--notes", default="", help="a paragraph for the results file")
    parser.add_argument("--notes-file", type=Path, help="the same, read from a file")
    parser.add_argument(
        "--out",
        type=Path,
        help="the results path without suffix (default: benchmarks/results/mutants for every "
        "mutant, mutants/partial for globs, so a partial run never replaces the committed file)",
    )
    args = parser.parse_args()
    if args.notes_file is not None:
        args.notes = args.notes_file.read_text()
    command = ["mutmut", "run", "--max-children", str(args.max_children), *args.mutants]
    if not args.report_only:
        mutmut = Path(sys.executable).with_name("mutmut")
        code = subprocess.run([str(mutmut), *command[1:]], cwd=ROOT).returncode
        if code != 0:
            print(f"mutmut ended with exit code {code}", file=sys.stderr)
            return code
    out = args.out or (PARTIAL if args.mutants else RESULTS)
    path = write_mutants(f"{command_line()} (runs: {shlex.join(command)})", args.notes, out)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
