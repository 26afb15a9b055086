"""The neuron page of a real smollm2-135m index, served by `neuroboard serve`, in a real headless Chromium:
highlighted tokens, histogram and logit table on the page; token text from a hostile document shown as text; a
copied URL reopening the same view in a fresh browser context."""

import html
import re

import duckdb
import pytest
from helpers.serving import served
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from core.units.config import ExtractConfig
from core.units.extract import extract
from dashboard.browser import new_page, wait_settled

HOSTILE = "The page said <script>alert(1)</script> and then <b>x</b> in bold, which is how the story ends."


@pytest.fixture(scope="module")
def real_index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    docs = ["Paris is the capital of France. The city has many museums and old bridges over the river.",
            HOSTILE,
            "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
            "The quick brown fox jumps over the lazy dog, again and again, until the dog gives up."] * 3
    corpus = tmp / "c.txt"
    corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    db = tmp / "real.duckdb"
    extract(ExtractConfig(model="smollm2-135m", db=str(db), corpus=str(corpus), context_len=64, layers="2,5"))
    con = duckdb.connect(str(db), read_only=True)
    unit = con.execute(  # a layer-5 unit whose best example sits in the hostile document, inside "<script>"
        "SELECT e.unit FROM top_examples e JOIN documents d ON d.doc_id = e.doc_id WHERE e.run_id = 1 AND e.layer = 5 "
        "AND e.rank = 0 AND d.text LIKE '%<script>%' AND e.position BETWEEN 3 AND 12 ORDER BY e.activation DESC "
        "LIMIT 1").fetchall()[0][0]
    con.close()
    return db, unit


@pytest.fixture(scope="module")
def server(real_index, tmp_path_factory):
    with served(real_index[0], tmp_path_factory.mktemp("srv") / "streamlit.log") as url:
        yield url


def example_texts(page) -> list[str]:
    """The top examples (the page's first HTML block of examples), one string each."""
    return page.get_by_test_id("stHtml").filter(has=page.locator(".nb-example")).first.locator(
        ".nb-example").all_inner_texts()


@pytest.mark.e2e
@pytest.mark.slow
def test_neuron_page_in_chromium(browser, server, real_index, tmp_path):
    _, unit = real_index
    dialogs = []
    page = new_page(browser)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server}/neurons?run=1&layer=5&unit={unit}&ctx=16", wait_until="domcontentloaded")
    wait_settled(page, 120_000)
    assert page.get_by_test_id("stException").count() == 0
    # highlighted tokens with hover values, the exact histogram, the logit table
    toks = page.locator(".nb-tok")
    assert toks.count() > 50
    assert page.locator('.nb-tok[style*="background:#ff8c00"]').count() >= 10
    assert ": " in toks.first.get_attribute("title")
    hist = page.locator('.nb-chart svg').first  # the exact histogram, inline SVG with hover text
    assert hist.locator("rect title").count() >= 3 and "tokens" in hist.locator("rect title").first.inner_html()
    assert page.get_by_text("Logit effects", exact=True).is_visible()
    page.locator(".nb-table").filter(has_text="promoted").first.wait_for(timeout=60_000)  # once the model is in
    assert page.locator(".nb-table").count() >= 2 and page.locator('.nb-chart svg').count() >= 2
    assert page.get_by_test_id("stPlotlyChart").count() == 0 and page.get_by_test_id("stDataFrame").count() == 0
    assert page.get_by_test_id("stMetricValue").first.inner_text() == f"5 / {unit}"
    # the hostile document: its tags are text, never markup, and nothing ran
    joined = "".join(example_texts(page))
    assert "<script>" in joined.replace("\u200b", "") or "script>" in joined
    assert page.locator(".nb-example script, .nb-example b").count() == 0
    assert dialogs == []
    # interval samples are drawn when their group is opened
    assert page.locator('[data-testid="stExpander"] .nb-tok').count() == 0
    page.get_by_test_id("stExpander").filter(has_text="of active tokens").first.locator("summary").click()
    page.locator('[data-testid="stExpander"] .nb-tok').first.wait_for(timeout=30_000)
    wait_settled(page, 60_000)
    shot = tmp_path / "neuron.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")

    # change the view in the page; the URL follows; a fresh context opening that URL shows the same view
    slider = page.get_by_role("slider").first
    for _ in range(4):  # under load a rerun can take the focus between key presses: move by what is left
        wait_settled(page, 60_000)
        left = int(re.search(r"ctx=(\d+)", page.url).group(1)) - 14
        slider.focus()
        for _ in range(max(0, left)):
            page.keyboard.press("ArrowLeft")
        try:
            page.wait_for_function("() => location.search.includes('ctx=14')", timeout=15_000)
            break
        except PlaywrightTimeoutError:
            continue
    page.wait_for_function("() => location.search.includes('ctx=14')", timeout=30_000)
    wait_settled(page, 60_000)
    before = example_texts(page)
    url = page.url
    assert f"unit={unit}" in url and "layer=5" in url and "ctx=14" in url
    fresh = new_page(browser)
    fresh.goto(url, wait_until="domcontentloaded")
    wait_settled(fresh, 120_000)
    # under load a quiet moment can come mid-render: wait for the unit's own header, then for quiet again
    fresh.get_by_test_id("stMetricValue").filter(has_text=f"5 / {unit}").first.wait_for(timeout=60_000)
    wait_settled(fresh, 60_000)
    assert fresh.get_by_test_id("stMetricValue").first.inner_text() == f"5 / {unit}"
    assert example_texts(fresh) == before
    assert html.escape("<b>") not in "".join(before)  # shown once as text, not double-escaped
    page.context.close()
    fresh.context.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_home_to_top_examples_in_two_clicks(browser, server):
    """A newcomer: Home -> "Browse the neurons of run 1" -> a unit's highlighted top examples."""
    page = new_page(browser)
    page.goto(server, wait_until="domcontentloaded")
    wait_settled(page, 120_000)
    page.get_by_role("link", name="Browse the neurons of run 1 (smollm2-135m)").click()  # click 1
    page.wait_for_url("**/neurons?**run=1**", timeout=60_000)
    wait_settled(page, 120_000)
    assert page.get_by_text("Top activating examples").is_visible()
    assert page.locator(".nb-tok").count() > 20 and page.get_by_test_id("stException").count() == 0
    page.context.close()
