"""A newcomer's findings, in a real Chromium against `neuroboard serve`: save three findings from three pages
(neuron, lens, steering) with the sidebar's Save finding, see them on /findings, export them as one HTML file and
open it from disk with networking off; then `serve --tour` presents them, next and previous with the arrow keys."""

import re
from urllib.parse import quote_plus

import pytest
from helpers.serving import served
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from dashboard.browser import new_page, wait_settled


@pytest.fixture(scope="module")
def setup(tiny_lm_dir, tmp_path_factory):
    from helpers.findings import tiny_extracted

    tmp = tmp_path_factory.mktemp("findings-e2e")
    db, _, _ = tiny_extracted(tiny_lm_dir, tmp)
    return db, str(tiny_lm_dir), tmp


def save(page, title):
    page.get_by_text("Save finding").first.click()
    page.get_by_label("Title").fill(title)
    page.get_by_label("Title").press("Enter")
    page.get_by_role("button", name="Save this view").click()
    page.get_by_text(re.compile(r"Saved as finding \d+")).wait_for(timeout=120_000)
    assert page.get_by_test_id("stException").count() == 0


def press_until(page, key, mark):
    """Press an arrow key on a settled page and wait for the tour bar to show `mark`. A key pressed while the page's
    script was still running can be dropped by the browser before Streamlit's shortcut listener sees it; the page is
    then unchanged, so the key is pressed again (at most three times), never a second time once it moved."""
    for _ in range(3):
        wait_settled(page, 60_000)
        before = page.url
        page.locator("body").press(key)
        try:
            page.get_by_text(mark).first.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            if page.url != before:  # it moved but slowly: wait for it, do not press again
                page.get_by_text(mark).first.wait_for(timeout=60_000)
                return
    raise AssertionError(f"{key} never reached {mark!r}; page at {page.url}")


@pytest.mark.e2e
@pytest.mark.slow
def test_save_three_export_and_tour(browser, setup):
    db, model, tmp = setup
    findings = tmp / "findings.duckdb"
    m = quote_plus(model)
    views = [("neurons?run=1&layer=1&unit=5", "A neuron", ".nb-example"),
             (f"trajectories?model={m}&compare=none&view=lens&prompt=The+cat+sat+on+the", "A lens", "svg"),
             (f"steering?model={m}&direction=neuron:1:4&layer=1&alpha=0.5&prompt=The+cat&tokens=4", "Steering",
              ".nb-steer")]
    with served(db, tmp / "serve.log", ("--findings", str(findings))) as url:
        page = new_page(browser)
        for path, title, ready in views:
            page.goto(f"{url}/{path}")
            page.locator(ready).first.wait_for(timeout=120_000)
            wait_settled(page, 60_000)
            save(page, title)
        page.get_by_text("Manifest").first.click()  # the view's manifest, shown beside it
        page.get_by_text("weights_sha256").first.wait_for(timeout=60_000)
        page.goto(f"{url}/findings")
        page.get_by_text("Open the live view").nth(2).wait_for(timeout=60_000)
        body = page.inner_text("body")
        assert all(t in body for t in ("1. A neuron", "2. A lens", "3. Steering"))
        with page.expect_download() as dl:
            page.get_by_role("button", name="Export all as one HTML file").click()
        report = tmp / "report.html"
        dl.value.save_as(report)
    offline = new_page(browser, offline=True)
    offline.goto(report.as_uri())
    offline.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=30_000)
    assert offline.locator(".js-plotly-plot").count() == 3 and "A lens" in offline.inner_text("body")
    with served(db, tmp / "tour.log", ("--tour", str(findings))) as url:
        page = new_page(browser)
        page.goto(url)
        page.get_by_text("Tour of 3 findings").wait_for(timeout=60_000)
        assert page.get_by_text("Save finding").count() == 0  # editing controls hidden
        steps = [("ArrowRight", "/neurons", "1 / 3"), ("ArrowRight", "/trajectories", "2 / 3"),
                 ("ArrowRight", "/steering", "3 / 3"),
                 ("ArrowLeft", "/trajectories", "2 / 3")]
        for key, where, mark in steps:
            press_until(page, key, mark)
            assert where in page.url and "tour=" in page.url
            if where == "/neurons":  # the saved view reopened: the same unit, live
                page.locator(".nb-example").first.wait_for(timeout=60_000)
                assert "unit=5" in page.url
                assert page.get_by_test_id("stMetricValue").first.inner_text().strip() == "1 / 5"
        wait_settled(page, 60_000)
        assert page.get_by_test_id("stException").count() == 0
