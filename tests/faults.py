"""Tests only: end a training process right after an epoch's checkpoint, as a crash would.

The fit loop knows nothing of this: it calls the hooks in `lab3.engine.loop.AFTER_CHECKPOINT`
after every checkpoint, an empty list in use. A test starts its child process (`lab3 train`,
torchrun and its ranks, `lab3 run` and its kernels) with `fault_env(...)`: it names the fault
and puts `fault_site/` on PYTHONPATH, whose `sitecustomize` adds `inject_faults` to that list
when each Python process of the child starts.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

KILL_HOOK = "LAB3_KILL_AFTER_EPOCH"  # SIGKILL
RAISE_HOOK = "LAB3_RAISE_AFTER_EPOCH"  # an exception (under torchrun: a failing rank)
SITE = Path(__file__).resolve().with_name("fault_site")


def fault_env(hook: str, when: str) -> dict[str, str]:
    """The environment variables of a child process in which `hook` fires `when`: ``EPOCH``,
    ``RUN:EPOCH`` (only in the run folder of that name: a workbook trains several runs in one
    kernel), either optionally followed by ``@RANK`` (rank 0 when no rank is named)."""
    paths = [str(SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {hook: when, "PYTHONPATH": os.pathsep.join(paths)}


def inject_faults(epoch: int, rank: int, run: Path) -> None:
    """End this process right after `epoch`'s checkpoint when a hook asks for it."""
    for hook in (KILL_HOOK, RAISE_HOOK):
        when, _, rank_text = os.environ.get(hook, "").partition("@")
        if when in (str(epoch), f"{run.name}:{epoch}") and int(rank_text or 0) == rank:
            if hook == KILL_HOOK:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"{hook} asked this rank to fail after epoch {epoch}")


def install() -> None:
    """Add `inject_faults` to the fit loop's seam (once)."""
    from lab3.engine import loop

    if inject_faults not in loop.AFTER_CHECKPOINT:
        loop.AFTER_CHECKPOINT.append(inject_faults)
