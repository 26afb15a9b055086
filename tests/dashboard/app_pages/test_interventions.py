"""Steering and patching pages: AppTest smoke and interaction tests on a tiny model, a stored sweep, and numbers
checked against core.interventions called directly."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.cli import main

ROOT = Path(__file__).resolve().parents[3]
CLEAN, CORRUPT = "The cat sat on the mat and", "The cat sat in the mat and"


@pytest.fixture(scope="module")
def swept(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steer")
    csv = tmp / "s.csv"
    csv.write_text("text,label\nThe cat sat.,a\nThe cat ran.,a\nThe dog sat.,b\nThe dog ran.,b\n", encoding="utf-8")
    db = tmp / "i.duckdb"
    assert main(["sweep", "--model", str(tiny_lm_dir), "--direction", f"diffmeans:{csv}", "--layer", "1",
                 "--alphas=-2,0,2", "--tokens", "3", "--neutral-tokens", "64", "--prompts", str(csv), "--db",
                 str(db), "--no-progress"]) == 0
    return db, str(tiny_lm_dir), str(csv)


def page(monkeypatch, db, model, file, **params):
    from dashboard.cache import models

    models.start([model])
    models._done[model].wait()
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    monkeypatch.setenv("NEUROBOARD_MODELS", model)
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages" / file), default_timeout=120)
    for k, v in (params | {"model": model}).items():
        at.query_params[k] = v
    return at.run()


def bodies(at):
    return [m.value for m in at.markdown] + [h.proto.body for h in at.get("html")]


def test_steering_page(monkeypatch, swept):
    db, model, csv = swept
    at = page(monkeypatch, db, model, "steering.py", direction=f"diffmeans:{csv}", layer="1", alpha="3",
              prompt="The cat", tokens="4")
    assert not at.exception
    b = bodies(at)
    steer = next(x for x in b if "nb-steer" in x)
    from core.interventions.directions import from_spec
    from core.interventions.steer import steer as run_steer
    from dashboard.cache.models import model as loaded

    lm = loaded(model)
    want = run_steer(lm, "The cat", 1, from_spec(lm, f"diffmeans:{csv}", 1).vector, 3.0, 4)
    from dashboard.render.svg import esc
    from dashboard.render.tokens import visible

    assert all(esc(visible(t)) in steer for t in want.greedy_tokens[1])  # the steered continuation shown
    assert any("held-out separation" in c.value for c in at.caption)
    assert sum("nb-grid" in x for x in b) == 3 and any("anti-steerable share" in x for x in b)  # the stored sweep
    assert at.query_params["sweep"] in ("1", ["1"])


def test_ablation_mode(monkeypatch, swept):
    db, model, csv = swept
    at = page(monkeypatch, db, model, "steering.py", direction=f"diffmeans:{csv}", layer="1", mode="ablate",
              prompt="The cat", tokens="4")
    assert not at.exception
    steer = next(x for x in bodies(at) if "nb-steer" in x)
    assert "ablated" in steer and any("Directional ablation" in c.value for c in at.caption)
    assert at.query_params["mode"] in ("ablate", ["ablate"])


def test_steering_bad_input(monkeypatch, swept):
    db, model, csv = swept
    at = page(monkeypatch, db, model, "steering.py", direction="pca:nope.csv", layer="1", alpha="abc")
    assert not at.exception
    text = " ".join(w.value for w in at.warning)
    assert "nope.csv" in text and "not a number" in text


def test_patching_page_numbers(monkeypatch, swept):
    db, model, _ = swept
    at = page(monkeypatch, db, model, "patching.py", clean=CLEAN, corrupted=CORRUPT, answer=" the", foil=" a")
    assert not at.exception
    grids = [x for x in bodies(at) if "nb-grid" in x]
    assert len(grids) == 4
    from core.interventions.patching import patch_grid
    from dashboard.cache.models import model as loaded

    res = patch_grid(loaded(model), CLEAN, CORRUPT, " the", " a")
    L, p = 1, int(np.argmax(np.abs(res.resid[1])))
    assert f"layer {L}, position {p} ({res.tokens[p]!r}): {res.resid[L, p]:.3f}".replace("'", "&#x27;") in grids[0]
    at = page(monkeypatch, db, model, "patching.py", clean=CLEAN, corrupted="The cat", answer=" the", foil=" a")
    assert not at.exception and any("tokens and the corrupted one" in w.value for w in at.warning)


def test_backpatch_view(monkeypatch, swept):
    db, model, _ = swept
    at = page(monkeypatch, db, model, "patching.py", view="backpatch", prompt=CLEAN, answer=" the")
    assert not at.exception
    grid = next(x for x in bodies(at) if "nb-grid" in x)
    assert "source block (row)" in grid and grid.count('class="nb-cell"') == 9


def test_home_links_to_the_sweep_and_patching(monkeypatch, swept):
    """Home links each stored sweep to the steering page on its direction, layer and grid, and links patching."""
    db, model, csv = swept
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app.py"), default_timeout=60).run()  # Home, through navigation
    assert not at.exception
    got = {pl.proto.label.split(" ")[0]: pl.proto for pl in at.get("page_link")}
    from urllib.parse import parse_qs

    q = {k: v[0] for k, v in parse_qs(got["Steer"].query_string).items()}
    assert q == {"model": model, "direction": f"diffmeans:{csv}", "sweep": "1", "layer": "1"}
    assert got["Steer"].page == "steering" and got["Patch"].page == "patching"
    assert parse_qs(got["Patch"].query_string)["model"] == [model]
