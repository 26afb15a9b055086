"""Explanations on the pages: the unit page shows the explanation, its scores beside the control's, and the prompt;
Home's search box finds units by a paraphrase and links to them; text from the explainer stays text."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.index import explanations as X
from core.index.db import connect

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def explained(tiny_lm_dir, tmp_path_factory):
    from helpers.findings import tiny_extracted

    from core.autointerp.search import store_embeddings

    db, lm, run_id = tiny_extracted(tiny_lm_dir, tmp_path_factory.mktemp("explained"))
    con = connect(db)
    scores = {"detection": {"bacc": 0.81}, "fuzzing": {"bacc": 0.66}, "control_detection": {"bacc": 0.52},
              "control_fuzzing": {"bacc": 0.49}, "embedding": {"auc": 0.77}, "control_embedding": {"auc": 0.31},
              "positives": 9, "negatives": 9, "judge": "hand"}
    X.put(con, {"run_id": run_id, "layer": 1, "unit": 5, "status": "ok", "prompt": "Example 1: <<x>>",
                "explanation": "Python keywords like *def* and <b>return</b>", "reply": "Explanation: ...",
                "explainer": "hand", "settings": {}, "scores": scores})
    X.put(con, {"run_id": run_id, "layer": -1, "unit": 3, "status": "ok", "prompt": "p",
                "explanation": "years and dates", "explainer": "hand", "settings": {}, "scores": None})
    store_embeddings(con, run_id)
    con.close()
    return db, lm


def test_unit_page_shows_explanation_and_scores(monkeypatch, explained):
    from dashboard.cache import models

    db, lm = explained
    models.model(lm.name)
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/neurons.py"), default_timeout=120)
    at.query_params.update({"run": "1", "layer": "1", "unit": "5"})
    at.run()
    assert not at.exception
    md = " ".join(m.value for m in at.markdown)
    assert "Python keywords like \\*def\\* and \\<b\\>return\\</b\\>" in md  # shown as text, not markup
    cap = " ".join(c.value for c in at.caption)
    assert "detection **0.81** (control, another unit's explanation: 0.52)" in cap and "fuzzing **0.66**" in cap
    assert any("prompt" in e.label for e in at.expander)


def test_home_search_by_paraphrase(monkeypatch, explained):
    db, _ = explained
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app.py"), default_timeout=120)
    at.query_params["q"] = "calendar years"
    at.run()
    assert not at.exception
    bodies = [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown]
    table = next(b for b in bodies if "unit: explanation" in b)
    first = table.split("<tr>")[2]
    assert "features?run=1&amp;sae=1&amp;feature=3" in first and "years and dates" in first
    assert "detection – · embedding – (control –)" in first  # not scored
    at.query_params["q"] = "keywords of Python"
    at.run()
    bodies = [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown]
    first = next(b for b in bodies if "unit: explanation" in b).split("<tr>")[2]
    assert "layer 1 unit 5" in first and "detection 0.81 · embedding 0.77 (control 0.31)" in first


def test_units_table_has_scores_and_filters_by_them(monkeypatch, explained):
    from dashboard.cache import models

    db, lm = explained
    models.model(lm.name)
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/neurons.py"), default_timeout=120)
    at.query_params.update({"run": "1", "layer": "1", "unit": "5", "find": "1"})
    at.run()
    table = next(d.value for d in at.dataframe if "detection" in d.value.columns)
    assert len(table) == 128 and table.set_index("unit").loc[5, "detection"] == pytest.approx(0.81)
    at.slider(key="neuron_min_detection").set_value(0.8).run()
    table = next(d.value for d in at.dataframe if "detection" in d.value.columns)
    assert list(table["unit"]) == [5] and not at.exception
