"""Trajectories page: AppTest smoke and interaction tests on tiny random models (local folders on the allow-list)."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny import plotly_array
from streamlit.testing.v1 import AppTest

from core.lens.logit import lens
from core.model.load import load_model
from core.model.tokens import encode_prompt as encode

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def two_tiny(tiny_lm_dir, tmp_path_factory):
    """The tiny Llama folder and a second tiny model folder (Gemma 3, different depth handling)."""
    from helpers.tiny import tiny_model, tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-gemma")
    model = tiny_model("gemma3")
    model.config.bos_token_id, model.config.pad_token_id = 0, 1
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(tiny_lm_dir), str(path)


def page(monkeypatch, tmp_path, models, **params):
    import os

    monkeypatch.setenv("NEUROBOARD_MODELS", os.pathsep.join(models))
    monkeypatch.setenv("NEUROBOARD_DB", str(tmp_path / "none.duckdb"))
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path / "cache"))  # no tuned lens here
    from dashboard.cache import models as registry

    for m in models:  # the server loads models in the background; here, before the page runs
        registry.model(m)
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/trajectories.py"), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def charts(at):
    return [c for c in at.get("plotly_chart")]


def light(at) -> list[str]:
    """The page's light charts: inline SVG and HTML-table heatmaps."""
    bodies = [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown]
    return [b for b in bodies if "<svg" in b or "nb-grid" in b]


def test_lens_view_side_by_side(monkeypatch, tmp_path, two_tiny):
    a, b = two_tiny
    at = page(monkeypatch, tmp_path, two_tiny, model=a, compare=b, prompt="The cat sat on the")
    assert not at.exception
    assert at.selectbox(key="traj_model").value == a and at.selectbox(key="traj_compare").value == b
    assert not charts(at) and len(light(at)) >= 5  # two grids, target, entropy, KL, logit-vs-tuned KL
    # the grid's top-1 at the last block and position is the lens's own answer, computed independently here
    import html

    lm = load_model(a)
    res = lens(lm, encode(lm, "The cat sat on the"))
    grid = html.unescape(light(at)[0])
    top = lm.tokenizer.decode([int(res.top_ids[-1, -1, 0])])
    assert f"block {lm.n_layers - 1}, position {len(res.ids) - 1}: {top!r}" in grid  # the top cell's hover
    assert "No tuned lens yet" in " ".join(c.value for c in at.caption)
    at.toggle(key="traj_plotly").set_value(True).run()  # interactive charts on demand
    assert not at.exception and len(charts(at)) >= 5 and at.query_params["charts"] in ("plotly", ["plotly"])
    assert top.strip() in charts(at)[0].proto.spec


@pytest.mark.slow
def test_bad_params(monkeypatch, tmp_path, two_tiny):
    from dashboard.cache import models as registry

    registry.model("smollm2-135m")  # a bad model name falls back to the first allowed model, the built-in
    at = page(monkeypatch, tmp_path, two_tiny, model="/etc/passwd", compare="none", lens="nope", view="zzz",
              pos="-999")
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "`model=/etc/passwd` is not available" in warnings and "`lens=nope`" in warnings
    assert "`view=zzz`" in warnings and "`pos=-999` is out of range" in warnings


def test_url_state(monkeypatch, tmp_path, two_tiny):
    a, _ = two_tiny
    at = page(monkeypatch, tmp_path, two_tiny, model=a, compare="none")
    at.text_input(key="traj_prompt").set_value("Paris is the capital of").run()
    assert not at.exception and at.query_params["prompt"] in ("Paris is the capital of",
                                                              ["Paris is the capital of"])
    at.text_input(key="traj_target").set_value(" the").run()
    assert not at.exception and "the" in str(at.query_params["target"])
    at.text_input(key="traj_target").set_value(" catastrophe of").run()
    assert not at.exception and "not one token" in " ".join(w.value for w in at.warning)
    at.text_input(key="traj_prompt").set_value("cat " * 400).run()  # longer than the tiny model's 256 positions
    assert not at.exception and "more than the model's 256 positions" in " ".join(w.value for w in at.warning)


def test_stream_view(monkeypatch, tmp_path, two_tiny):
    a, b = two_tiny
    at = page(monkeypatch, tmp_path, two_tiny, model=a, compare=b, view="stream", prompt="The cat sat on the mat")
    assert not at.exception
    assert len(light(at)) == 4  # two norm heatmaps, relative update, cosine
    assert sum("massive" in h.proto.body for h in at.get("html")) >= 2  # the largest activations of each model
    assert "quiet blocks" in " ".join(c.value for c in at.caption)


