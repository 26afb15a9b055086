"""The graph file against the wire format as circuit-tracer 0.5.0 documents it (frontend/graph_models.py,
create_graph_files): ids, types, fields and links written out by hand here; and bad files are one line."""

import json

import pytest
import torch
from helpers.circuits import random_graph

from core.circuits.graph import prune
from core.circuits.prompt import GraphError
from core.circuits.wire import VIEWER_KEYS, add_to_viewer_index, check_wire, read_wire, to_wire, write_wire

NODE_FIELDS = ["node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit", "run_idx",
               "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation"]


@pytest.mark.parametrize("seed", [1, 5])
@pytest.mark.parametrize("offset", [0, 100])
def test_file_by_hand(seed, offset):
    g = random_graph(seed)
    g.active[:, 2] += offset  # offset 0: layer-0 feature ids meet 0.5.0's error ids; 100: they cannot
    p = prune(g, 0.8, 0.98)
    doc = to_wire(g, p, slug="s", node_threshold=0.8, edge_threshold=0.98, scores=(0.5, 0.7))
    assert doc["qParams"] == {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    meta = doc["metadata"]
    assert (meta["slug"], meta["node_threshold"], meta["schema_version"], meta["prompt_tokens"]) == (
        "s", 0.8, 1, ["t"] * 4)
    assert meta["pruning_settings"] == {"node_threshold": 0.8, "edge_threshold": 0.98}
    by_id = {n["node_id"]: n for n in doc["nodes"]}
    T, L, F = g.n_pos, g.n_layers, g.n_features
    kept_feats = {"_".join(map(str, (lay, f, pos))) for i, (lay, pos, f) in enumerate(g.active.tolist()) if p.nodes[i]}
    kept_errs = {f"0_{lay}_{pos}" for lay in range(L) for pos in range(T) if p.nodes[F + lay * T + pos]}
    new_ids = bool(kept_feats & kept_errs)  # 0.5.0's error ids would collide: 0.5.1's form for all
    want = {}
    for i in range(g.n_nodes):
        if not p.nodes[i]:
            continue
        if i < F:
            lay, pos, f = g.active[i].tolist()
            want[i] = {"node_id": f"{lay}_{f}_{pos}", "feature": (lay + f) * (lay + f + 1) // 2 + f, "layer": str(lay),
                       "ctx_idx": pos, "feature_type": "cross layer transcoder", "jsNodeId": f"{lay}_{f}-0",
                       "activation": 1.0}
        elif i < F + L * T:
            lay, pos = divmod(i - F, T)
            want[i] = {"node_id": f"{lay}_-1_{pos}" if new_ids else f"0_{lay}_{pos}", "feature": -1, "layer": str(lay),
                       "ctx_idx": pos, "feature_type": "mlp reconstruction error",
                       "jsNodeId": f"{lay}_-1-{pos}" if new_ids else f"{lay}_{pos}-0", "activation": None}
        elif i < F + (L + 1) * T:
            pos = i - F - L * T
            want[i] = {"node_id": f"E_{g.tokens[pos]}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos,
                       "feature_type": "embedding", "jsNodeId": f"E_{g.tokens[pos]}-{pos}", "activation": None}
        else:
            k = i - F - (L + 1) * T
            want[i] = {"node_id": f"{L + 1}_{g.logit_ids[k]}_{T - 1}", "feature": g.logit_ids[k], "layer": str(L + 1),
                       "ctx_idx": T - 1, "feature_type": "logit", "is_target_logit": k == 0,
                       "token_prob": pytest.approx(float(g.logit_probs[k])), "influence": None,
                       "clerp": f'Output "l" (p={float(g.logit_probs[k]):.3f})', "jsNodeId": f"L_{g.logit_ids[k]}-{T - 1}"}
    linked = {link["source"] for link in doc["links"]} | {link["target"] for link in doc["links"]}
    for i, w in want.items():
        if w["node_id"] not in linked and w["feature_type"] not in ("embedding", "logit"):
            assert w["node_id"] not in by_id  # a kept node without links is left out, as circuit-tracer does
            continue
        n = by_id[w["node_id"]]
        assert list(n) == NODE_FIELDS
        assert {k: n[k] for k in w} == w
        if w["feature_type"] != "logit":
            assert n["influence"] == pytest.approx(float(p.cumulative[i]))
    index = {w["node_id"]: i for i, w in want.items()}
    pairs = [(t, s) for t, s in zip(*p.edges.nonzero(as_tuple=True), strict=True)]
    assert [(link["target"], link["source"]) for link in doc["links"]] == [(want[int(t)]["node_id"], want[int(s)]["node_id"])
                                                                          for t, s in pairs]
    for link in doc["links"]:
        assert link["weight"] == pytest.approx(float(g.adjacency[index[link["target"]], index[link["source"]]]))
    assert len(doc["links"]) > 10
    assert new_ids == (offset == 0)  # both id forms are exercised


def test_error_ids_switch_when_they_would_collide():
    g = random_graph(2)
    g.active[:, 0] = 0  # every feature in layer 0 ...
    g.active[0] = torch.tensor([0, 1, 1])  # ... feature 1 at position 1 is "0_1_1", the id of layer 1's error at 1
    g.adjacency[:, g.error_index(1, 1)] = 0
    g.adjacency[-1, g.error_index(1, 1)] = 50.0  # both kept
    g.adjacency[-1, 0] = 50.0
    p = prune(g, 0.99, 0.999)
    doc = to_wire(g, p, slug="s", node_threshold=0.99, edge_threshold=0.999)
    ids = [n["node_id"] for n in doc["nodes"]]
    assert "0_1_1" in ids and "1_-1_1" in ids and len(ids) == len(set(ids))


@pytest.mark.parametrize("doc,why", [
    ([], "expected an object"),
    ({"metadata": {}, "nodes": [], "links": []}, "prompt_tokens"),
    ({"metadata": {"prompt_tokens": []}, "nodes": [{"node_id": "a"}], "links": []}, "lacks"),
    ({"metadata": {"prompt_tokens": []}, "nodes": [{"node_id": "a", "feature_type": "x", "layer": "0", "ctx_idx": 0}],
      "links": []}, "unknown feature_type"),
    ({"metadata": {"prompt_tokens": []}, "nodes": [], "links": [{"source": "a", "target": "b", "weight": 1}]},
     "not in the file"),
])
def test_bad_documents_are_one_line(doc, why):
    with pytest.raises(GraphError, match=why) as e:
        check_wire(doc)
    assert "\n" not in str(e.value)


def test_read_back_and_corrupt_files(tmp_path):
    g = random_graph(4)
    doc = to_wire(g, prune(g), slug="s", node_threshold=0.8, edge_threshold=0.98)
    path = write_wire(doc, tmp_path / "g.json")
    assert read_wire(path) == json.loads(json.dumps(doc))
    (tmp_path / "bad.json").write_text('{"metadata": ')
    for bad, why in ((tmp_path / "bad.json", "not readable JSON"), (tmp_path / "none.json", "no graph file")):
        with pytest.raises(GraphError, match=why):
            read_wire(bad)


def test_viewer_index_lists_each_slug_once_and_keeps_what_it_cannot_read(tmp_path):
    """graph-metadata.json as circuit-tracer's add_graph_metadata writes it: {"graphs": [metadata]}, one entry per
    slug (a graph written again replaces its entry), other graphs kept; a file that is not such a list is left as
    it is."""
    g = random_graph(4)
    a = to_wire(g, prune(g), slug="a", node_threshold=0.8, edge_threshold=0.98)
    b = to_wire(g, prune(g), slug="b", node_threshold=0.5, edge_threshold=0.98)
    path = add_to_viewer_index(tmp_path, a["metadata"])
    add_to_viewer_index(tmp_path, b["metadata"])
    add_to_viewer_index(tmp_path, a["metadata"] | {"prompt": "again"})
    graphs = json.loads(path.read_text())["graphs"]
    assert [x["slug"] for x in graphs] == ["b", "a"] and graphs[1]["prompt"] == "again"
    assert set(graphs[0]) == set(VIEWER_KEYS) and graphs[0]["node_threshold"] == 0.5
    assert graphs[0]["prompt_tokens"] == b["metadata"]["prompt_tokens"]
    for text in ('{"graphs": ', '{"graphs": [1]}', "[]"):
        path.write_text(text)
        assert add_to_viewer_index(tmp_path, a["metadata"]) is None and path.read_text() == text
