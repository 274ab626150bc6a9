"""How a results file was made, written at its head: every benchmark script writes through here,
so no file in benchmarks/results/ can lack the command, date, commit, machine and versions."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lab3.bench.machine import cpu_name
from lab3.fileio import write_text_atomic

# The fields every results file records, in the order its markdown lists them.
FIELDS = (
    "command",
    "date",
    "commit",
    "machine",
    "torch",
    "python",
    "os",
    "bf16",
    "compile",
    "channels_last",
)
NOT_RECORDED = "not recorded"
EXECUTION = ("bf16", "compile", "channels_last")  # the fields a run's settings decide
REPO = Path(__file__).resolve().parents[2]


def commit() -> str:
    """The checkout's commit, with `+changes` when its tracked files differ from it."""
    try:
        head = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return NOT_RECORDED
    return head + ("+changes" if dirty else "")


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return out.stdout.strip()


def machine(device: str = "cpu") -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return cpu_name(torch.get_num_threads())


def provenance(
    command: str, device: str = "cpu", execution: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The header of a results file made now by `command`; `execution` holds whether bf16,
    torch.compile and channels_last were on (a `TrainConfig.execution()`, `config_execution`,
    `execution_summary`, or a note such as "per row" when the file compares them)."""
    execution = execution or {}
    return {
        "command": command,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        **{k: str(execution.get(k, NOT_RECORDED)) for k in EXECUTION},
    }


def config_execution(config: Any) -> dict[str, bool]:
    """Whether a `TrainConfig` runs with bf16 autocast, torch.compile and channels_last on this
    machine (what its "auto" settings resolve to here; fp16 on an older GPU is not bf16)."""
    return {
        "bf16": config.precision() == "bf16",
        "compile": config.use_compile(),
        "channels_last": config.use_channels_last(),
    }


def execution_summary(
    by_item: Mapping[str, Mapping[str, Any]], item: str = "row"
) -> dict[str, str]:
    """One value per execution field for a file whose rows (models, checkpoints) may have run
    differently: the common value, or "per row: a True, b False" where they differ."""
    summary = {}
    for field in EXECUTION:
        values = {name: str(ex.get(field, NOT_RECORDED)) for name, ex in by_item.items()}
        distinct = set(values.values())
        if not values:
            summary[field] = NOT_RECORDED
        elif len(distinct) == 1:
            summary[field] = distinct.pop()
        else:
            summary[field] = f"per {item}: " + ", ".join(f"{k} {v}" for k, v in values.items())
    return summary


def header_markdown(header: dict[str, str]) -> str:
    """The provenance as the bullet list that opens a results file's markdown."""
    lines = ["How this file was made:", ""]
    lines += [f"- {name}: {_code(str(header[name]))}" for name in FIELDS]
    return "\n".join(lines) + "\n"


def _code(value: str) -> str:
    """`value` as inline code, fenced with enough backticks for the ones inside it."""
    if "`" not in value:
        return f"`{value}`"
    return f"`` {value} ``"


def write_results(
    stem: Path, header: dict[str, str], document: dict[str, Any], title: str, body: str
) -> tuple[Path, Path]:
    """`stem`.json (the provenance under "provenance", then the document) and `stem`.md (the
    title, the provenance, then `body`), both written atomically."""
    missing = [name for name in FIELDS if not str(header.get(name) or "").strip()]
    if missing:
        raise ValueError(f"provenance lacks {', '.join(missing)}")
    json_path, md_path = result_paths(stem)
    payload = {"provenance": header, **document}
    write_text_atomic(json_path, json.dumps(payload, indent=1, default=str) + "\n")
    write_text_atomic(md_path, f"# {title}\n\n{header_markdown(header)}\n{body.strip()}\n")
    return json_path, md_path


def result_paths(stem: str | Path) -> tuple[Path, Path]:
    """The .json and .md a stem names; a stem given with either suffix names the same pair, and
    a dot inside the name ("synthetic_v1.5") is kept."""
    stem = Path(stem)
    if stem.suffix in (".json", ".md"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")


def command_line(
    script: str | Path | None = None,
    argv: Sequence[str] | None = None,
    env: Sequence[str] = (),
) -> str:
    """How the running script was called, as a user would type it: `script` (default the
    running one) relative to the repository, `argv` (default the process's arguments), and
    the environment variables named in `env` that are set."""
    script = Path(script if script is not None else sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    args = list(sys.argv[1:] if argv is None else argv)
    variables = [f"{name}={os.environ[name]}" for name in env if name in os.environ]
    return shlex.join([*variables, "python", script.as_posix(), *args])