def test_sets_view_metrics_and_projection(monkeypatch, tmp_path, two_tiny):
    from core.data.prompt_sets import layer_representations, load_prompt_set
    from core.geometry.separation import pca_2d

    a, b = two_tiny
    at = page(monkeypatch, tmp_path, two_tiny, model=a, compare=b, view="sets", set="sentiment", layer="100")
    assert not at.exception
    svgs = light(at)
    assert len(svgs) == 5 + 2 + 1  # five metric lines, two scatters, the CKA grid
    assert svgs[-2].count("<circle") >= 242  # a point per prompt (plus the legend)
    at = page(monkeypatch, tmp_path, two_tiny, model=a, compare=b, view="sets", set="sentiment", layer="100",
              charts="plotly")
    assert len(charts(at)) == 5 + 2
    text = " ".join(c.value for c in at.caption)
    assert "242 prompts" in text and "group" in text
    # the scatter at relative depth 100% is the PCA of the last block, computed here independently
    lm = load_model(a)
    reps = layer_representations(lm, load_prompt_set("sentiment").texts)
    xy = pca_2d(reps[-1])
    fig = json.loads([c for c in charts(at) if "block 2 (PCA)" in c.proto.spec][0].proto.spec)
    labels = load_prompt_set("sentiment").labels
    for trace in fig["data"]:  # one trace per label, in the prompts' order
        rows = [i for i, lab in enumerate(labels) if lab == trace["name"]]
        np.testing.assert_allclose(plotly_array(trace["x"]), xy[rows, 0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(plotly_array(trace["y"]), xy[rows, 1], rtol=1e-4, atol=1e-5)
    at.selectbox(key="traj_set").set_value("truth").run()
    assert not at.exception and "282 prompts" in " ".join(c.value for c in at.caption)


def test_tuned_lens_switch(monkeypatch, tmp_path, two_tiny):
    """With a tuned lens in the store the page draws it, and the KL chart shows both lenses per layer."""
    import streamlit as st
    import torch

    from core.lens.store import save_tuned_lens, store_dir
    from core.lens.tuned import TunedLens

    a, _ = two_tiny
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path / "cache"))
    lm = load_model(a)
    tl = TunedLens.for_model(lm)
    with torch.no_grad():
        for p in tl.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_tuned_lens(tl, None, store_dir(lm))
    st.cache_resource.clear()  # the page caches "no tuned lens" per model across app runs
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/trajectories.py"), default_timeout=120)
    at.query_params.update({"model": a, "compare": "none", "lens": "tuned", "prompt": "The cat sat on the",
                            "charts": "plotly"})
    monkeypatch.setenv("NEUROBOARD_MODELS", a)
    at.run()
    assert not at.exception and not at.warning
    specs = [json.loads(c.proto.spec) for c in charts(at)]
    assert "(tuned lens)" in specs[0]["layout"]["title"]["text"]
    want = lens(lm, encode(lm, "The cat sat on the"), translator=tl).top_probs[:, :, 0]
    np.testing.assert_allclose(plotly_array(specs[0]["data"][0]["z"]), want, rtol=1e-4, atol=1e-6)
    both = [s for s in specs if "Logit vs tuned" in str(s["layout"].get("title"))][0]
    assert [t["name"] for t in both["data"]] == [f"{a} logit", f"{a} tuned"]
    st.cache_resource.clear()


def test_sets_view_cka(monkeypatch, tmp_path, two_tiny):
    """Two models on a set: the CKA grid's values (in its hover tips) equal the debiased CKA computed here from each
    model's own representations; the estimator switch goes into the URL."""
    import re

    from core.data.prompt_sets import layer_representations, load_prompt_set
    from core.geometry.cka import cka_matrix

    a, b = two_tiny
    at = page(monkeypatch, tmp_path, two_tiny, model=a, compare=b, view="sets", set="sentiment")
    assert not at.exception
    grid = light(at)[-1]
    texts = load_prompt_set("sentiment").texts
    want = cka_matrix(layer_representations(load_model(a), texts), layer_representations(load_model(b), texts))
    got = [float(x) for x in re.findall(r"CKA (-?[0-9.]+)", grid)]  # row by row
    np.testing.assert_allclose(got, want.ravel(), atol=1e-3)
    assert grid.count(">●</td>") == want.shape[0] and "debiased CKA" in grid
    at.radio(key="traj_cka").set_value("linear").run()
    assert not at.exception and at.query_params["cka"] in ("linear", ["linear"])
    assert "linear CKA" in light(at)[-1]
