"""The trajectories page in a real headless Chromium, served by `neuroboard serve`, with the real smollm2-135m:
"The capital of France is" -> the lens grid and the target line show " Paris"; the URL reopens the same view."""

from urllib.parse import quote

import pytest
from helpers.serving import served

from core.index.db import connect
from dashboard.browser import new_page, wait_settled


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traj")
    db = tmp / "empty.duckdb"
    connect(db).close()  # the page needs no index; serve needs one
    with served(db, tmp / "streamlit.log") as url:
        yield url


@pytest.mark.e2e
@pytest.mark.slow
def test_trajectories_finds_paris(browser, server, tmp_path):
    page = new_page(browser)
    url = f"{server}/trajectories?model=smollm2-135m&compare=none&prompt={quote('The capital of France is')}"
    page.goto(url, wait_until="domcontentloaded")
    wait_settled(page, 240_000)
    assert page.get_by_test_id("stException").count() == 0
    caption = page.get_by_text("Target: smollm2-135m →").inner_text()
    assert "Paris" in caption
    grid = page.locator(".nb-grid").first  # the lens grid, an HTML table
    assert "Paris" in grid.inner_text()
    page.locator('.nb-chart svg').nth(3).wait_for(timeout=60_000)  # target, entropy, KL lines
    assert page.get_by_test_id("stPlotlyChart").count() == 0  # light charts unless asked for
    page.screenshot(path=str(tmp_path / "trajectories.png"), full_page=True)
    # the residual stream view through the URL, in a fresh context
    fresh = new_page(browser)
    fresh.goto(url + "&view=stream", wait_until="domcontentloaded")
    wait_settled(fresh, 240_000)
    assert fresh.get_by_test_id("stException").count() == 0
    fresh.get_by_text("quiet blocks", exact=False).first.wait_for(timeout=60_000)
    page.context.close()
    fresh.context.close()
