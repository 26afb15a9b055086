"""The circuits page served by `neuroboard serve` in a real headless Chromium, on a tiny index with a stored graph
whose transcoder features are indexed (helpers.circuit_index): open the graph, click a node in the drawing, pin two
nodes, group them into a supernode, reload: the view comes back from the URL alone."""

import os

import pytest
from helpers.circuit_index import circuit_index
from helpers.serving import served

from core.circuits import explore as ex
from core.index.db import connect
from core.index.graphs import graph_kept_array, graph_wire
from dashboard.browser import new_page, wait_settled


@pytest.fixture(scope="module")
def server(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-circuits")
    env = circuit_index(tiny_lm_dir, tmp)
    con = connect(env["db"], read_only=True)
    try:
        ids, A = graph_kept_array(con, 1)
        doc = ex.GraphDoc(graph_wire(con, 1), ids, A)
    finally:
        con.close()
    old = {k: os.environ.get(k) for k in ("NEUROBOARD_CACHE", "NEUROBOARD_FINDINGS")}
    os.environ["NEUROBOARD_CACHE"], os.environ["NEUROBOARD_FINDINGS"] = str(tmp / "cache"), str(tmp / "f.duckdb")
    try:
        with served(env["db"], tmp / "streamlit.log") as url:
            yield url, doc
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def settled(page) -> str:
    wait_settled(page, 120_000)
    assert page.get_by_test_id("stException").count() == 0
    # no markup shown as text: a line break in a label once ended the graph's HTML block (frame.light)
    assert page.locator('[data-testid="stCode"], [data-testid="stMarkdownPre"]').count() == 0
    return page.inner_text("body")


def click_node(page, node: str) -> None:
    page.locator(f"svg a[href*='node={node}&'], svg a[href$='node={node}']").first.click()
    page.wait_for_url(f"**node={node}**", timeout=60_000)
    page.get_by_text("strongest incoming direct effects").wait_for(timeout=60_000)
    page.locator(".nb-table:has-text('promoted')").first.wait_for(timeout=120_000)  # the model is loaded: no rerun
    settled(page)


@pytest.mark.e2e
def test_circuits_journey(browser, server):
    url, doc = server
    feats = sorted((x for x in doc.ids if doc.kind(x) == ex.FEATURE), key=lambda x: doc.nodes[x]["influence"])
    a, b = feats[0], feats[1]
    page = new_page(browser)
    page.goto(f"{url}/circuits?graph=1")
    page.locator(".nb-chart svg").first.wait_for(timeout=120_000)
    body = settled(page)
    assert "replacement score" in body and page.locator(".nb-chart svg a").count() == len(doc.ids)
    for node in (a, b):  # click each in the drawing, pin it
        click_node(page, node)
        page.get_by_role("button", name="Pin into the subgraph").click()
        page.wait_for_url(f"**pinned=*{node}*", timeout=60_000)
        settled(page)
    assert page.locator(".nb-feature-link").count() == 1  # the clicked feature's page link
    page.get_by_label("Supernode name").fill("early pair")
    box = page.get_by_test_id("stMultiSelect").filter(has_text="Its nodes")
    box.scroll_into_view_if_needed()
    page.mouse.wheel(0, 600)  # room below it for the options
    for node in (a, b):
        box.locator("input").click()
        page.get_by_role("option").filter(has_text=node).first.click()
        page.keyboard.press("Escape")
    page.get_by_role("button", name="Group").click()
    page.wait_for_url("**groups=early*", timeout=60_000)
    settled(page)
    page.reload()
    page.locator(".nb-subgraph svg").first.wait_for(timeout=120_000)
    body = settled(page)
    assert "early pair" in page.locator(".nb-subgraph").first.inner_html()
    assert "early pair" in body and f"node={b}" in page.url
    ring = page.locator(".nb-chart svg circle[stroke='#222']")  # the pinned node; the clicked one is ringed red
    assert ring.count() == 1 and page.locator(".nb-chart svg circle[stroke='#d62728']").count() == 1
