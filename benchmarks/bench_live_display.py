"""What notebook 04's live display costs in training time: seconds per epoch of ResNet18 on the
default set with the display (a progress bar over each epoch's steps, the accuracy and loss
curves drawn and rendered to a retina PNG after every epoch, as the inline backend does) and
without it (epoch lines only, as under `lab3 run`).

    python benchmarks/bench_live_display.py --data data/synthetic --name live_display_cpu

The two ways alternate in one process (plain, live, plain, live, ...), each a fresh run of
`--epochs` epochs; an epoch is timed from one epoch's end to the next (the first epoch, which
includes building the model, is left out), so the live way's time includes its drawing.
Writes ``benchmarks/results/<name>.{json,md}`` with its provenance.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_results import markdown  # noqa: E402

from lab3 import plots  # noqa: E402
from lab3.bench.provenance import command_line, config_execution, provenance, write_results  # noqa: E402
from lab3.config import make_config  # noqa: E402
from lab3.engine.loop import fit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class EpochClock:
    """The `on_epoch` callback: the time of each epoch's end, and with `draw` the live curves
    drawn and rendered as the notebook's inline backend renders them (retina PNG)."""

    def __init__(self, model: str, draw: bool) -> None:
        self.model, self.draw = model, draw
        self.ends: list[float] = []
        self.draw_seconds: list[float] = []

    def __call__(self, history: list[dict[str, Any]], epochs: int) -> None:
        self.ends.append(time.perf_counter())
        if self.draw:
            started = time.perf_counter()
            fig = plots.plot_live_curves(pd.DataFrame(history), self.model, epochs)
            fig.savefig(io.BytesIO(), format="png", dpi=2 * plots.DPI, bbox_inches="tight")
            plt.close(fig)
            self.draw_seconds.append(time.perf_counter() - started)

    def epoch_seconds(self) -> list[float]:
        return [later - earlier for earlier, later in zip(self.ends, self.ends[1:], strict=False)]


def one_run(data: Path, epochs: int, live: bool) -> EpochClock:
    config = make_config(
        "quick", model="resnet18", data=str(data), epochs=epochs, min_steps=0, device="cpu"
    )
    clock = EpochClock(config.model, draw=live)
    with tempfile.TemporaryDirectory() as folder, open(os.devnull, "w") as sink:
        config.out = str(Path(folder) / "run")
        with contextlib.redirect_stderr(sink):  # the bar: drawn, not shown
            fit(config, progress=live, on_epoch=clock)
    return clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/synthetic", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each way, alternating")
    parser.add_argument("--name", default="live_display_cpu")
    parser.add_argument("--note", default="", help="a sentence on the conditions of the run")
    args = parser.parse_args(argv)
    seconds: dict[str, list[float]] = {"plain": [], "live": []}
    drawing: list[float] = []
    for round_ in range(args.rounds):
        for way in ("plain", "live"):
            clock = one_run(args.data, args.epochs, live=way == "live")
            seconds[way] += clock.epoch_seconds()
            drawing += clock.draw_seconds
            print(f"round {round_ + 1} {way}: {[round(s, 2) for s in clock.epoch_seconds()]}")
    plain, live = (statistics.median(seconds[w]) for w in ("plain", "live"))
    rows = [
        {
            "way": way,
            "epochs timed": len(seconds[way]),
            "median s/epoch": f"{statistics.median(seconds[way]):.2f}",
            "min s/epoch": f"{min(seconds[way]):.2f}",
            "max s/epoch": f"{max(seconds[way]):.2f}",
        }
        for way in ("plain", "live")
    ]
    draw = statistics.median(drawing)
    summary = (
        f"Live over plain, median epoch: {live / plain:.3f}x ({live - plain:+.2f} s); drawing "
        f"and rendering the curves alone: {draw:.2f} s per epoch (median of {len(drawing)})."
    )
    print(markdown(rows) + "\n\n" + summary)
    config = make_config("quick", model="resnet18", device="cpu")
    header = provenance(command_line(), "cpu", config_execution(config))
    body = "\n\n".join(filter(None, [args.note, markdown(rows), summary]))
    document = {"seconds": seconds, "draw_seconds": drawing, "ratio": live / plain}
    paths = write_results(
        RESULTS / args.name, header, document, "Notebook 04's live display: training time", body
    )
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
