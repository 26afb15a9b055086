"""SAE feature page: AppTest smoke and interaction tests on a real (tiny-model) index with a trained SAE's features."""

from pathlib import Path

import pytest
from helpers.tiny import write_corpus
from streamlit.testing.v1 import AppTest

from core.saes.train import TrainSAEConfig, train_sae
from core.units.config import ExtractConfig
from core.units.extract import extract

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def feature_index(tiny_lm_dir, tmp_path_factory):
    from core.model.load import load_model

    tmp = tmp_path_factory.mktemp("features")
    corpus = tmp / "c.txt"
    write_corpus(corpus, n_docs=30)
    with corpus.open("a") as f:
        f.write("\n\nA document with <script>alert(1)</script> and <b>x</b> in it.\n")
    lm = load_model(str(tiny_lm_dir))
    sae_dir = tmp / "sae"
    train_sae(TrainSAEConfig(model=str(tiny_lm_dir), site="resid_post.1", out=str(sae_dir), corpus=str(corpus),
                             tokens=3000, latents=64, k=4, batch=256, buffer_tokens=1024, context_len=32,
                             eval_tokens=1000), lm=lm)
    # SAE 2: a semi-NMF of layer 1's MLP activations; SAE 3: a transcoder mlp_in.1 -> mlp_out.1
    train_sae(TrainSAEConfig(model=str(tiny_lm_dir), site="neurons.1", out=str(tmp / "snmf"), corpus=str(corpus),
                             tokens=2000, latents=16, method="snmf", snmf_iters=20, context_len=32,
                             eval_tokens=500), lm=lm)
    train_sae(TrainSAEConfig(model=str(tiny_lm_dir), site="mlp_in.1", out=str(tmp / "tc"), corpus=str(corpus),
                             tokens=2048, latents=32, k=4, batch=256, buffer_tokens=1024, context_len=32,
                             transcode=True, eval_tokens=500), lm=lm)
    db = tmp / "i.duckdb"
    extract(ExtractConfig(model=str(tiny_lm_dir), db=str(db), corpus=str(corpus), context_len=32, layers="0",
                          sae=[str(sae_dir), str(tmp / "snmf"), str(tmp / "tc")]), lm=lm)
    return db


def page(monkeypatch, db, **params):
    from core.index.db import connect
    from dashboard.cache import models

    con = connect(db, read_only=True)
    names = [r[0] for r in con.execute("SELECT name FROM models").fetchall()]
    con.close()
    for name in names:
        models.model(name)
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/features.py"), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def bodies(at):
    return [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown]


def test_smoke_shows_feature(monkeypatch, feature_index):
    at = page(monkeypatch, feature_index, run="1", sae="1", feature="3")
    assert not at.exception
    assert [m.label for m in at.metric][:2] == ["SAE / feature", "Density"]
    b = bodies(at)
    assert any("FVU" in x and "CE recovered" in x and "held-out tokens" in x for x in b)  # honest quality numbers
    assert any("non-zero activations" in x for x in b)  # the histogram over non-zero activations, density in title
    assert any("Nearest features" == s.value for s in at.subheader)
    near = next(x for x in b if "cosine" in x)
    assert near.count("features?") == 10 and "feature=3&" not in near  # ten other features, as links
    assert any(">promoted<" in x for x in b)
    assert not at.get("plotly_chart")


def test_map_on_demand_and_click(monkeypatch, feature_index):
    at = page(monkeypatch, feature_index, run="1", sae="1", feature="0", map="1")
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 1 and "scattergl" in charts[0].proto.spec


def test_features_on_my_text_links(monkeypatch, feature_index):
    at = page(monkeypatch, feature_index, run="1", sae="1", feature="0",
              text="The cat <b>sat</b> on the mat.")
    assert not at.exception
    table = next(x for x in bodies(at) if "nb-featext" in x)
    assert "&lt;" in table and "<b>" not in table  # token text escaped
    assert "features?" in table and "text=" in table


def test_bad_params(monkeypatch, feature_index):
    at = page(monkeypatch, feature_index, run="1", sae="9", feature="99999")
    assert not at.exception
    assert len(at.warning) >= 1


def top_effect_by_hand(db, sae_dir: str, feature: int, through_down: int | None) -> str:
    """The largest logit effect of a feature's output direction, computed here from the HF modules: the decoder row
    (through layer L's down projection for a factor over neurons) times the final norm's weight, times the
    unembedding; formatted as the page's tables format numbers."""

    from core.index.db import connect
    from core.saes.formats import load_sae
    from dashboard.cache import models
    from dashboard.render.svg import fmt

    con = connect(db, read_only=True)
    name = con.execute("SELECT name FROM models").fetchone()[0]
    con.close()
    hf = models.model(name).model
    row = load_sae(sae_dir).W_dec[feature]
    if through_down is not None:
        row = hf.model.layers[through_down].mlp.down_proj.weight.float() @ row  # (d_model, d_mlp) @ (d_mlp,)
    vals = hf.lm_head.weight.float() @ (hf.model.norm.weight.float() * row)
    return fmt(float(vals.max()))


@pytest.mark.parametrize("sae, sub, through_down, words", [
    ("2", "snmf", 1, ("semi-NMF", "non-negative least-squares code", "down projection")),
    ("3", "tc", None, ("transcoder", "examples are on its input site", "mlp_out.1"))])
def test_snmf_and_transcoder_pages(monkeypatch, feature_index, sae, sub, through_down, words):
    """A semi-NMF's factor and a transcoder's feature open like SAE features; their logit effects are the output
    side's (the transcoder's decoder row at mlp_out.1; the factor through the down projection), checked by hand."""
    at = page(monkeypatch, feature_index, run="1", sae=sae, feature="2", text="The cat sat on the mat.")
    assert not at.exception
    b = bodies(at)
    captions = " ".join([c.value for c in at.caption] + b)
    assert all(w in captions or w in at.selectbox[0].format_func(int(sae)) for w in words)
    want = top_effect_by_hand(feature_index, str(feature_index.parent / sub), 2, through_down)
    promoted = next(x for x in b if ">promoted<" in x)
    assert f">{want}<" in promoted  # the page's largest effect, as computed by hand
    assert any("nb-featext" in x for x in b)  # features on my text work for it too


def test_compare_with_another_sae(monkeypatch, feature_index):
    """cmp with the same SAE: a live feature's best match is itself at correlation 1, shown beside it."""
    import re

    at = page(monkeypatch, feature_index, run="1", sae="1", feature="3")
    live = next(int(f) for f in range(64) if page(monkeypatch, feature_index, run="1", sae="1",
                                                  feature=str(f)).metric[1].value != "0.00%")
    at = page(monkeypatch, feature_index, run="1", sae="1", feature=str(live), cmp="1:sae1")
    assert not at.exception
    table = next(x for x in bodies(at) if "best matches" in x)
    first = re.search(r">unit (\d+)</a></td><td[^>]*>(-?[0-9.]+)<", table)
    assert int(first.group(1)) == live and float(first.group(2)) > 0.999
    assert [m.label for m in at.metric].count("SAE / feature") == 2
