"""The circuits page through AppTest, on a tiny index holding a stored graph whose transcoder features are indexed
(helpers.circuit_index): it opens the graph, a click shows the node's panel, pinning and a supernode survive a reload
from the URL, a saved finding reopens the subgraph (and exports, and rechecks to 0), a new graph is computed in the
background, bad URL state is one friendly line each."""

import time
from pathlib import Path

import numpy as np
import pytest
from helpers.circuit_index import PROMPT, circuit_index
from streamlit.testing.v1 import AppTest

from core.circuits import explore as ex
from core.index.db import connect
from core.index.graphs import graph_kept_array, graph_wire

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def env(tiny_lm_dir, tmp_path_factory):
    return circuit_index(tiny_lm_dir, tmp_path_factory.mktemp("circ"))


@pytest.fixture(scope="module")
def doc(env):
    con = connect(env["db"], read_only=True)
    try:
        ids, A = graph_kept_array(con, 1)
        return ex.GraphDoc(graph_wire(con, 1), ids, A)
    finally:
        con.close()


def setup(monkeypatch, env, tmp_path):
    from dashboard.cache import models

    models.start([env["model"]])
    models._done[env["model"]].wait()
    monkeypatch.setenv("NEUROBOARD_DB", env["db"])
    monkeypatch.setenv("NEUROBOARD_MODELS", env["model"])
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NEUROBOARD_FINDINGS", str(tmp_path / "f.duckdb"))


