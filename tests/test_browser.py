"""The JupyterLab path in a real browser: `lab3 lab` serves the student's copies of the
notebooks, Debian's chromium (driven by Playwright, pointed at the system browser; nothing
downloads one) opens each notebook in order, Run > Run All Cells, and the saved notebooks must
show every code cell run, no error and their figures; then `lab3 report` turns that run into the
PDF. JupyterLab draws only the cells on screen, so the checks read the notebooks it saved.

Without chromium or Playwright the test skips and says why; in CI (CI=true) it fails instead.
A screenshot per notebook is kept in the test's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from lab3.workbook.runner import NOTEBOOKS

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI and containers run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "lab3-browser-test"
NOTEBOOK_TIMEOUT_S = 420  # one notebook's Run All Cells on 2 busy cores, with room to spare
# the figures each notebook must show at least (image/png outputs in the saved notebook)
MIN_FIGURES = {
    "01_data_exploration": 3,
    "02_preprocessing_experiments": 3,
    "03_resnet_definitions": 0,
    "04_train": 4,  # the live curves, accuracy, loss, learning rate
    "05_evaluation_and_report": 4,
}


@pytest.fixture
def chromium() -> str:
    """The system's chromium, or a skip (a failure in CI) saying what is missing."""
    found = os.environ.get("LAB3_CHROMIUM") or next(
        filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser"))), None
    )
    missing = None
    if found is None:
        missing = "no chromium on PATH (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test must run in CI: {missing}")
        pytest.skip(missing)
    return str(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(port: int, path: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/{path}?token={TOKEN}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def jupyterlab(chromium: str, small_synthetic: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`lab3 lab` on the tiny dataset and profile, headless on a free loopback port."""
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "jupyter-workspaces"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "jupyterlab-settings"),
    }
    news = tmp_path / "jupyterlab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "official Jupyter news?" toast over the screenshots
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false"})
    )
    env.pop("LAB3_BATCH", None)  # the kernels are the student's, not those of `lab3 run`
    command = [sys.executable, "-m", "lab3", "lab", "--data", str(small_synthetic)]
    command += ["--profile", "tiny", "--models", "resnet18", "--run", "lab", "--"]
    command += ["--no-browser", f"--port={port}", "--ip=127.0.0.1"]
    command += [f"--IdentityProvider.token={TOKEN}", "--ServerApp.open_browser=False"]
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _api(port, "status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "JupyterLab did not start: " + (tmp_path / "jupyterlab.log").read_text()
                    )
                time.sleep(1)
        yield port, tmp_path / "lab"
    finally:
        server.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"{output.ename}: {output.evalue}"
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]


def _finished(path: Path) -> nbformat.NotebookNode | None:
    """The saved notebook once every code cell has its count (a cell gets it when it ends; the
    copy starts with none), or at once when it shows an error (Run All stops there)."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    done = all(c.get("execution_count") is not None for c in code)
    return nb if done or _errors(nb) else None


def _run_all_cells(page: Any, port: int, path: Path, shots: Path) -> nbformat.NotebookNode:
    """Open the notebook, Run > Run All Cells as a student does, wait for the kernel, save."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"http://127.0.0.1:{port}/lab/tree/lab/notebooks/{path.name}?token={TOKEN}")
    page.locator(".jp-Notebook").filter(visible=True).first.wait_for(timeout=120_000)
    deadline = time.monotonic() + 120
    while not _api(port, "sessions") and time.monotonic() < deadline:
        time.sleep(1)  # the kernel of this notebook starts
    _menu(page, "Run", "Run All Cells")
    # save every few seconds, as a student would, and read what JupyterLab wrote
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S
    nb = None
    while nb is None and time.monotonic() < deadline:
        time.sleep(5)
        page.keyboard.press("Control+s")
        time.sleep(1)
        nb = _finished(path)
    page.screenshot(path=str(shots / f"{path.stem}.png"), full_page=True)
    assert nb is not None, f"{path.name}: not finished after {NOTEBOOK_TIMEOUT_S} s ({shots})"
    # close the notebook and its kernel: the next notebook starts its own, as a student's does
    _menu(page, "File", "Close All Tabs")
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(PlaywrightTimeout):  # "save before closing?" only when unsaved
        dialog.wait_for(timeout=2000)
        dialog.get_by_role("button", name="Save").click()
    for session in _api(port, "sessions"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/sessions/{session['id']}?token={TOKEN}",
            method="DELETE",
        )
        urllib.request.urlopen(request, timeout=30).close()
    return nb


def _menu(page: Any, menu: str, item: str) -> None:
    """Choose `item` in the menu bar's `menu`, as a student does with the mouse."""
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def _figures(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def test_every_notebook_runs_in_jupyterlab_and_the_run_becomes_the_report(
    chromium: str, jupyterlab: tuple[int, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    port, run = jupyterlab
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name in NOTEBOOKS:
            nb = _run_all_cells(page, port, run / "notebooks" / f"{name}.ipynb", shots)
            assert not _errors(nb), f"{name}: {_errors(nb)[0]}"
            assert _figures(nb) >= MIN_FIGURES[name], f"{name}: {_figures(nb)} figures"
            assert (shots / f"{name}.png").stat().st_size > 10_000
        browser.close()
    widgets = "application/vnd.jupyter.widget-view+json"
    train = nbformat.read(run / "notebooks" / "04_train.ipynb", as_version=4)
    outputs = [o for c in train.cells if "train_depths" in c.source for o in c.outputs]
    assert any(widgets in o.get("data", {}) for o in outputs), "no progress bar widget"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no live curves"
    report = subprocess.run(
        [sys.executable, "-m", "lab3", "report", "--run", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.returncode == 0, report.stderr
    assert (run / "report.pdf").stat().st_size > 50_000
    text = (run / "report.html").read_text(encoding="utf-8")
    for heading in ("1 Introduction", "3 Data preprocessing", "4 Experimental results"):
        assert heading in text
