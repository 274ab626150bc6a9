"""Tests only: end a training process right after an epoch's checkpoint, as a crash would.

The fit loop calls `inject_faults` once per epoch; with neither variable set it does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_HOOK = "LAB3_KILL_AFTER_EPOCH"  # SIGKILL
RAISE_HOOK = "LAB3_RAISE_AFTER_EPOCH"  # an exception (under torchrun: a failing rank)


def inject_faults(epoch: int, rank: int, run_name: str) -> None:
    """Tests only: end this process right after `epoch`'s checkpoint, as a crash would.

    LAB3_KILL_AFTER_EPOCH (SIGKILL) or LAB3_RAISE_AFTER_EPOCH (an exception) hold ``EPOCH``,
    ``RUN:EPOCH`` (only in the run folder of that name: a workbook trains several runs in one
    kernel) and optionally ``@RANK`` (rank 0 when no rank is named).
    """
    for hook in (KILL_HOOK, RAISE_HOOK):
        when, _, rank_text = os.environ.get(hook, "").partition("@")
        if when in (str(epoch), f"{run_name}:{epoch}") and int(rank_text or 0) == rank:
            if hook == KILL_HOOK:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"{hook} asked this rank to fail after epoch {epoch}")
