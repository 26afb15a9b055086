"""Neuron page: AppTest smoke and interaction tests on a real (tiny-model) index."""

from pathlib import Path

import numpy as np
import pytest
from helpers.tiny import write_corpus
from streamlit.testing.v1 import AppTest

from core.units.config import ExtractConfig
from core.units.extract import extract

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def unit_index(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("neurons")
    corpus = tmp / "c.txt"
    write_corpus(corpus, n_docs=8)
    with corpus.open("a") as f:
        f.write("\n\nA document with <script>alert(1)</script> and <b>x</b> in it.\n")
    db = tmp / "i.duckdb"
    extract(ExtractConfig(model=str(tiny_lm_dir), db=str(db), corpus=str(corpus), context_len=32))
    return db


def page(monkeypatch, db, **params):
    from core.index.db import connect
    from dashboard.cache import models

    con = connect(db, read_only=True)
    names = [r[0] for r in con.execute("SELECT name FROM models").fetchall()]
    con.close()
    for name in names:  # the server loads models in the background; here, before the page runs
        models.model(name)
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/neurons.py"), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_smoke_shows_unit(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="1", layer="1", unit="5")
    assert not at.exception
    assert at.selectbox(key="neuron_layer").value == 1 and at.number_input(key="neuron_unit").value == 5
    assert [m.label for m in at.metric][:4] == ["Layer / unit", "Density", "Mean", "Max"]
    assert any("interval" in e.label for e in at.expander)
    bodies = [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown]
    hist = next(b for b in bodies if "<svg" in b)
    assert "tokens" in hist and "<title>" in hist  # the histogram, drawn as inline SVG with hover text
    assert any(">promoted<" in b and ">suppressed<" in b for b in bodies)  # logit effects, as HTML tables
    assert not at.get("plotly_chart") and not at.dataframe  # the light page: no chart or grid libraries
    assert "Values from the index." in " ".join(c.value for c in at.caption)
    at.toggle(key="neuron_plotly").set_value(True).run()  # interactive charts on demand
    assert not at.exception and len(at.get("plotly_chart")) == 2 and len(at.dataframe) == 2
    assert qp(at, "charts") == "plotly"


def test_bad_params_fall_back(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="9", layer="x", unit="100000")
    assert not at.exception
    texts = " ".join(w.value for w in at.warning)
    assert "`run=9`" in texts and "`layer=x` is not a number" in texts and "`unit=100000` is out of range" in texts
    assert at.number_input(key="neuron_unit").value == 0


def test_xss_document_shows_as_text(monkeypatch, unit_index):
    """Token text is escaped in every example block: no raw <script> or <b> reaches the page's HTML."""
    import html

    from core.index.db import connect

    con = connect(unit_index, read_only=True)
    doc = con.execute("SELECT doc_id FROM documents WHERE text LIKE '%<script>%'").fetchall()[0][0]
    layer, unit = con.execute("SELECT layer, unit FROM top_examples WHERE doc_id = ? AND rank = 0 LIMIT 1",
                              [doc]).fetchall()[0]
    con.close()
    at = page(monkeypatch, unit_index, run="1", layer=str(layer), unit=str(unit), ctx="16")
    assert not at.exception
    blocks = [h.proto.body for h in at.get("html")]
    joined = "".join(blocks)
    assert "&lt;" in joined and "<script" not in joined and "<b>" not in joined
    assert html.unescape(joined).count("<") > joined.count("<")


def test_changing_unit_updates_url(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="1", layer="0", unit="0")
    at.number_input(key="neuron_unit").set_value(7).run()
    assert not at.exception
    assert at.query_params["unit"] == ["7"] or at.query_params["unit"] == "7"
    assert at.metric[0].value == "0 / 7"


def qp(at, name):
    v = at.query_params[name]
    return v[0] if isinstance(v, list) else v


def test_url_change_wins_over_widget_state(monkeypatch, unit_index):
    """A rewritten URL (pasted link, button) moves the widgets; a moved widget rewrites the URL."""
    at = page(monkeypatch, unit_index, run="1", layer="0", unit="3", ctx="5")
    at.query_params["unit"] = "9"
    at.query_params["layer"] = "2"
    at.run()
    assert not at.exception
    assert at.number_input(key="neuron_unit").value == 9 and at.selectbox(key="neuron_layer").value == 2
    assert at.metric[0].value == "2 / 9"
    at.slider(key="neuron_ctx").set_value(7).run()
    assert qp(at, "ctx") == "7" and qp(at, "unit") == "9" and qp(at, "layer") == "2"


def test_sidebar_chooses_model_and_run(monkeypatch, unit_index, tiny_lm_dir, tmp_path):
    """Two runs of two 'models' in one index: the sidebar switches between them and the URL follows."""
    import shutil

    db = tmp_path / "two.duckdb"
    shutil.copy(unit_index, db)
    corpus = write_corpus(tmp_path / "c2.txt", n_docs=3)
    extract(ExtractConfig(model=str(tiny_lm_dir), db=str(db), corpus=str(corpus), context_len=16, layers="1"))
    at = page(monkeypatch, db, run="1")
    runs = at.sidebar.selectbox[-1]
    assert runs.label == "Run" and runs.options and len(runs.options) == 2
    runs.set_value(2).run()
    assert not at.exception
    assert qp(at, "run") == "2" and at.selectbox(key="neuron_layer").options == ["1"]

def test_find_neurons_table_search_and_random(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="1", layer="1", unit="0")
    assert not at.exception and not any("dominance" in d.value.columns for d in at.dataframe)  # off: not computed
    at.toggle(key="neuron_find").set_value(True).run()
    assert qp(at, "find") == "1"
    frames = [d.value for d in at.dataframe]
    table = next(f for f in frames if "dominance" in f.columns)
    assert len(table) == 128 and {"density", "max", "dominance", "token"} <= set(table.columns)
    token = table.sort_values("dominance", ascending=False).iloc[0]["token"]
    at.text_input(key="neuron_search").input(token).run()
    assert not at.exception
    hits = next(d.value for d in at.dataframe if "share" in d.value.columns)
    assert len(hits) >= 1 and (hits["layer"] >= 0).all()
    at.button(key="neuron_random").click().run()
    assert not at.exception
    chosen = at.number_input(key="neuron_unit").value
    assert 0 <= chosen < 128 and qp(at, "unit") == str(chosen) and at.metric[0].value == f"1 / {chosen}"
    assert chosen in set(table[table["dominance"] >= 0.5]["unit"]) or not (table["dominance"] >= 0.5).any()


def test_run_without_stored_contexts_recomputes_live(monkeypatch, tiny_lm_dir, tmp_path):
    """Runs made before schema 2 (or with ctx_examples=0) have no stored context: values come from a live pass,
    and both routes agree token by token."""
    import re

    corpus = write_corpus(tmp_path / "c.txt", n_docs=4)
    ref, old = tmp_path / "ref.duckdb", tmp_path / "old.duckdb"
    extract(ExtractConfig(model=str(tiny_lm_dir), db=str(ref), corpus=str(corpus), context_len=32, layers="1"))
    extract(ExtractConfig(model=str(tiny_lm_dir), db=str(old), corpus=str(corpus), context_len=32, layers="1",
                          ctx_examples=0))
    shown = {}
    for name, db in (("ref", ref), ("old", old)):
        at = page(monkeypatch, db, run="1", layer="1", unit="3", ctx="6")
        assert not at.exception
        caps = " ".join(c.value for c in at.caption)
        assert ("recomputed live" in caps) == (name == "old")
        block = next(h.proto.body for h in at.get("html") if "nb-example" in h.proto.body)
        shown[name] = [float(x) for x in re.findall(r"title=\"[^\"]*: (-?[\d.e+-]+)\">", block)]
    assert len(shown["ref"]) > 20
    np.testing.assert_allclose(shown["old"], shown["ref"], rtol=1e-3, atol=1e-4)


def test_custom_text_shows_the_units_values(monkeypatch, unit_index, tiny_lm_dir):
    """Typing text re-runs the custom-text fragment: every token with the unit's activation, as a plain pass gives
    it, and the text in the URL."""
    import re

    from helpers.raw import neurons

    from core.model.load import load_model

    at = page(monkeypatch, unit_index, run="1", layer="2", unit="11")
    at.text_area(key="neuron_text").set_value("Paris is the capital of France.").run()
    assert not at.exception and "Paris is the capital" in qp(at, "text")
    block = [h.proto.body for h in at.get("html") if "over" in h.proto.body and "nb-example" in h.proto.body][-1]
    shown = [float(x) for x in re.findall(r"title=\"[^\"]*: (-?[\d.e+-]+)\">", block)]
    lm = load_model(str(tiny_lm_dir))
    want = neurons(lm, lm.tokenizer("Paris is the capital of France.")["input_ids"], 2)[:, 11].numpy()
    np.testing.assert_allclose(shown, want, rtol=1e-3, atol=1e-4)


def test_compare_with_another_layer(monkeypatch, unit_index):
    """cmp=1:2: this neuron's best matches in layer 2 by activation correlation (equal to core.units.match on the
    run's corpus), as links, and the chosen match's page beside it (two sets of metrics)."""
    import re

    from core.index.db import connect
    from core.index.queries import get_run
    from core.units.match import MatchQuery, best_matches
    from dashboard.app_pages.unit_compare import MATCH_TOKENS

    at = page(monkeypatch, unit_index, run="1", layer="1", unit="5", cmp="1:2")
    assert not at.exception
    con = connect(unit_index, read_only=True)
    run = get_run(con, 1)
    con.close()
    want = best_matches(MatchQuery(a="neurons.1", b="neurons.2", model=[run.model], corpus=run.corpus,
                                   tokens=MATCH_TOKENS, context_len=32, one_to_one=False), 5, k=8)
    bodies = [m.value for m in at.markdown] + [h.proto.body for h in at.get("html")]
    table = next(b for b in bodies if "best matches" in b)
    got = [(int(u), float(c)) for u, c in re.findall(r">unit (\d+)</a></td><td[^>]*>(-?[0-9.]+)<", table)]
    assert [u for u, _ in got] == [u for u, _ in want]
    np.testing.assert_allclose([c for _, c in got], [c for _, c in want], atol=1e-3)
    labels = [m.label for m in at.metric]
    assert labels.count("Layer / unit") == 2 and any(f"2 / {want[0][0]}" == m.value for m in at.metric)
    at.query_params["cmp_unit"] = str(want[2][0])
    at.run()
    assert not at.exception and any(f"2 / {want[2][0]}" == m.value for m in at.metric)
