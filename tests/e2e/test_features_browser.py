"""The SAE feature page of a real smollm2-135m index with a small SAE trained here, served by `neuroboard serve`, in a
real headless Chromium: the feature's examples and quality numbers, a nearest-feature link, a click on the feature
map and features-on-my-text each opening another feature."""

import pytest
from helpers.serving import served

from core.saes.train import TrainSAEConfig, train_sae
from core.units.config import ExtractConfig
from core.units.extract import extract
from dashboard.browser import new_page, wait_settled

DOCS = ["Paris is the capital of France. The city has many museums and old bridges over the river.",
        "The page said <script>alert(1)</script> and then <b>x</b> in bold.",
        "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
        "The quick brown fox jumps over the lazy dog, again and again, until the dog gives up."] * 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from core.model.load import load_model

    tmp = tmp_path_factory.mktemp("e2e-features")
    lm = load_model("smollm2-135m")
    sae = tmp / "sae"
    train_sae(TrainSAEConfig(model="smollm2-135m", site="resid_post.3", out=str(sae), tokens=8192, latents=512, k=8,
                             batch=1024, buffer_tokens=4096, eval_tokens=2048), lm=lm)
    tc = tmp / "tc"  # SAE 2: a transcoder from layer 3's MLP input to its output
    train_sae(TrainSAEConfig(model="smollm2-135m", site="mlp_in.3", transcode=True, out=str(tc), tokens=4096,
                             latents=256, k=8, batch=1024, buffer_tokens=2048, eval_tokens=1024), lm=lm)
    corpus = tmp / "c.txt"
    corpus.write_text("\n\n".join(DOCS) + "\n", encoding="utf-8")
    db = tmp / "real.duckdb"
    extract(ExtractConfig(model="smollm2-135m", db=str(db), corpus=str(corpus), context_len=64, layers="3",
                          sae=[str(sae), str(tc)]), lm=lm)
    with served(db, tmp / "streamlit.log") as url:
        yield url, db, lm, tc


def feature_of(page) -> int:
    return int(page.url.split("feature=")[1].split("&")[0])


@pytest.mark.e2e
@pytest.mark.slow
def test_feature_page_journey(browser, server):
    server = server[0]
    page = new_page(browser)
    page.goto(f"{server}/features?run=1&sae=1&feature=5")
    page.locator(".nb-example").first.wait_for(timeout=120_000)
    wait_settled(page, 120_000)
    assert page.get_by_test_id("stException").count() == 0
    body = page.inner_text("body")
    assert "FVU" in body and "CE recovered" in body and "Nearest features" in body
    assert page.locator("script:has-text(\"alert(1)\")").count() == 0  # hostile text stays text
    # a nearest feature's link opens it
    near = page.locator("table.nb-table a[href*='features?']").first
    target = int(near.get_attribute("href").split("feature=")[1].split("&")[0])
    near.click()
    page.wait_for_url(f"**feature={target}**", timeout=60_000)
    wait_settled(page, 120_000)
    assert feature_of(page) == target and page.get_by_test_id("stException").count() == 0
    # the feature map: a click on a point opens that feature
    page.get_by_text("Feature map").click()
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=120_000)
    wait_settled(page, 120_000)
    xy = page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot'); const d = gd._fullData[0];
        const L = gd._fullLayout; const r = gd.getBoundingClientRect(); const i = 7;
        return [r.left + L.xaxis._offset + L.xaxis.l2p(d.x[i]), r.top + L.yaxis._offset + L.yaxis.l2p(d.y[i])]; }""")
    page.mouse.click(xy[0], xy[1])
    page.wait_for_url("**feature=7**", timeout=60_000)
    wait_settled(page, 120_000)
    assert feature_of(page) == 7 and page.get_by_test_id("stException").count() == 0
    # features on my text: each token's strongest features as links
    page.get_by_label("Type text to see each token's strongest features").fill("The capital of France is Paris.")
    page.keyboard.press("Control+Enter")
    table = page.locator("table.nb-featext")
    table.wait_for(timeout=120_000)
    link = table.locator("a").first
    want = int(link.inner_text())
    link.click()
    page.wait_for_url(f"**feature={want}&**", timeout=60_000)
    wait_settled(page, 120_000)
    assert feature_of(page) == want and page.get_by_test_id("stException").count() == 0


@pytest.mark.e2e
@pytest.mark.slow
def test_transcoder_page(browser, server):
    """A transcoder's feature: examples from its input site (mlp_in.3), logit effects from its output side: the
    largest equals its decoder row at mlp_out.3 times the final norm's weight, through the unembedding, computed here
    from the HF modules."""
    import duckdb

    from core.saes.formats import load_sae
    from dashboard.render.svg import fmt

    url, db, lm, tc = server
    con = duckdb.connect(str(db), read_only=True)
    f = con.execute("SELECT unit FROM unit_stats WHERE run_id = 1 AND layer = -2 AND count_active > 0 "
                    "ORDER BY count_active DESC LIMIT 1").fetchone()[0]
    con.close()
    row = load_sae(tc).W_dec[f]
    hf = lm.model
    want = fmt(float((hf.lm_head.weight.float() @ (hf.model.norm.weight.float() * row)).max()))
    page = new_page(browser)
    page.goto(f"{url}/features?run=1&sae=2&feature={f}")
    page.locator(".nb-example").first.wait_for(timeout=120_000)
    page.locator('.nb-table:has-text("promoted")').first.wait_for(timeout=180_000)
    wait_settled(page, 120_000)
    assert page.get_by_test_id("stException").count() == 0
    body = page.inner_text("body")
    assert "A transcoder: examples are on its input site (mlp_in.3), effects from its output (mlp_out.3)." in body
    promoted = page.locator('.nb-table:has-text("promoted")').first.inner_text()
    assert want in promoted.split()
