"""Heads page: AppTest smoke and interaction tests on an index scored by `neuroboard heads` (tiny models)."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny import plotly_array, tiny_model, tiny_tokenizer
from streamlit.testing.v1 import AppTest

from core.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def scored(tiny_lm_dir, tmp_path_factory):
    """An index with head scores for two tiny models (Llama with GQA, Gemma 3)."""
    tmp = tmp_path_factory.mktemp("heads")
    gemma = tmp / "tiny-gemma"
    m = tiny_model("gemma3")
    m.config.bos_token_id, m.config.pad_token_id = 0, 1
    m.save_pretrained(gemma)
    tiny_tokenizer().save_pretrained(gemma)
    db = tmp / "h.duckdb"
    for model in (str(tiny_lm_dir), str(gemma)):
        assert main(["heads", "--model", model, "--db", str(db), "--seqs", "2", "--half-len", "8",
                     "--ablation-tokens", "64", "--no-progress"]) == 0
    return db, str(tiny_lm_dir), str(gemma)


def page(monkeypatch, db, **params):
    from core.index.db import connect
    from dashboard.cache import models

    con = connect(db, read_only=True)
    for (name,) in con.execute("SELECT name FROM models").fetchall():  # the server preloads them; here, now
        models.start([name])
        models._done[name].wait()
    con.close()
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/heads.py"), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_overview_and_head_panel(monkeypatch, scored):
    from core.index.db import connect
    from core.index.heads import head_score_arrays, head_sets

    db, llama, gemma = scored
    at = page(monkeypatch, db, model=llama, layer="1", head="2")
    assert not at.exception
    con = connect(db, read_only=True)
    hs = {s.model: s for s in head_sets(con)}[llama]
    arrays = head_score_arrays(con, hs.model_id)
    con.close()
    assert (hs.n_layers, hs.n_heads, hs.n_kv_heads) == (3, 4, 2)
    bodies = [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown]
    maps = [b for b in bodies if "nb-grid" in b]
    assert len(maps) == len(arrays) and not at.get("plotly_chart")  # a linked table per role, no chart library
    assert sum("<svg" in b for b in bodies) == 2  # the pattern on the text and on the probe
    import html
    import re
    induction = next(html.unescape(m) for m in maps if ">induction<" in m)
    assert f"layer 1, head 2: {arrays['induction'][1, 2]:.3f}" in induction
    hrefs = re.findall(r'href="([^"]+)"', induction)
    assert len(hrefs) == 3 * 4 and "layer=2&head=3" in hrefs[-1] and "model=" in hrefs[-1]  # a cell opens its head
    assert "outline:2px solid" in induction  # the selected head is outlined
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["induction"] == f"{arrays['induction'][1, 2]:.3f}"
    assert "zero-ablation Δloss" in metrics and "OV copying" in metrics
    top = next(b for b in bodies if ">rank<" in b)
    assert top.count("<tr>") == 1 + 5 * len(arrays)  # a header, then the top 5 heads per role
    at.toggle(key="heads_plotly").set_value(True).run()  # interactive: clickable Plotly maps
    assert not at.exception and len(at.get("plotly_chart")) == len(arrays) + 2


def test_compare_and_bad_params(monkeypatch, scored):
    db, llama, gemma = scored
    at = page(monkeypatch, db, model=llama, compare=gemma, layer="99", head="x")
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "`layer=99` is out of range" in warnings and "`head=x` is not a number" in warnings
    assert at.selectbox(key="heads_compare").value == gemma
    at = page(monkeypatch, db, model="/etc/passwd")
    assert not at.exception and "`model=/etc/passwd` is not available here" in " ".join(w.value for w in at.warning)


def test_prompt_changes_pattern(monkeypatch, scored):
    from core.model.load import load_model
    from core.units.live import attention_pattern

    db, llama, _ = scored
    at = page(monkeypatch, db, model=llama, layer="0", head="1", charts="plotly")
    at.text_area(key="heads_prompt").set_value("Alice met Bob. Alice met Bob.").run()
    assert not at.exception and "Alice met Bob" in str(at.query_params["prompt"])
    lm = load_model(llama, attn="eager")
    ids = lm.tokenizer("Alice met Bob. Alice met Bob.")["input_ids"]
    want = attention_pattern(lm, 0, ids)[1]
    spec = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "on your text" in c.proto.spec][0]
    np.testing.assert_allclose(plotly_array(spec["data"][0]["z"]), want, rtol=1e-5, atol=1e-6)


def test_no_scores_is_friendly(monkeypatch, tiny_index):
    at = page(monkeypatch, tiny_index)
    assert not at.exception and "neuroboard heads" in " ".join(i.value for i in at.info)
