"""The exported findings report, opened from file:// in headless Chromium with networking off: every figure is
drawn, hover shows a value, and text from findings (a title, a prompt's tokens) that holds markup stays text."""

import pytest

from core.cli import main
from core.findings import store
from core.findings.views import make_finding
from dashboard.browser import new_page

XSS = '<img src=x onerror="window.__xss=1">'
BASE = "http://127.0.0.1:8501"


@pytest.fixture(scope="module")
def report(tiny_lm_dir, tmp_path_factory):
    from helpers.findings import tiny_extracted

    tmp = tmp_path_factory.mktemp("export")
    db, lm, _ = tiny_extracted(tiny_lm_dir, tmp)
    f = tmp / "f.duckdb"
    urls = [(f"{BASE}/neurons?run=1&layer=1&unit=5", f"neuron 5 {XSS}"),
            (f"{BASE}/trajectories?view=lens&prompt=The+cat+{XSS.replace(' ', '+')}&pos=-1", "lens"),
            (f"{BASE}/steering?direction=neuron:1:4&layer=1&alpha=0.5&prompt=The+cat&tokens=4", "steering"),
            (f"{BASE}/patching?clean=The+cat+sat+on+the+mat+and&corrupted=The+cat+sat+in+the+mat+and&answer=+the"
             "&foil=+a", "patching")]
    for url, title in urls:
        store.add(f, make_finding(url, title, note=f"a note {XSS}", db=db, load=lambda name: lm))
    out = tmp / "report.html"
    assert main(["export", str(f), "--out", str(out)]) == 0
    return out


@pytest.mark.e2e
def test_report_offline_figures_hover_and_escaping(browser, report):
    page = new_page(browser, offline=True)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(report.as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 7", timeout=30_000)
    plots = page.locator(".js-plotly-plot")
    assert plots.count() == 1 + 1 + 1 + 4  # histogram, lens lines, next-token bars, four patching grids
    assert all(u.startswith("file://") or u.startswith("data:") for u in requests), requests
    # hover: the lens chart's first point shows its value
    lens_plot = page.locator(".js-plotly-plot").nth(1)
    lens_plot.scroll_into_view_if_needed()
    box = lens_plot.locator(".scatterlayer .points path").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(".hoverlayer .hovertext", timeout=10_000)
    assert "block 0" in page.locator(".hoverlayer .hovertext").first.text_content()
    body = page.inner_text("body")
    assert XSS in body and "a note" in body and "Manifest" in body  # markup shown as text
    assert page.evaluate("window.__xss") is None and not dialogs
    assert page.locator("img").count() == 0
    assert page.locator(".nb-tok").count() > 0  # token highlights
