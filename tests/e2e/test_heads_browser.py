"""The heads page in a real headless Chromium on real smollm2-135m scores (`neuroboard heads`, no ablation to keep
it short): the role maps draw, a head URL opens that head's panel and pattern, and a click on a map cell opens
another head."""

import pytest
from helpers.serving import served

from core.cli import main
from dashboard.browser import new_page, wait_settled


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heads")
    db = tmp / "heads.duckdb"
    assert main(["heads", "--model", "smollm2-135m", "--db", str(db), "--seqs", "4", "--half-len", "32",
                 "--ablation-tokens", "0", "--no-progress"]) == 0
    with served(db, tmp / "streamlit.log") as url:
        yield url


@pytest.mark.e2e
@pytest.mark.slow
def test_head_url_shows_maps_and_pattern(browser, server, tmp_path):
    page = new_page(browser)
    page.goto(f"{server}/heads?model=smollm2-135m&layer=18&head=6", wait_until="domcontentloaded")
    wait_settled(page, 240_000)
    assert page.get_by_test_id("stException").count() == 0
    page.get_by_text("smollm2-135m: layer 18, head 6").wait_for(timeout=60_000)
    maps = page.locator(".nb-grid")
    maps.nth(7).wait_for(timeout=60_000)
    assert maps.count() == 8  # a map per role (8 without ablation)
    page.locator('.nb-chart svg').first.wait_for(timeout=60_000)  # the pattern on the text
    for title in ("induction", "previous token", "attention sink", "OV copying"):
        assert maps.filter(has_text=title).count() >= 1
    metric = page.get_by_test_id("stMetric").filter(has_text="induction").first.get_by_test_id("stMetricValue")
    assert float(metric.inner_text()) > 0.5  # the strongest induction head of smollm2
    page.screenshot(path=str(tmp_path / "heads.png"), full_page=True)
    # a click on another cell of the induction map opens that head (hover shows its score)
    induction = maps.filter(has_text="induction").first
    cell = induction.locator("tr").nth(1 + 16).locator("td").nth(0)
    assert cell.get_attribute("title").startswith("layer 16, head 0: ")
    cell.locator("a").click()
    page.wait_for_function("() => location.search.includes('layer=16') && location.search.includes('head=0')",
                           timeout=60_000)
    wait_settled(page, 120_000)
    page.get_by_text("smollm2-135m: layer 16, head 0").wait_for(timeout=60_000)
    page.context.close()
