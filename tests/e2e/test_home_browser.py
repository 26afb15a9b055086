"""The main journey in a real headless Chromium: the served home page shows the runs of the index."""

import pytest


@pytest.mark.e2e
def test_home_shows_runs(browser, dashboard_server, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(dashboard_server, wait_until="domcontentloaded")
    page.get_by_text("is extracting: 400 / 1,000 tokens (40%)").wait_for(timeout=60_000)
    page.locator(".nb-table").first.wait_for(timeout=30_000)  # the runs table (HTML)
    assert page.locator(".nb-table tr").count() >= 3 and page.get_by_test_id("stDataFrame").count() == 0
    assert page.get_by_text("Runs", exact=True).is_visible()
    assert page.get_by_test_id("stException").count() == 0
    shot = tmp_path / "home.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
