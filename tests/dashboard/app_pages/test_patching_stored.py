"""The patching page reads stored grids (core.index.patch_grids, as the demo stores its default pair's) when the
page's model, prompts, answer and foil match, without computing any grid live; other input is computed live."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[3]
PAIR = {"clean": "The dog sat on the mat and", "corrupted": "The dog sat in the mat and", "answer": " the",
        "foil": " a"}


@pytest.fixture(scope="module")
def stored(tiny_lm_dir, tmp_path_factory):
    from core.interventions.patching import store_patch
    from core.model.load import load_model

    db = tmp_path_factory.mktemp("patch") / "i.duckdb"
    res = store_patch(str(db), str(tiny_lm_dir), PAIR, lm=load_model(str(tiny_lm_dir)))
    return db, str(tiny_lm_dir), res


@pytest.fixture
def live_calls(monkeypatch):
    """How many times the page computes patching grids live (core.interventions.patching.patch_grid)."""
    from core.interventions import patching
    from dashboard.cache import interventions as ci

    calls = {"n": 0}
    real = patching.patch_grid

    def counted(*a, **k):
        calls["n"] += 1
        return real(*a, **k)
    monkeypatch.setattr(patching, "patch_grid", counted)
    ci.patch_result.clear()
    return calls


def open_page(monkeypatch, db, model, **params):
    from dashboard.cache import models

    models.start([model])
    models._done[model].wait()
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    monkeypatch.setenv("NEUROBOARD_MODELS", model)
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/patching.py"), default_timeout=120)
    for k, v in (params | {"model": model}).items():
        at.query_params[k] = v
    return at.run()


def grids_of(at) -> list[str]:
    return [x for x in [m.value for m in at.markdown] + [h.proto.body for h in at.get("html")] if "nb-grid" in x]


def test_the_page_reads_stored_grids_without_computing(monkeypatch, stored, live_calls):
    db, model, res = stored
    at = open_page(monkeypatch, db, model, **PAIR)
    assert not at.exception and live_calls["n"] == 0
    grids = grids_of(at)
    assert len(grids) == 4
    resid = np.array(res["resid"])
    L, p = 1, int(np.argmax(np.abs(resid[1])))
    cell = f"layer {L}, position {p} ({res['tokens'][p]!r}): {resid[L, p]:.3f}".replace("'", "&#x27;")
    assert cell in grids[0]
    assert any("stored" in c.value for c in at.caption)
    # answer and foil swapped: nothing stored, computed live as before
    at = open_page(monkeypatch, db, model, **(PAIR | {"answer": " a", "foil": " the"}))
    assert not at.exception and live_calls["n"] == 1 and len(grids_of(at)) == 4


def test_stored_grids_show_before_the_model_is_loaded(monkeypatch, stored, live_calls, tmp_path):
    """A model this server has not loaded (nor could: it is not on disk) shows its stored grids at once."""
    import shutil

    from core.index import patch_grids, writer
    from core.index.db import connect

    db, _, res = stored
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    con = connect(copy)
    try:
        info = {"name": "org/absent", "source": "org/absent", "arch": "LlamaForCausalLM", "n_layers": 3,
                "d_model": 64, "d_mlp": 128, "vocab_size": 300}
        patch_grids.put(con, writer.ensure_model(con, info, []), PAIR, res, {"versions": patch_grids.package_versions()})
    finally:
        con.close()
    monkeypatch.setenv("NEUROBOARD_DB", str(copy))
    monkeypatch.setenv("NEUROBOARD_MODELS", "org/absent")
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/patching.py"), default_timeout=60)
    for k, v in (PAIR | {"model": "org/absent"}).items():
        at.query_params[k] = v
    at.run()
    from dashboard.cache import models

    assert not at.exception and live_calls["n"] == 0 and len(grids_of(at)) == 4
    assert "org/absent" not in models._done and "org/absent" not in models._requested  # no load asked for
