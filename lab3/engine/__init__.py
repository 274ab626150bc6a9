"""Training and evaluation: a run's life and files (`run_folder`: new / resume / finished /
refused, one rule set), what a checkpoint holds (`checkpoint`), the fit loop (`loop`), the one
training step (`step`) and the count of its steps (`plan`) that the estimate and the bench use
too, optimizer, schedule and EMA (`optim`), several processes, predictions.

`lab3.engine.fit` is `lab3.engine.loop.fit`, imported when first asked for.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "fit":
        from lab3.engine.loop import fit

        return fit
    raise AttributeError(f"module 'lab3.engine' has no attribute {name!r}")
