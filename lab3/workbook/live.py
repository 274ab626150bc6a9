"""Training watched from a notebook: the accuracy and loss curves of the depth being trained,
redrawn in one output after every epoch, and a progress bar inside each epoch.

Only where a person watches: in a JupyterLab kernel. Under `lab3 run` (papermill; the runner
sets `BATCH_ENV` for its kernels) and outside IPython training prints its epoch lines alone, so
the executed notebooks and the logs hold text, not one redrawn figure per epoch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from lab3 import plots

BATCH_ENV = "LAB3_BATCH"  # "1" in the kernels `lab3 run` starts


@contextlib.contextmanager
def batch_kernels() -> Iterator[None]:
    """Mark the kernels started inside this block as batch ones (`lab3 run`): they inherit the
    environment, and `interactive` then answers False in them."""
    saved = os.environ.get(BATCH_ENV)
    os.environ[BATCH_ENV] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(BATCH_ENV, None)
        else:
            os.environ[BATCH_ENV] = saved


def interactive() -> bool:
    """Whether this code runs in a Jupyter kernel a person drives (not papermill, not a script)."""
    if os.environ.get(BATCH_ENV) == "1":
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LiveCurves:
    """The `on_epoch` callback of `lab3.engine.loop.fit`: one figure per depth, updated in place
    (an IPython display handle) rather than a new figure per epoch below the last."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.handle: Any = None

    def __call__(self, history: list[dict[str, Any]], epochs: int) -> None:
        from IPython.display import display

        fig = plots.plot_live_curves(pd.DataFrame(history), self.model, epochs)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)  # shown through the handle; the inline backend must not show it again