def open_page(monkeypatch, env, tmp_path, app: bool = False, **params) -> AppTest:
    setup(monkeypatch, env, tmp_path)
    at = AppTest.from_file(str(ROOT / ("dashboard/app.py" if app else "dashboard/app_pages/circuits.py")),
                           default_timeout=120)
    if app:
        at.switch_page("app_pages/circuits.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def html(at) -> str:
    return " ".join(m.value for m in at.markdown) + " ".join(h.proto.body for h in at.get("html"))


def messages(at) -> list[str]:
    return [str(m.value) for kind in ("warning", "error") for m in getattr(at, kind)]


def a_feature(doc, i: int = 0) -> str:
    feats = sorted((x for x in doc.ids if doc.kind(x) == ex.FEATURE), key=lambda x: doc.nodes[x]["influence"])
    return feats[i]


def test_opens_the_stored_graph(monkeypatch, env, doc, tmp_path):
    at = open_page(monkeypatch, env, tmp_path)
    assert not at.exception and not messages(at)
    assert at.selectbox(key="circuits_graph").value == 1 and at.query_params["graph"] == "1"
    page = html(at)
    assert "attribution graph: " + str(len(doc.ids)) + " nodes" in page and "replacement score" in page
    for x in doc.ids:  # every node links to its panel
        assert f"node={x}&amp;" in page or page.count(f"node={x}\"") or f"node={x}" in page
    target = doc.logits()[0]
    assert at.selectbox(key="circuits_logit").value == target and doc.nodes[target]["is_target_logit"]
    assert f'stroke="{"#ffd54f"}"' in page  # the strongest paths are underlaid


def test_click_a_node_shows_its_panel(monkeypatch, env, doc, tmp_path):
    at = open_page(monkeypatch, env, tmp_path, graph="1")
    f = a_feature(doc)
    at.selectbox(key="circuits_node").set_value(f).run()
    assert not at.exception and at.query_params["node"] == f
    layer, feat, _ = ex.feature_of(f)
    page = html(at)
    assert f"features?run={env['run']}&amp;sae={layer + 1}&amp;feature={feat}" in page  # SAE s = layer s - 1 here
    assert "nb-example" in page and "promoted" in page  # top examples from the index; logit effects (model loaded)
    assert at.metric[2].value == f"{doc.nodes[f]['activation']:.4g}"
    row = doc.adjacency[doc.index[f]]  # its strongest input, by the stored adjacency
    j = int(np.argmax(np.abs(row)))
    assert f"node={doc.ids[j]}" in page.split("strongest incoming")[1].split("strongest outgoing")[0]
    at2 = open_page(monkeypatch, env, tmp_path, graph="1", node=f)  # the same panel from the URL alone
    assert not at2.exception and at2.selectbox(key="circuits_node").value == f


def test_a_hostile_label_stays_text(monkeypatch, env, doc, tmp_path):
    """A label is corpus or explainer text: in the clicked node's heading its Markdown is escaped (no bold, link or
    math from it), and in the graph's tooltip it is escaped HTML on one line. On a copy of the index whose feature
    carries such an explanation."""
    import shutil

    from core.circuits.labels import set_units
    from core.index import explanations as X
    from dashboard.shell.params import md_text

    db = tmp_path / "i.duckdb"
    for tail in ("", ".wal"):  # the graph may still be in the write-ahead log of the process that stored it
        if Path(env["db"] + tail).exists():
            shutil.copy(env["db"] + tail, str(db) + tail)
    f = a_feature(doc)
    layer, feat, _ = ex.feature_of(f)
    con = connect(db)
    run_id, sae_id = set_units(con, env["set"])[layer]
    X.put(con, {"run_id": run_id, "layer": -sae_id, "unit": feat, "status": "ok", "scores": None, "explainer": "t",
                "explanation": "the neuron responds to **bold** [a](http://x.test) $x$ <b>\n\n    code."})
    con.close()
    at = open_page(monkeypatch, dict(env, db=str(db)), tmp_path, graph="1", node=f)
    assert not at.exception
    want = "**bold** [a](http://x.test) $x$ <b> code"
    assert at.subheader[0].value == md_text(want + " → writes " + at.subheader[0].value.split(" → writes ")[1])
    svg = next(m.value for m in at.markdown if "attribution graph" in m.value)
    assert "<b>" not in svg and "&lt;b&gt; code" in svg and "\n" not in svg


def pin_and_group(at, doc):
    a, b = a_feature(doc, 0), a_feature(doc, 1)
    for x in (a, b):
        at.selectbox(key="circuits_node").set_value(x).run()
        at.button(key="circuits_pin").click().run()
    assert at.query_params["pinned"] == f"{a},{b}"
    at.text_input(key="circuits_group_name").input("early: feats")
    at.multiselect(key="circuits_group_members").select(a).select(b)
    at.button(key="circuits_group_add").click().run()
    return a, b


def test_pins_and_a_supernode_survive_a_reload(monkeypatch, env, doc, tmp_path):
    at = open_page(monkeypatch, env, tmp_path, graph="1")
    a, b = pin_and_group(at, doc)
    assert not at.exception and at.query_params["groups"] == f"early feats:{a}|{b}"  # ':' is not kept in names
    url = dict(at.query_params)
    again = open_page(monkeypatch, env, tmp_path, **url)
    assert not again.exception and not messages(again)
    assert again.multiselect(key="circuits_pinned").value == [a, b]
    page = html(again)
    assert "subgraph of 1 units" in page and "early feats" in page
    again.button(key="circuits_group_del_0").click().run()
    assert "groups" not in again.query_params and again.query_params["pinned"] == f"{a},{b}"


def test_a_saved_finding_reopens_the_subgraph(monkeypatch, env, doc, tmp_path):
    from core.findings import store
    from core.findings.views import recheck
    from dashboard.export import finding_html

    at = open_page(monkeypatch, env, tmp_path, app=True, graph="1")
    a, b = pin_and_group(at, doc)
    sub_before = [m.value for m in at.markdown if "nb-subgraph" in m.value]
    at.text_input(key="finding_title").input("two early features").run()
    at.button(key="finding_save").click().run()
    assert not at.exception and any("Saved as finding 1" in s.value for s in at.success)
    (f,) = store.list_findings(tmp_path / "f.duckdb")
    assert f.page == "circuits" and f.snapshot["supernodes"] == [{"name": "early feats", "nodes": [a, b]}]
    assert {n["node_id"] for n in f.snapshot["nodes"]} == {a, b}
    A, i = doc.adjacency, doc.index
    assert all(lk["weight"] == pytest.approx(float(A[i[lk["target"]], i[lk["source"]]])) for lk in f.snapshot["links"])
    again = open_page(monkeypatch, env, tmp_path, **f.params)  # the finding's link reopens the same view
    assert [m.value for m in again.markdown if "nb-subgraph" in m.value] == sub_before
    report = finding_html(f)
    assert "early feats" in report and "nb-subgraph" in report and "replacement score" in report
    res = recheck(f)
    assert res["max_abs_diff"] == 0 and not res["mismatches"] and "error" not in res


def test_a_new_graph_is_computed_in_the_background(monkeypatch, env, doc, tmp_path):
    params = {"graph": "new", "model": env["model"], "set": env["set"], "prompt": PROMPT}
    at = open_page(monkeypatch, env, tmp_path, **params)
    assert not at.exception and at.selectbox(key="circuits_set").value == env["set"]
    at.button(key="circuits_compute").click().run()
    from dashboard.cache import circuits as cc

    job = cc.job(env["model"], env["set"], PROMPT, [])
    deadline = time.monotonic() + 120
    while job.status not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception
    assert "attribution graph: " + str(len(doc.ids)) + " nodes" in html(at)  # the same graph as `neuroboard graph`
    got = cc.computed(env["model"], env["set"], PROMPT, [])[0]
    assert got.ids == doc.ids and np.allclose(got.adjacency, doc.adjacency, atol=1e-5)


def test_interactive_charts(monkeypatch, env, tmp_path):
    at = open_page(monkeypatch, env, tmp_path, graph="1", charts="plotly")
    assert not at.exception and at.toggle(key="circuits_plotly").value and len(at.get("plotly_chart")) == 1


@pytest.mark.parametrize("params,needle", [
    ({"graph": "99"}, "graph=99"),
    ({"graph": "x"}, "not a number"),
    ({"graph": "1", "node": "5_5_5"}, "node=5_5_5"),
    ({"graph": "1", "pinned": "nope,E_1_1"}, "not in this graph"),
    ({"graph": "1", "groups": "a:;:x|y;b:nope"}, "no nodes of this graph"),
    ({"graph": "1", "logit": "0_0_0"}, "logit="),
    ({"graph": "new", "model": "/etc/passwd", "set": "/etc", "prompt": "x"}, "not available here"),
])
def test_bad_url_state_is_one_friendly_line(monkeypatch, env, tmp_path, params, needle):
    at = open_page(monkeypatch, env, tmp_path, **params)
    assert not at.exception and any(needle in m for m in messages(at)), messages(at)


def test_another_graph_forgets_the_old_ones_nodes(monkeypatch, env, doc, tmp_path):
    f = a_feature(doc)
    at = open_page(monkeypatch, env, tmp_path, graph="1", node=f, pinned=f)
    at.selectbox(key="circuits_graph").set_value("new").run()
    assert not at.exception and at.query_params["graph"] == "new"
    assert "pinned" not in at.query_params and "node" not in at.query_params


def test_home_links_to_the_stored_graphs(monkeypatch, env, tmp_path):
    setup(monkeypatch, env, tmp_path)
    at = AppTest.from_file(str(ROOT / "dashboard/app.py"), default_timeout=120).run()
    links = [p for p in at.get("page_link") if p.proto.label.startswith("Circuits:")]
    assert not at.exception and len(links) == 1
    assert links[0].proto.label.startswith(f"Circuits: {PROMPT!r} → ") and "graph=1" in links[0].proto.query_string


def test_intervention_panel_matches_graph_intervene(monkeypatch, env, doc, tmp_path, capsys):
    import json

    from core.cli import main

    f = a_feature(doc)
    at = open_page(monkeypatch, env, tmp_path, graph="1", node=f)
    assert at.selectbox(key="circuits_iv_what").value == "node"  # the clicked node
    at.selectbox(key="circuits_iv_op").set_value("scale").run()
    at.number_input(key="circuits_iv_alpha").set_value(0.5).run()
    at.button(key="circuits_iv_run").click().run()
    assert not at.exception and not messages(at)
    shown = next(m.value for m in at.markdown if "nb-effect" in m.value)
    url = {k: at.query_params[k] for k in ("iv", "iv_on", "iv_op", "iv_alpha")}
    assert url == {"iv": "1", "iv_on": "node", "iv_op": "scale", "iv_alpha": "0.5"}  # the result is in the URL
    again = open_page(monkeypatch, env, tmp_path, graph="1", node=f, iv="1", iv_on="node", iv_op="scale",
                      iv_alpha="0.5")  # the link reopens the same result
    assert next(m.value for m in again.markdown if "nb-effect" in m.value) == shown
    assert main(["graph-intervene", "--db", env["db"], "--graph", "1", "--nodes", f, "--op", "scale:0.5",
                 "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["effect"]["target"]
    row = shown.split("pre\">→ ")[1].split("</tr>")[0]
    for k in ("predicted", "linearised", "replacement", "real"):  # the CLI's numbers, in the target's row
        assert f">{float(t[k]):.4g}<" in row
    at.toggle(key="circuits_iv_table").set_value(True).run()
    assert not at.exception and any("Correlation with the prediction" in m.value for m in at.markdown)


def test_a_damaged_graph_or_another_set_is_one_line(monkeypatch, env, doc, tmp_path):
    import shutil

    from helpers.circuits import random_transcoders

    from core.model.load import load_model
    from core.saes.transcoders import TranscoderSet, save_transcoder_set

    db = tmp_path / "copy.duckdb"
    shutil.copy(env["db"], db)
    if Path(env["db"] + ".wal").exists():  # commits live in the log until it is folded (core.index.db)
        shutil.copy(env["db"] + ".wal", str(db) + ".wal")
    other = tmp_path / "other-set"
    lm = load_model(env["model"])
    save_transcoder_set(TranscoderSet(random_transcoders(lm, d_tc=48, k=6, seed=9), list(range(lm.n_layers))), other)
    con = connect(db)
    try:  # graph 1 now names a set it was not made with; graph 2 is a damaged copy
        con.execute("UPDATE graphs SET transcoders = ? WHERE graph_id = 1", [str(other)])
        con.execute("INSERT INTO graphs SELECT 2, model_id, transcoders, scan, prompt, config, scores, '{\"x\": 1}', "
                    "kept, created_at FROM graphs WHERE graph_id = 1")
    finally:
        con.close()
    at = open_page(monkeypatch, dict(env, db=str(db)), tmp_path, graph="1", node=a_feature(doc))
    assert not at.exception
    at.button(key="circuits_iv_run").click().run()  # the graph is opened for interventions when one is asked for
    assert not at.exception and any("another model or set" in m for m in messages(at)), messages(at)
    at = open_page(monkeypatch, dict(env, db=str(db)), tmp_path, graph="2")
    assert not at.exception and any("not a graph file" in m for m in messages(at)), messages(at)
