"""The report gathers tagged cells from executed notebooks, in the course's section order."""

from __future__ import annotations

import base64
import io
import os
import shutil

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

from lab3.errors import UserError  # noqa: E402
from lab3.workbook import report  # noqa: E402

HEADINGS = [heading for _tag, heading in report.REPORT_SECTIONS]


def _png_base64(title: str = "accuracy") -> str:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [0.6, 0.8, 0.9], label="valid")
    ax.set_title(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _tagged(cell: nbformat.NotebookNode, *tags: str) -> nbformat.NotebookNode:
    cell.metadata["tags"] = list(tags)
    return cell


def make_run(root, with_discussion: bool = False):
    """A small run folder shaped like papermill leaves it."""
    run = root / "run-2026-11-23"
    notebooks = run / "notebooks"
    notebooks.mkdir(parents=True)
    (run / "figures").mkdir()
    (run / "figures" / "crop.png").write_bytes(base64.b64decode(_png_base64("crop")))
    injected = _tagged(
        new_code_cell(
            "# Parameters\nSECRET_INJECTED = 1\n",
            outputs=[new_output("stream", name="stdout", text="SECRET_INJECTED_OUTPUT\n")],
        ),
        "injected-parameters",
        "report:implementation",
    )
    first = new_notebook(
        cells=[
            _tagged(new_code_cell("depth = 18"), "parameters", "report:implementation"),
            injected,
            new_markdown_cell("# Data exploration (not in the report)"),
            _tagged(new_markdown_cell("Leukemia cells, *two classes*."), "report:introduction"),
            _tagged(
                new_markdown_cell("We crop the black background.\n\n![crop](../figures/crop.png)"),
                "report:preprocessing",
            ),
        ]
    )
    first.metadata["papermill"] = {"end_time": "2026-11-23T10:00:00.000000"}
    second = new_notebook(
        cells=[
            _tagged(
                new_code_cell(
                    "show_results()",
                    outputs=[
                        new_output(
                            "display_data",
                            data={
                                "text/markdown": "Highest test accuracy: **93.1 %**",
                                "text/plain": "<IPython.core.display.Markdown object>",
                            },
                        ),
                        new_output(
                            "display_data",
                            data={"image/png": _png_base64(), "text/plain": "<Figure>"},
                        ),
                        new_output("stream", name="stderr", text="PROGRESS_BAR_NOISE\n"),
                    ],
                ),
                "report:results",
            ),
            _tagged(new_markdown_cell("Bottleneck blocks for depth 50+."), "report:implementation"),
        ]
    )
    cells = [_tagged(new_markdown_cell("Deeper is not always better."), "report:discussion")]
    third = new_notebook(cells=cells if with_discussion else [new_markdown_cell("untagged")])
    # Natural order: 04_train_resnet18 comes before 05, whatever the digits.
    for name, nb in [
        ("01_data_exploration.ipynb", first),
        ("04_train_resnet18.ipynb", second),
        ("05_evaluation_and_report.ipynb", third),
    ]:
        nbformat.write(nb, notebooks / name)
    return run


def _in_order(text: str, needles: list[str]) -> bool:
    positions = [text.find(n) for n in needles]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


def test_report_notebook_groups_cells_by_section(tmp_path):
    nb = report.build_report_notebook(make_run(tmp_path))
    nbformat.validate(nb)
    sources = [cell.source for cell in nb.cells]
    headings = [s for s in sources if s.startswith("# ")]
    assert headings == [f"# {h}" for h in HEADINGS]
    joined = "\n".join(sources)
    assert "SECRET_INJECTED" not in joined and "depth = 18" not in joined
    assert "not in the report" not in joined
    # implementation content sits between its heading and the next one
    assert _in_order(joined, ["# 2 Implementation", "Bottleneck blocks", "# 3 Data preprocessing"])
    assert joined.count(report.NO_CONTENT) == 1  # only the discussion is empty
    assert _in_order(joined, ["# 5 Discussion", report.NO_CONTENT])
    assert report.REPORT_TITLE in nb.cells[0].source and "run-2026-11-23" in nb.cells[0].source


def test_html_has_sections_in_order_and_embedded_image(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no browser: HTML only
    monkeypatch.delenv(report.CHROMIUM_ENV, raising=False)
    run = make_run(tmp_path)
    out = report.build_report(run)
    assert out == run / "report.html"
    page = out.read_text(encoding="utf-8")
    assert _in_order(page, HEADINGS)
    assert "SECRET_INJECTED" not in page and "PROGRESS_BAR_NOISE" not in page
    assert "show_results()" not in page  # code inputs hidden
    assert "Highest test accuracy: <strong>93.1 %</strong>" in page
    assert page.count("data:image/png;base64,") == 2  # the output and the markdown figure
    assert "../figures/crop.png" not in page
    assert report.NO_CONTENT in page
    assert "2026-11-23" in page
    assert not (run / "report.pdf").exists()


def test_missing_run_or_notebooks_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="lab3 run"):
        report.build_report(tmp_path / "nope")
    (tmp_path / "empty" / "notebooks").mkdir(parents=True)
    with pytest.raises(UserError, match="no executed notebooks"):
        report.build_report_notebook(tmp_path / "empty")


def test_bad_chromium_override_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv(report.CHROMIUM_ENV, str(tmp_path / "no-such-browser"))
    with pytest.raises(UserError, match=report.CHROMIUM_ENV):
        report.find_chromium()


def test_pdf_has_sections_in_order_and_an_image(tmp_path, monkeypatch):
    monkeypatch.delenv(report.CHROMIUM_ENV, raising=False)
    if report.find_chromium() is None:
        pytest.skip("no chromium on PATH (apt-get install chromium) to print the PDF")
    pypdf = pytest.importorskip("pypdf")
    run = make_run(tmp_path, with_discussion=True)
    out = report.build_report(run)
    assert out == run / "report.pdf" and out.stat().st_size > 0
    assert (run / "report.html").is_file()
    reader = pypdf.PdfReader(out)
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert _in_order(text, HEADINGS), text[:2000]
    assert "Deeper is not always better" in text and report.NO_CONTENT not in text
    assert "SECRET_INJECTED" not in text
    assert sum(len(page.images) for page in reader.pages) >= 2
    width, height = float(reader.pages[0].mediabox.width), float(reader.pages[0].mediabox.height)
    assert abs(width - 595) < 3 and abs(height - 842) < 3  # A4 from the CSS @page rule
    assert not list(run.glob(".*.tmp"))  # no temp files left by the atomic writes


@pytest.mark.skipif(shutil.which("true") is None, reason="needs /bin/true")
def test_failing_browser_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv(report.CHROMIUM_ENV, shutil.which("true"))  # exits 0, prints nothing
    run = make_run(tmp_path)
    with pytest.raises(UserError, match="failed to print"):
        report.build_report(run)
    assert (run / "report.html").is_file() and not (run / "report.pdf").exists()


def test_a_heading_and_its_lead_in_go_to_the_page_of_their_figure(tmp_path):
    """Catches a page that ends with a heading (and its lead-in) whose figure opens the next."""
    if report.find_chromium() is None:
        pytest.skip("chromium is not installed, so no PDF is rendered (.ci/run installs it)")
    pypdf = pytest.importorskip("pypdf")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([1, 2, 3])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    figure = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"), "text/plain": ""}
    filler = "Cells on a black background, segmented and centred in the frame. " * 12
    cells = []
    for k in range(4):  # text of growing length moves each heading further down its page
        cells.append(new_markdown_cell("\n\n".join([filler] * (3 + k))))
        cells.append(new_markdown_cell(f"## Heading {k}\n\nWhat the figure below shows."))
        cells.append(new_code_cell("plot()", outputs=[new_output("display_data", data=figure)]))
    html = tmp_path / "report.html"
    html.write_text(report.render_html(new_notebook(cells=cells), tmp_path))
    reader = pypdf.PdfReader(
        report.html_to_pdf(html, tmp_path / "report.pdf", report.find_chromium())
    )
    figure_pages = [i for i, page in enumerate(reader.pages) for _ in page.images]
    heading_pages = [
        next(i for i, page in enumerate(reader.pages) if f"Heading {k}" in page.extract_text())
        for k in range(4)
    ]
    assert heading_pages == figure_pages


def test_a_percentage_in_a_table_cell_stays_on_one_line(tmp_path):
    """The PDF's attention table printed "67.9" over "%": the space inside a value let a narrow
    column break it. Table cells get a non-breaking space; prose keeps its ordinary one."""
    table = "<table><tr><th>68.0 %</th><td>67.9 %</td><td>3 %\n</td></tr></table>"
    cell = new_code_cell("", outputs=[new_output("display_data", data={"text/html": table})])
    notebook = new_notebook(cells=[new_markdown_cell("A share of 67.9 % in prose."), cell])
    page = report.render_html(notebook, tmp_path)
    assert "<td>67.9&nbsp;%</td>" in page and "<th>68.0&nbsp;%</th>" in page
    assert "3&nbsp;%\n</td>" in page and "67.9 % in prose" in page
