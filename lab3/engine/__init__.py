"""Training and evaluation: the fit loop (`loop`), a run's folder (`run_folder`), optimizer,
schedule and EMA (`optim`), checkpoints, resuming, several processes, predictions.

`lab3.engine.fit` is `lab3.engine.loop.fit`, imported when first asked for.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "fit":
        from lab3.engine.loop import fit

        return fit
    raise AttributeError(f"module 'lab3.engine' has no attribute {name!r}")
