"""The lab report, assembled from the executed notebooks of one workbook run.

Nothing in the report is typed by hand: notebook cells that belong in it carry a tag naming their
section (see `REPORT_SECTIONS`), and the numbers and figures come from the outputs those cells
produced during the run. Code is hidden; markdown and outputs are kept. The result is
``RUN/report.html`` and, when a headless Chromium is available, ``RUN/report.pdf``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import html
import json
import mimetypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from lab3.errors import UserError
from lab3.fileio import atomic_path

REPORT_TITLE = "Lab 3 — Leukemia classification with ResNet18/50/152"
RETINOPATHY_TITLE = "Lab 3, retinopathy edition — Diabetic retinopathy grading with ResNets"

# Tag a notebook cell with one of these tags to put it (its markdown, or its code cell's outputs)
# into that section of the report. Sections follow the course's required order.
REPORT_SECTIONS: list[tuple[str, str]] = [
    ("report:introduction", "1 Introduction"),
    ("report:implementation", "2 Implementation details"),
    ("report:preprocessing", "3 Data preprocessing"),
    ("report:results", "4 Experimental results"),
    ("report:discussion", "5 Discussion"),
]
SECTION_TAGS = [tag for tag, _heading in REPORT_SECTIONS]

# Papermill's injected cell and the notebook's own parameters cell never go into the report, even
# when tagged: they are plumbing, not content.
DROP_TAGS = frozenset({"injected-parameters", "parameters"})
NO_CONTENT = "(no content in this run)"

CHROMIUM_ENV = "LAB3_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PDF_TIMEOUT_S = 180

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

REPORT_CSS = """
@page { size: A4; margin: 18mm 17mm 20mm 17mm; }
html { font-size: 10.5pt; }
body {
  font-family: "Liberation Sans", "Helvetica Neue", Arial, "DejaVu Sans", sans-serif;
  color: #1f1f1f; line-height: 1.45; margin: 0;
  -webkit-print-color-adjust: exact; print-color-adjust: exact;
}
main.report { max-width: 176mm; margin: 0 auto; padding: 8mm 0; }
@media print { main.report { max-width: none; padding: 0; } }
.report-title { border-bottom: 2px solid #1f1f1f; margin-bottom: 1.2em; padding-bottom: 0.5em; }
.report-title h1 { font-size: 19pt; margin: 0 0 0.25em 0; border: none; padding: 0; }
.report-title p { margin: 0; color: #555; font-size: 10pt; }
h1 {
  font-size: 15pt; margin: 1.5em 0 0.5em 0; padding-bottom: 0.15em;
  border-bottom: 1px solid #9a9a9a; break-after: avoid; page-break-after: avoid;
}
h2 { font-size: 12.5pt; margin: 1.1em 0 0.4em 0; break-after: avoid; page-break-after: avoid; }
h3, h4 { font-size: 11pt; margin: 0.9em 0 0.3em 0; break-after: avoid; page-break-after: avoid; }
p, ul, ol { margin: 0.35em 0 0.6em 0; }
code, pre { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 8.8pt; }
pre {
  white-space: pre-wrap; word-break: break-word; background: #f6f6f6;
  border-left: 3px solid #d0d0d0; padding: 5px 8px; margin: 0.4em 0;
}
.rendered_html pre { background: #f6f6f6; }
img { max-width: 100%; height: auto; }
.output_png, .output_jpeg, .output_svg { text-align: center; margin: 0.5em 0; }
.output_png img, .output_jpeg img { display: block; margin: 0 auto; }
.output_area, .output_png, .output_jpeg, .output_svg, table, figure {
  break-inside: avoid; page-break-inside: avoid;
}
/* A markdown cell with a heading introduces what follows it: no page ends between the two. */
.text_cell:has(h1, h2, h3, h4) { break-after: avoid; page-break-after: avoid; }
table { border-collapse: collapse; border: none; margin: 0.6em auto; font-size: 9pt; }
th, td { padding: 2px 9px; border: none; border-bottom: 1px solid #dcdcdc; text-align: right; }
thead th { border-bottom: 1.5px solid #1f1f1f; text-align: right; }
tbody th { text-align: left; font-weight: 600; }
tbody tr:nth-child(odd) { background: #f5f7fa; }
.text_cell_render table td, .text_cell_render table th { text-align: left; }
.anchor-link, .prompt, .input_prompt, .output_prompt { display: none; }
.output_stderr { display: none; }
.no-content { color: #8a8a8a; font-style: italic; }
blockquote { margin: 0.5em 0; padding: 0.2em 0.9em; border-left: 3px solid #c8c8c8; color: #444; }
"""


def find_notebooks(run_dir: str | Path) -> list[Path]:
    """The executed notebooks of a run, in natural file-name order (resnet18 before resnet152)."""
    folder = Path(run_dir) / "notebooks"
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*.ipynb") if not p.name.startswith(".")]
    return sorted(found, key=lambda p: _natural_key(p.name))


def _natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(chunk)) if chunk.isdigit() else (1, chunk) for chunk in re.split(r"(\d+)", text)
    )


def section_of(cell: NotebookNode) -> str | None:
    """The report tag a cell carries, or None when it stays out of the report."""
    tags = cell.get("metadata", {}).get("tags", [])
    if DROP_TAGS.intersection(tags):
        return None
    for tag in tags:
        if tag in SECTION_TAGS:
            return tag
    return None


def _keep_output(output: NotebookNode) -> bool:
    """Progress bars and warnings (stderr, widgets) are noise on paper."""
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return False
    data = output.get("data", {})
    return not (_WIDGET_MIME in data and not {"image/png", "text/html"}.intersection(data))


def _report_cell(cell: NotebookNode) -> NotebookNode | None:
    cell = copy.deepcopy(cell)
    for key in ("papermill", "execution", "collapsed", "jupyter"):
        cell.metadata.pop(key, None)
    if cell.cell_type == "code":
        cell.outputs = [o for o in cell.get("outputs", []) if _keep_output(o)]
        if not cell.outputs:
            return None
    elif cell.cell_type != "markdown":
        return None
    return cell


def _read_notebook(path: Path) -> NotebookNode:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several types for a broken file
        raise UserError(
            f"cannot read this notebook ({exc.__class__.__name__}); re-run the workbook", path=path
        ) from exc


def _run_date(notebooks: Iterable[tuple[Path, NotebookNode]]) -> str:
    """When the run finished: papermill's end time, else the newest notebook's mtime."""
    stamps: list[dt.datetime] = []
    for path, nb in notebooks:
        end = nb.metadata.get("papermill", {}).get("end_time")
        try:
            stamps.append(dt.datetime.fromisoformat(str(end)))
        except ValueError:
            stamps.append(dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC))
    when = max(stamps, key=lambda s: s.timestamp()) if stamps else dt.datetime.now(tz=dt.UTC)
    return when.strftime("%Y-%m-%d")


def build_report_notebook(run_dir: str | Path) -> NotebookNode:
    """Gather the report-tagged cells of a run's notebooks into one notebook, section by section."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(
            "run folder not found; run `lab3 run` first to execute the workbook", run_dir
        )
    paths = find_notebooks(run_dir)
    if not paths:
        raise UserError(
            "no executed notebooks under notebooks/; run `lab3 run` first to execute the workbook",
            run_dir,
        )
    notebooks = [(path, _read_notebook(path)) for path in paths]
    check_notebooks_ran(run_dir, notebooks)

    by_section: dict[str, list[NotebookNode]] = {tag: [] for tag in SECTION_TAGS}
    for _path, nb in notebooks:
        for cell in nb.cells:
            tag = section_of(cell)
            if tag is None:
                continue
            kept = _report_cell(cell)
            if kept is not None:
                by_section[tag].append(kept)

    # One HTML block without blank lines, or markdown closes the <div> before its content.
    report_heading = report_title(run_dir)
    title = (
        f'<div class="report-title"><h1>{html.escape(report_heading)}</h1>'
        f"<p>Run <code>{html.escape(run_dir.resolve().name)}</code> · {_run_date(notebooks)}</p>"
        "</div>"
    )
    cells = [nbformat.v4.new_markdown_cell(title)]
    for tag, heading in REPORT_SECTIONS:
        cells.append(nbformat.v4.new_markdown_cell(f"# {heading}"))
        content = by_section[tag]
        if not content:
            cells.append(nbformat.v4.new_markdown_cell(f'<p class="no-content">{NO_CONTENT}</p>'))
        cells.extend(content)
    for index, cell in enumerate(cells):
        cell["id"] = f"report-{index}"  # cells from different notebooks may share ids

    report = nbformat.v4.new_notebook(cells=cells)
    kernelspec = notebooks[0][1].metadata.get("kernelspec")
    if kernelspec:
        report.metadata["kernelspec"] = copy.deepcopy(kernelspec)
    report.metadata["language_info"] = {"name": "python"}
    report.metadata["lab3_title"] = report_heading
    return report


def check_notebooks_ran(run_dir: Path, notebooks: list[tuple[Path, NotebookNode]]) -> None:
    """In a workbook run folder (one with workbook.json), every notebook ran to its end: one a
    student has not run yet in JupyterLab, or that stopped, is named, rather than a report
    with sections quietly missing."""
    from lab3.workbook.folders import RECORD, read_record
    from lab3.workbook.runner import NOTEBOOKS

    if not (run_dir / RECORD).is_file():
        return
    if read_record(run_dir).get("interactive"):
        advice = "open it in JupyterLab, Run > Run All Cells, save it, then `lab3 report` again"
    else:
        advice = f"continue the run with `lab3 run --resume {run_dir}`"
    for name in NOTEBOOKS:
        found = [(p, nb) for p, nb in notebooks if p.stem == name or p.stem.startswith(f"{name}_")]
        if not found:
            raise UserError(f"notebook {name} has not been run in this folder; {advice}", run_dir)
        for path, nb in found:
            code = [c for c in nb.cells if c.cell_type == "code"]
            not_run = [i for i, c in enumerate(code, start=1) if c.get("execution_count") is None]
            if not_run:
                raise UserError(
                    f"notebook {path.stem} has not run to its end (code cell {not_run[0]} of "
                    f"{len(code)} did not run); {advice}",
                    path,
                )


def report_title(run_dir: Path) -> str:
    """The report's title, in the words of the lab edition the run's data belong to."""
    try:
        data = Path(json.loads((run_dir / "workbook.json").read_text())["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return REPORT_TITLE
    return RETINOPATHY_TITLE if (data / "train_img.csv").is_file() else REPORT_TITLE


def render_html(
    report: NotebookNode, notebooks_dir: str | Path, root: str | Path | None = None
) -> str:
    """A standalone, print-ready HTML page: code hidden, images embedded, no network needed.

    Relative image links in markdown (``![](../figures/acc.png)``) are read relative to
    `notebooks_dir`, from anywhere under `root` (default: the run folder above it).
    """
    from nbconvert import HTMLExporter  # slow import; only the report needs it

    exporter = HTMLExporter(
        template_name="basic",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_anchor_links=True,
        embed_images=True,
    )
    # Markdown images are resolved (and embedded) relative to the notebooks' own folder.
    resources = {"metadata": {"path": str(notebooks_dir)}}
    body, _resources = exporter.from_notebook_node(report, resources=resources)
    # nbconvert embeds only files below the notebooks' folder; the run's figures/ sits beside it.
    body = _embed_local_images(body, Path(notebooks_dir), Path(root or Path(notebooks_dir).parent))
    body = _UNIT_SPACE.sub(r"\1&nbsp;\2", body)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(report.metadata.get('lab3_title', REPORT_TITLE))}</title>\n"
        f"<style>{REPORT_CSS}</style>\n</head>\n"
        f'<body>\n<main class="report">\n{body}\n</main>\n</body>\n</html>\n'
    )


# "67.9 %" in a table cell: a narrow column broke the line at the space and printed the "%"
# under the number; a non-breaking space keeps each value on one line.
_UNIT_SPACE = re.compile(r"(\d) (%)(?=\s*</t[dh]>)")
_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=)(["\'])(.*?)\2', re.IGNORECASE | re.DOTALL)


def _embed_local_images(body: str, base: Path, root: Path) -> str:
    """Inline images that still point at local files, so the HTML and PDF stand alone."""
    root = root.resolve()

    def inline(match: re.Match[str]) -> str:
        src = html.unescape(match.group(3))
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.IGNORECASE) or src.startswith("/"):
            return match.group(0)  # data:, http:, file: and absolute paths stay as they are
        path = (base / urllib.parse.unquote(src.split("#")[0].split("?")[0])).resolve()
        mime, _ = mimetypes.guess_type(path.name)
        if (
            not path.is_relative_to(root)
            or not path.is_file()
            or not (mime or "").startswith("image/")
        ):
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{match.group(1)}{match.group(2)}data:{mime};base64,{data}{match.group(2)}"

    return _IMG_SRC.sub(inline, body)


def find_chromium() -> str | None:
    """A headless-capable browser: $LAB3_CHROMIUM if set, else the first one found on PATH."""
    override = os.environ.get(CHROMIUM_ENV, "").strip()
    if override:
        found = shutil.which(override)
        if found is None:
            raise UserError(
                f"{CHROMIUM_ENV}={override} is not an executable; point it at chromium or unset it"
            )
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(
    html_path: str | Path, pdf_path: str | Path, chromium: str, timeout: float = PDF_TIMEOUT_S
) -> Path:
    """Print `html_path` to `pdf_path` with Chromium; the PDF appears whole or not at all."""
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    with tempfile.TemporaryDirectory(prefix="lab3-report-", ignore_cleanup_errors=True) as tmp:
        tmp_pdf = Path(tmp) / "report.pdf"
        log_path = Path(tmp) / "chromium.log"
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-pdf-header-footer",
            "--print-to-pdf-no-header",  # the older spelling of the flag above
            f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--print-to-pdf={tmp_pdf}",
            html_path.as_uri(),
        ]
        with open(log_path, "w", encoding="utf-8", errors="replace") as log:
            # Its own session, so a hung browser and its helpers can be stopped together.
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise UserError(
                    f"{chromium} did not finish printing the report within {timeout:.0f} s; "
                    f"the HTML is at {html_path}",
                    path=pdf_path,
                ) from None
        made = tmp_pdf.is_file() and tmp_pdf.stat().st_size > 0
        if returncode != 0 or not made or not tmp_pdf.read_bytes()[:5] == b"%PDF-":
            last = _last_line(log_path)
            raise UserError(
                f"{chromium} failed to print the report (exit {returncode}: {last}); "
                f"the HTML is at {html_path}",
                path=pdf_path,
            )
        with atomic_path(pdf_path) as out:
            shutil.copyfile(tmp_pdf, out)
    return pdf_path


def _last_line(log_path: Path) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if "dbus" not in ln.lower()]
    return (meaningful or lines or ["no output"])[-1][:300]


def build_report(run_dir: str | Path, pdf_name: str = "report.pdf") -> Path:
    """Write RUN/report.html and print it to RUN/<pdf_name>; returns the PDF, or the HTML when no
    browser is installed (the HTML is the report too, and prints from any browser)."""
    run_dir = Path(run_dir)
    report = build_report_notebook(run_dir)
    page = render_html(report, run_dir / "notebooks")
    html_path = run_dir / "report.html"
    with atomic_path(html_path) as tmp:
        tmp.write_text(page, encoding="utf-8")

    chromium = find_chromium()
    if chromium is None:
        print(
            f"report: no chromium found; wrote {html_path} "
            "(install Debian's chromium, or set LAB3_CHROMIUM, for the PDF)",
            file=sys.stderr,
        )
        return html_path
    return html_to_pdf(html_path, run_dir / pdf_name, chromium)
