"""The suite on another stack: run it with the Python of an environment that holds the oldest
versions pyproject.toml admits, and record what passed.

pyproject.toml declares ranges (torch>=2.9, torchvision>=0.24, ...) so that a hosted notebook
keeps its PyTorch; make and CI test the exact versions of constraints.txt. This script is how
the lower end is checked (benchmarks/results/oldest_supported.md):

    python3.11 -m venv venv-old
    venv-old/bin/pip install torch==2.9.1 torchvision==0.24.1
    venv-old/bin/pip install numpy==2.0.2 pandas==2.2.2 matplotlib==3.10.0 \\
        scikit-learn==1.6.1 pillow==11.1.0
    venv-old/bin/pip install -e '.[dev]'    # no -c constraints.txt, as in a hosted notebook
    venv-old/bin/python benchmarks/oldest_supported.py -m "not slow"
    venv-old/bin/python benchmarks/oldest_supported.py --name oldest_supported_precision \\
        tests/test_precision.py

Arguments after the options go to pytest (default: the whole suite).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from lab3.bench.provenance import command_line, provenance, write_results

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "scikit-learn", "pillow")


def versions() -> dict[str, str]:
    """The installed version of each package the ranges bound, and of Python."""
    found = {name: importlib.metadata.version(name) for name in PACKAGES}
    return {"python": platform.python_version(), **found}


def run_pytest(arguments: list[str]) -> tuple[int, str, list[str]]:
    """pytest on the suite in this interpreter: exit code, summary line, failed tests."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if " in " in line), "")
    failed = [line.split()[1] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return done.returncode, summary, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="oldest_supported", help="results file stem")
    args, pytest_args = parser.parse_known_args(argv)
    installed = versions()
    returncode, summary, failed = run_pytest(pytest_args)
    rows = [f"| {name} | {version} |" for name, version in installed.items()]
    body = (
        "The suite run with this environment's Python; pytest's arguments are the command's "
        "after the script name.\n\n| package | version |\n|---|---|\n" + "\n".join(rows)
        + f"\n\npytest: **{summary}** (exit code {returncode})\n"
        + "".join(f"\n- failed: `{test}`" for test in failed)
    )  # fmt: skip
    header = provenance(command_line(__file__, argv), "cpu")
    document = {"versions": installed, "pytest": summary, "exit_code": returncode,
                "failed": failed}  # fmt: skip
    title = f"The suite on torch {installed['torch']} / torchvision {installed['torchvision']}"
    write_results(RESULTS / args.name, header, document, title, body)
    print(body)
    return returncode


if __name__ == "__main__":
    sys.exit(main())
