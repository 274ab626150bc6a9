"""`lab3 run`: execute the whole workbook headlessly with papermill, one run folder per call.

The notebooks run in order: 01, 02, 03, then 04 once per model (`04_train_<model>.ipynb`), then
05. Each receives the same parameters (the data folder and the run folder as absolute paths, the
profile, the models as one comma string, the device, the split mode; 04 also its `model`), so
every file a run writes lands in one place::

    outputs/<timestamp>/notebooks/     the executed notebooks (what `lab3 report` reads)
                        runs/<model>/  training run folders (history, checkpoints)
                        figures/       every figure as PNG
                        submissions/   the Kaggle CSVs
                        ablation/      the preprocessing ablation's short runs

While a notebook that trains runs, every line its kernel prints reaches the terminal at once
(notebook 04 prints one per epoch, 02 one per ablation epoch and run). `workbook.json` records
the run's parameters before the first notebook and each notebook as it finishes, so
`lab3 run --resume RUN` continues a run that failed, was interrupted or was killed: finished
notebooks are kept, the rest run again, and training resumes from each depth's last.pt. A
failing notebook stops the run with one line naming the notebook, the cell and the error; the
partly executed notebook stays in the run folder (papermill saves it after every cell). Only
`outputs/latest` is maintained as a link, and only for runs in outputs/.

`lab3.workbook.folders` gives the notebooks this layout and reads the record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lab3.config import COURSE_MODELS, DEFAULT_PROFILE, check_profile, make_config, parse_models
from lab3.data.layouts import DEFAULT_DATA, DEFAULT_SPLIT_MODE
from lab3.errors import UserError
from lab3.fileio import write_json_atomic
from lab3.workbook.cpu_time import CpuTimes, weighted_share
from lab3.workbook.folders import RECORD, read_record
from lab3.workbook.notebook_exec import NotebookProgress, check_kernel, execute_notebook, kernel_of

if TYPE_CHECKING:
    from lab3.workbook.estimate import Estimate

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_OUTPUTS = Path("outputs")
LATEST = "latest"
NOTEBOOKS = (
    "01_data_exploration",
    "02_preprocessing_experiments",
    "03_resnet_definitions",
    "04_train",
    "05_evaluation_and_report",
)
TRAIN_NOTEBOOK = "04_train"  # executed once per depth
# The notebooks that train: their kernels' lines (epochs, ablation runs) are shown as they come.
TRAINING_NOTEBOOKS = frozenset({"02_preprocessing_experiments", TRAIN_NOTEBOOK})
# The notebook that reads no data, and so takes no split_mode.
NO_DATA_NOTEBOOKS = frozenset({"03_resnet_definitions"})
# A notebook that lost this share of the CPU time to other virtual machines says so.
STEAL_NOTICE = 0.1
KERNEL_LOG = "kernels.log"  # the kernels' own stderr (start-up warnings), in the run folder


@dataclass(frozen=True)
class NotebookRun:
    """One notebook execution: which source notebook, the output name, its parameters."""

    source: str
    output: str
    parameters: dict[str, Any] = field(default_factory=dict)


def plan(
    data: Path,
    run_dir: Path,
    profile: str,
    models: Sequence[str],
    device: str = "auto",
    nproc: int = 1,
    pretrained: bool = False,
    split_mode: str = DEFAULT_SPLIT_MODE,
) -> list[NotebookRun]:
    """The notebook executions of one run, in order; 04 trains with `nproc` processes, and 04 and
    05 learn whether each depth is also trained from ImageNet weights (`pretrained`). Every
    notebook that reads the data gets `split_mode`, so all split a C-NMC folder the same way."""
    steps = []
    for name in NOTEBOOKS:
        common = {
            "data_dir": str(data),
            "run_dir": str(run_dir),
            "profile": profile,
            "models": ",".join(models),
            "device": device,
            **({} if name in NO_DATA_NOTEBOOKS else {"split_mode": split_mode}),
        }
        if name == TRAIN_NOTEBOOK:
            for model in models:
                params = {**common, "model": model, "nproc": nproc, "pretrained": pretrained}
                steps.append(NotebookRun(name, f"{name}_{model}.ipynb", params))
        elif name == NOTEBOOKS[-1]:
            steps.append(NotebookRun(name, f"{name}.ipynb", {**common, "pretrained": pretrained}))
        else:
            steps.append(NotebookRun(name, f"{name}.ipynb", dict(common)))
    return steps


def _check_arguments(profile: str, models: str | Sequence[str]) -> list[str]:
    check_profile(profile)
    return parse_models(models)


def new_run_folder(out: str | Path | None) -> Path:
    """A fresh, empty run folder; an existing run is never written into."""
    if out is not None:
        run = Path(out).expanduser()
        if run.exists() and (not run.is_dir() or any(run.iterdir())):
            raise UserError(
                "run folder already exists; runs are never overwritten, choose another --out", run
            )
        run.mkdir(parents=True, exist_ok=True)
        return run.resolve()
    DEFAULT_OUTPUTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 100):
        run = DEFAULT_OUTPUTS / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            run.mkdir()
        except FileExistsError:
            continue
        return run.resolve()
    raise UserError("could not create a new run folder", DEFAULT_OUTPUTS)


def point_latest(run: Path) -> Path | None:
    """Point `outputs/latest` at `run`, atomically (a temporary link renamed over the old one).

    Only for runs in outputs/: nothing is written beside a folder the user named with --out.
    """
    if run.parent != DEFAULT_OUTPUTS.resolve():
        return None
    link = run.parent / LATEST
    if link.exists() and not link.is_symlink():
        print(f"workbook: {link} is not a symlink; left as it is", file=sys.stderr)
        return None
    tmp = run.parent / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run.name, tmp)
    os.replace(tmp, link)
    return link


def _sources(notebooks_dir: str | Path | None) -> dict[str, Path]:
    """The workbook's notebooks: the repository's notebooks/, or ./notebooks when lab3 is not
    installed from a checkout."""
    if notebooks_dir is None:
        notebooks_dir = NOTEBOOKS_DIR if NOTEBOOKS_DIR.is_dir() else Path("notebooks")
    sources = {name: Path(notebooks_dir) / f"{name}.ipynb" for name in NOTEBOOKS}
    missing = [p for p in sources.values() if not p.is_file()]
    if missing:
        raise UserError("workbook notebook not found; restore it from git", missing[0])
    return sources


def _kernel(kernel_name: str | None, sources: dict[str, Path]) -> str:
    """The kernel to run the notebooks in (theirs by default), checked before anything starts."""
    kernel = kernel_name or kernel_of(sources[NOTEBOOKS[0]])
    check_kernel(kernel)
    return kernel


@contextlib.contextmanager
def exclusive(run: Path) -> Iterator[None]:
    """One `lab3 run` at a time per run folder. The lock is an flock on the folder, which the
    operating system drops when its holder dies, even by SIGKILL, so no stale lock remains."""
    fd = os.open(run, os.O_RDONLY)  # not inherited by the kernels
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                "another `lab3 run` is working in this run folder; wait for it to end", run
            ) from None
        yield
    finally:
        os.close(fd)


def run_workbook(
    data: str | Path = DEFAULT_DATA,
    profile: str = DEFAULT_PROFILE,
    models: str | Sequence[str] = COURSE_MODELS,
    out: str | Path | None = None,
    notebooks_dir: str | Path | None = None,
    kernel_name: str | None = None,
    device: str = "auto",
    nproc: int = 1,
    stream: TextIO | None = None,
    pretrained: bool = False,
    split_mode: str = DEFAULT_SPLIT_MODE,
) -> Path:
    """Execute every notebook of the workbook into a new run folder; returns the folder.

    `split_mode` splits a layout without a split of its own (C-NMC's folds): `subject` keeps
    each patient's cells in one split, where the course's per-image split flatters accuracy.

    `pretrained` (outside the course's rules, off by default) also trains each depth from
    ImageNet weights; those weights are fetched (or found missing) before the run folder exists.

    Everything a user can get wrong (profile, models, the data folder's layout, the kernel) is
    checked before the run folder exists. `kernel_name` defaults to the notebooks' own
    kernelspec (python3, which jupyter_client starts with this interpreter).
    """
    from lab3.engine.data import check_trainable

    models = _check_arguments(profile, models)
    sources = _sources(notebooks_dir)
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, not {nproc}")
    # a bad data folder (unknown layout, one class, fewer images than a batch) fails here, in
    # seconds, with each depth's settings as notebook 04 will make them
    for model in models:
        config = make_config(profile, model=model, data=str(data), split_mode=split_mode)
        layout = check_trainable(config, nproc)
    data_dir = layout.root
    kernel = _kernel(kernel_name, sources)
    if pretrained:
        from lab3.models.pretrained import fetch_imagenet_weights

        for model in models:  # offline without the file: one line, no run folder
            fetch_imagenet_weights(model)
    run = new_run_folder(out)
    record: dict[str, Any] = {
        "data": str(data_dir),
        "profile": profile,
        "models": list(models),
        "device": device,
        "nproc": nproc,
        "pretrained": bool(pretrained),
        "split_mode": split_mode,
        "started": _now(),
        "notebooks": [],
    }
    write_json_atomic(run / RECORD, record)  # from here on, `lab3 run --resume` can continue it
    return _execute(run, record, sources, kernel, stream or sys.stdout)


def resume_workbook(
    run_dir: str | Path,
    notebooks_dir: str | Path | None = None,
    kernel_name: str | None = None,
    stream: TextIO | None = None,
) -> Path:
    """Continue an interrupted or killed run with its own parameters (from workbook.json):
    the notebooks that finished are kept, the rest run, and training continues from last.pt."""
    from lab3.data.layouts import load_layout

    stream = stream or sys.stdout
    run = Path(run_dir).expanduser()
    record = read_record(run)
    if "finished" in record:
        stream.write(f"workbook: {run} finished at {record['finished']}; nothing to resume\n")
        return run.resolve()
    if record.get("interactive"):  # `lab3 lab`'s folder: the student's notebooks, not ours
        raise UserError(
            "a JupyterLab folder (lab3 lab): run its notebooks in JupyterLab (make lab), or "
            "start a batch run with lab3 run",
            run,
        )
    _check_arguments(record["profile"], record["models"])
    sources = _sources(notebooks_dir)
    if not Path(record["data"]).is_dir():
        raise UserError(
            "the data folder this run was started on is gone; restore it", record["data"]
        )
    load_layout(record["data"])
    kernel = _kernel(kernel_name, sources)
    record.setdefault("resumed", []).append(_now())
    return _execute(run.resolve(), record, sources, kernel, stream)


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _execute(
    run: Path, record: dict[str, Any], sources: dict[str, Path], kernel: str, stream: TextIO
) -> Path:
    """Run the notebooks the record does not list as finished, recording each as it ends."""
    steps = plan(
        Path(record["data"]),
        run,
        record["profile"],
        record["models"],
        record["device"],
        record.get("nproc", 1),
        bool(record.get("pretrained", False)),
        _split_mode(record),
    )
    executed = run / "notebooks"
    done = {
        entry["notebook"]: entry
        for entry in record["notebooks"]
        if (executed / entry["notebook"]).is_file()
    }
    record.pop("failed", None)
    verb = "resuming" if record.get("resumed") else "running"
    from lab3.workbook.live import batch_kernels  # matplotlib: only once a run starts

    with exclusive(run), batch_kernels():  # epoch lines in the kernels, no live figures
        for folder in (executed, run / "figures", run / "runs", run / "submissions"):
            folder.mkdir(parents=True, exist_ok=True)
        stream.write(
            f"workbook: {verb} {run} ({record['profile']} profile, "
            f"{', '.join(record['models'])}, data {record['data']})\n"
        )
        estimate = _estimate(record, [s.output for s in steps if s.output not in done], stream)
        if estimate is not None:  # kept beside the times, to see how far it was off
            record.setdefault("estimates", []).append(
                {
                    "made": _now(),
                    "seconds": {k: round(v, 1) for k, v in estimate.planned.items()},
                    "prices": {m: dataclasses.asdict(p) for m, p in estimate.prices.items()},
                }
            )
            write_json_atomic(run / RECORD, record)
        width = max(len(s.output) for s in steps)
        for index, step in enumerate(steps, start=1):
            prefix = f"[{index}/{len(steps)}] {step.output:<{width}}"
            if step.output in done:
                stream.write(f"{prefix}  finished earlier, kept\n")
                continue
            cpu_before = CpuTimes.now()
            try:
                seconds = _execute_step(step, sources[step.source], run, kernel, prefix, stream)
            except UserError:
                record["failed"] = step.output
                write_json_atomic(run / RECORD, record)
                raise
            shares = _cpu_shares(cpu_before)
            if shares.get("cpu_steal", 0.0) >= STEAL_NOTICE:
                stream.write(steal_line(step.output, shares["cpu_steal"]) + "\n")
            if estimate is not None:
                estimate.finished(step.output.removesuffix(".ipynb"), seconds)
                stream.write(estimate.progress_line() + "\n")
            done[step.output] = {"notebook": step.output, "seconds": round(seconds, 1), **shares}
            record["notebooks"] = [done[s.output] for s in steps if s.output in done]
            write_json_atomic(run / RECORD, record)
        record["seconds"] = round(sum(entry["seconds"] for entry in record["notebooks"]), 1)
        record["finished"] = _now()
        write_json_atomic(run / RECORD, record)
    link = point_latest(run)
    steal = weighted_share(record["notebooks"], "cpu_steal") or 0.0
    stolen = f" ({steal:.0%} of it waiting for a shared CPU)" if steal >= STEAL_NOTICE else ""
    stream.write(
        f"workbook: done, {record['seconds'] / 60:.1f} min of notebooks{stolen}; "
        f"report: lab3 report --run {link if link is not None else run}\n"
    )
    stream.flush()
    return run


def _split_mode(record: dict[str, Any]) -> str:
    """The run's split mode; runs recorded before the workbook took one split per image."""
    return str(record.get("split_mode", "stratified"))


def _cpu_shares(before: CpuTimes | None) -> dict[str, float]:
    """The machine's busy and stolen CPU shares since `before`; empty where they are unknown."""
    after = CpuTimes.now()
    if before is None or after is None:
        return {}
    return after.shares_since(before) or {}


def steal_line(output: str, steal: float) -> str:
    """Says that a notebook ran slower than this CPU can, and why: a shared virtual machine."""
    return (
        f"workbook: {output.removesuffix('.ipynb')} waited for the CPU {steal:.0%} of its time "
        "(steal: the hypervisor gave it to other virtual machines), so it took about that much "
        "longer than this CPU needs"
    )


def _estimate(record: dict[str, Any], outputs: list[str], stream: TextIO) -> Estimate | None:
    """The time the notebooks still to run will take, printed before they start; a run goes on
    without it where it cannot be made (one line says why)."""
    from lab3.data.layouts import load_layout
    from lab3.workbook.estimate import estimate_run

    if not outputs:
        return None
    try:
        estimate = estimate_run(
            load_layout(record["data"], split_mode=_split_mode(record)),
            record["profile"],
            record["models"],
            outputs,
            device=record["device"],
            processes=record.get("nproc", 1),
            pretrained=bool(record.get("pretrained", False)),
        )
    except Exception as err:  # an estimate is a courtesy: it never stops the run
        stream.write(f"workbook: no time estimate ({type(err).__name__}: {err})\n")
        return None
    stream.write(estimate.opening_line() + "\n")
    stream.flush()
    return estimate


def _execute_step(
    step: NotebookRun, source: Path, run: Path, kernel: str, prefix: str, stream: TextIO
) -> float:
    """One notebook, its kernel's lines echoed live; a failure or an interruption says how to
    continue the run."""
    output = run / "notebooks" / step.output
    progress = NotebookProgress(prefix, stream, echo=step.source in TRAINING_NOTEBOOKS)
    hint = f"continue with: lab3 run --resume {run}"
    try:
        return execute_notebook(source, output, step.parameters, kernel, progress, run / KERNEL_LOG)
    except KeyboardInterrupt:
        stream.write(f"workbook: the partly executed notebook is kept at {output}; {hint}\n")
        raise
    except UserError as err:
        raise UserError(f"{err}; once fixed, {hint}") from None
