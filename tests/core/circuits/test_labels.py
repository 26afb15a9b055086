"""Node labels of an attribution graph against independent routes: what a feature writes is its decoder row through
the final norm's weight and the unembedding, projected by hand in NumPy; its text is the stored explanation when
there is one, else the token-list label `neuroboard explain` would write, built here through the feature page's own
reads (FeatureSource.gather) and core.autointerp.prompts.token_list; links name the index's run and SAE."""

import duckdb
import numpy as np
import pytest
from helpers.circuits import topk_transcoders
from helpers.tiny import write_corpus

from core.autointerp.prompts import Window, token_list
from core.circuits.attribute import AttributionConfig, attribute
from core.circuits.graph import prune
from core.circuits.labels import Label, index_labels, node_labels, one_line, set_units, short, unembedding
from core.circuits.nodes import from_wire
from core.circuits.wire import to_wire
from core.index import explanations as X
from core.index.db import connect
from core.model.load import load_model
from core.saes.features import FeatureSource
from core.saes.transcoders import TranscoderSet, save_transcoder_set
from core.units.config import ExtractConfig
from core.units.extract import extract


@pytest.fixture(scope="module")
def built(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labels")
    corpus = write_corpus(tmp / "c.txt", n_docs=12)
    tcs = topk_transcoders(range(3), seed=5)
    path = save_transcoder_set(TranscoderSet(tcs, [0, 1, 2]), tmp / "tset")
    cfg = ExtractConfig(model=str(tiny_lm_dir), db=str(tmp / "i.duckdb"), corpus=corpus, max_tokens=10**9,
                        context_len=32, top_k=8, samples=3, hist_bins=64, batch_tokens=96, chunk_tokens=1500,
                        layers="1", sae=[str(path)], sae_map=False)
    lm = load_model(str(tiny_lm_dir))
    run_id = extract(cfg, lm=lm)
    graph = attribute(lm, tcs, "The cat sat on the mat", AttributionConfig(max_features=None), scan="tset")
    doc = to_wire(graph, prune(graph, 0.9, 0.99), slug="t", node_threshold=0.9, edge_threshold=0.99)
    return cfg.db, run_id, path, lm, tcs, doc


def hand_writes(lm, tc, feature, k):
    W_U = lm.model.lm_head.weight.detach().numpy().astype(np.float64)  # (V, d)
    g = lm.model.model.norm.weight.detach().numpy().astype(np.float64)  # RMSNorm's gain
    vals = W_U @ (g * tc.W_dec[feature].numpy().astype(np.float64))
    return list(np.argsort(-vals, kind="stable")[:k])


def explain_route(con, run_id, sae_id, path, feature):
    """The token-list label through the feature page's reads (four queries, windows as explain builds them)."""
    view = FeatureSource(str(path)).gather(con, run_id, sae_id, feature, k=10, window=12)
    vocab = dict(con.execute("SELECT token_id, display FROM vocab").fetchall())
    ws = [Window([vocab[t] for t in e.shown_ids()], e.shown_values()) for e in view.top if e.activation > 0]
    return token_list(ws)


def test_writes_are_the_decoder_row_through_the_unembedding_by_hand(built):
    db, _, path, lm, tcs, doc = built
    labels = node_labels(None, doc, str(path), unembedding(lm), k=6)
    feats = [n for n in from_wire(doc).nodes if n.kind == "feature"]
    assert len(feats) >= 5 and set(labels) == {n.id for n in feats}
    vocab = unembedding(lm).vocab
    for n in feats:
        assert labels[n.id].writes == [vocab[i] for i in hand_writes(lm, tcs[n.layer], n.index, 6)]
        assert labels[n.id].source == "" and labels[n.id].link is None  # no index given


def test_a_graph_file_carries_its_writes_and_opening_it_computes_none(built, monkeypatch):
    """`neuroboard graph` stores what each kept feature writes (metadata.info.writes, and the clerp the viewers
    show); node_labels reads them instead of multiplying by the unembedding, and they equal the hand computation."""
    from core.circuits import labels as L

    db, _, path, lm, tcs, _ = built
    graph = attribute(lm, tcs, "The cat sat on the mat", AttributionConfig(max_features=None), scan="tset")
    pruned = prune(graph, 0.9, 0.99)
    kept = [i for i in range(graph.n_nodes) if pruned.nodes[i]]
    doc = to_wire(graph, pruned, slug="t", node_threshold=0.9, edge_threshold=0.99,
                  writes=L.graph_writes(graph, kept, TranscoderSet(tcs, [0, 1, 2]), unembedding(lm), k=5))
    feats = [n for n in from_wire(doc).nodes if n.kind == "feature"]
    vocab = unembedding(lm).vocab
    stored = doc["metadata"]["info"]["writes"]
    assert set(stored) == {n.id for n in feats}
    for n in feats:
        want = [vocab[i] for i in hand_writes(lm, tcs[n.layer], n.index, 5)]
        assert stored[n.id] == want
        assert next(x for x in doc["nodes"] if x["node_id"] == n.id)["clerp"] == "writes " + ", ".join(
            repr(t) for t in want[:3])
    monkeypatch.setattr(L, "feature_writes", lambda *a, **kw: pytest.fail("computed writes the file holds"))
    got = L.node_labels(None, doc, str(path), unembedding(lm), k=5)
    assert {x: lab.writes for x, lab in got.items()} == stored


def test_explanation_first_else_the_token_list_explain_writes(built):
    db, run_id, path, lm, tcs, doc = built
    con = connect(db)
    units = set_units(con, str(path))
    assert units == {0: (run_id, 1), 1: (run_id, 2), 2: (run_id, 3)}
    feats = [n for n in from_wire(doc).nodes if n.kind == "feature"]
    first = feats[0]
    X.put(con, {"run_id": run_id, "layer": -units[first.layer][1], "unit": first.index, "status": "ok",
                "explanation": "the neuron responds to names of animals.", "explainer": "test", "scores": None})
    labels = node_labels(con, doc, str(path), unembedding(lm))
    assert labels[first.id] == Label("names of animals", "explanation", labels[first.id].writes,
                                     f"/features?run={run_id}&sae={units[first.layer][1]}&feature={first.index}")
    for n in feats:
        if (n.layer, n.index) == (first.layer, first.index):
            continue
        want = explain_route(con, run_id, units[n.layer][1], path / f"layer_{n.layer}.safetensors", n.index)
        got = labels[n.id]
        assert got.link.endswith(f"sae={units[n.layer][1]}&feature={n.index}")
        if want is None:
            assert (got.text, got.source) == ("", "")
        else:
            assert got.source in ("token class", "top tokens")
            assert got.text == one_line(short(want).removeprefix("the tokens "))
    con.close()


def test_token_class_label_when_the_top_examples_are_numbers(built):
    db, run_id, path, lm, tcs, doc = built
    con = connect(db)
    digits = con.execute("SELECT t.doc_id, t.position FROM tokens t JOIN vocab v ON v.token_id = t.token_id "
                         "WHERE t.run_id = ? AND regexp_full_match(trim(v.display), '[0-9]+') ORDER BY 1, 2 LIMIT 6",
                         [run_id]).fetchall()
    assert len(digits) >= 3
    feature = 7
    con.execute("DELETE FROM top_examples WHERE run_id = ? AND layer = -2 AND unit = ?", [run_id, feature])
    con.executemany("INSERT INTO top_examples (run_id, layer, unit, rank, doc_id, position, activation, context) "
                    "VALUES (?, -2, ?, ?, ?, ?, ?, NULL)",
                    [[run_id, feature, r, d, p, 5.0 - r] for r, (d, p) in enumerate(digits)])
    got = index_labels(con, run_id, [(-2, feature)])[(-2, feature)]
    want = explain_route(con, run_id, 2, path / "layer_1.safetensors", feature)
    assert want.startswith("the neuron responds to numbers: ")
    assert got == (short(want), "token class") and got[0].startswith("numbers: ")
    con.close()


def test_labels_are_one_line_whatever_the_tokens_or_explanations_hold(built, tmp_path):
    """A label sits in tooltips, headings and Markdown blocks, where a line break ends the block (the circuits graph
    once showed its tooltips' remains as code blocks): a token's line break is a visible \\n, an explanation's a
    space. On a copy of the index whose every token is displayed with a line break in it, so that spans of several
    tokens (joined, not quoted one by one) hold raw ones."""
    import shutil

    db, run_id, *_ = built
    copy = tmp_path / "i.duckdb"
    shutil.copy(db, copy)
    con = connect(copy)
    con.execute("UPDATE vocab SET display = display || chr(10) || 'x'")
    X.put(con, {"run_id": run_id, "layer": -2, "unit": 0, "status": "ok", "scores": None, "explainer": "test",
                "explanation": "the neuron responds to line\nbreaks\r\n  in code."})
    got = index_labels(con, run_id, [(-2, f) for f in range(16)])
    con.close()
    assert got[(-2, 0)] == ("line breaks in code", "explanation")
    shown = [text for text, source in got.values() if source != "explanation"]
    assert len(shown) >= 10 and all("\\nx" in t for t in shown)  # every label lists tokens, written visibly
    assert all("\n" not in t and "\r" not in t for t, _ in got.values())


def test_a_moved_set_is_found_by_its_layer_names(built, tmp_path):
    import shutil

    db, run_id, path, *_ = built
    moved = shutil.copytree(path, tmp_path / "tset")
    con = duckdb.connect(db, read_only=True)
    assert set_units(con, str(moved)) == {0: (run_id, 1), 1: (run_id, 2), 2: (run_id, 3)}
    con.close()
