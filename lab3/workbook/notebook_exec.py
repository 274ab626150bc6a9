"""One notebook in a Jupyter kernel through papermill, as `lab3 run` needs it: the kernel
checked before anything starts, its stderr kept in a log, every line it prints echoed to the
terminal as it arrives, and a failure told in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from lab3.errors import UserError


def check_kernel(name: str) -> None:
    """Fail early, and clearly, when the kernel would not run this project's Python with lab3."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    install = f"{sys.executable} -m ipykernel install --sys-prefix --name {name}"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise UserError(
            f"no Jupyter kernel named {name!r}; install this project's: {install}"
        ) from None
    executable = spec.argv[0] if spec.argv else ""
    # jupyter_client starts a spec whose argv begins with plain "python" with sys.executable.
    if executable in {"python", "python3", f"python3.{sys.version_info.minor}"}:
        return
    if Path(executable) == Path(sys.executable):
        return
    probe = subprocess.run(
        [executable, "-c", "import lab3, ipykernel"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0:
        raise UserError(
            f"the Jupyter kernel {name!r} starts {executable}, which cannot import lab3; "
            f"install this project's kernel ({install}) or remove {spec.resource_dir}"
        )


def kernel_of(notebook: Path) -> str:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return str(nb.metadata.get("kernelspec", {}).get("name") or "python3")


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr, and so that of the kernels it starts, to a log file.

    Kernels print start-up warnings (e.g. about unencrypted local TCP) straight to the inherited
    stderr; they would break the progress lines, and the log keeps them for inspection.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(source: str) -> str:
    lines = [ln.strip() for ln in source.splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= 60 else line[:57] + "..."


def _failure(output: Path, err: BaseException) -> UserError:
    """One line a reader can act on: notebook, cell, error, where the partial notebook is."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        evalue = " ".join(str(err.evalue).split())
        if len(evalue) > 300:
            evalue = evalue[:297] + "..."
        where = f"cell {err.cell_index + 1} (In [{err.exec_count}]: {_first_line(err.source)})"
        what = f"{err.ename}: {evalue}" if evalue else err.ename
    else:
        where = "kernel"
        what = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
    return UserError(
        f"notebook {output.name} failed in {where}: {what}; "
        f"the partly executed notebook is kept at {output}"
    )


class NotebookProgress:
    """What the terminal shows of one notebook: its name when it starts, with `echo` every line
    its kernel prints (an epoch of notebook 04, an ablation run of 02) as it arrives, and its
    time at the end. Without `echo` (a notebook that prints content, not progress: 03's block
    structures) the printed lines stay in the notebook only.

    papermill hands the kernel's stdout to `write` (as its `stdout_file`) message by message.
    Only whole lines are echoed, each from its last carriage return on, so a progress bar the
    kernel redraws leaves one final line, and a log file gets no carriage-return noise.
    """

    INDENT = "      "
    ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

    def __init__(self, prefix: str, stream: TextIO, echo: bool = True):
        self.prefix = prefix
        self.stream = stream
        self.echo = echo
        self.pending = ""
        self.lines = 0
        self._print(prefix, end="")

    def _print(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()

    def write(self, text: str) -> int:
        self.pending += text
        *complete, self.pending = self.pending.split("\n")
        for line in complete:
            self._echo(line)
        return len(text)

    def flush(self) -> None:
        pass

    def _echo(self, raw: str) -> None:
        line = self.ANSI.sub("", raw.rsplit("\r", 1)[-1]).rstrip()
        if self.echo and line.strip():
            self._print(("" if self.lines else "\n") + self.INDENT + line)
            self.lines += 1

    def end(self, outcome: str) -> None:
        """The closing word; after echoed lines the notebook is named again, so it reads alone."""
        self._echo(self.pending)
        self.pending = ""
        self._print(f"{self.prefix if self.lines else ''}  {outcome}")


def execute_notebook(
    source: Path,
    output: Path,
    parameters: dict[str, Any],
    kernel: str,
    progress: NotebookProgress,
    kernel_log: Path,
) -> float:
    """Execute `source` into `output` (saved after every cell), echoing the kernel's lines
    through `progress`; returns the seconds it took, or raises one UserError line."""
    import papermill

    started = time.perf_counter()
    try:
        with stderr_to(kernel_log):
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters=parameters,
                kernel_name=kernel,
                cwd=str(output.parent),
                progress_bar=False,
                log_output=False,
                stdout_file=progress,
                request_save_on_cell_execute=True,
            )
    except KeyboardInterrupt:
        progress.end("interrupted")
        raise
    except Exception as err:  # papermill, nbclient and jupyter_client raise many types
        progress.end(f"{time.perf_counter() - started:7.1f} s  FAILED")
        raise _failure(output, err) from None
    seconds = time.perf_counter() - started
    progress.end(f"{seconds:7.1f} s  ok")
    return seconds
