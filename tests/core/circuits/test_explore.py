"""core.circuits.explore: strongest paths against every path enumerated by hand, edges, URL state and the
subgraph's summed links."""

import itertools

import numpy as np
import pytest

from core.circuits import explore as ex
from core.circuits.wire import FEATURE_TYPES


def small_doc(seed: int = 0, layers: int = 2, T: int = 3) -> ex.GraphDoc:
    """Tokens, two features per layer at each position > 0, an error per layer and position, two logits; direct
    effects only from lower rows to higher rows (a DAG), random signs."""
    rng = np.random.default_rng(seed)
    nodes = [{"node_id": f"E_{10 + p}_{p}", "feature_type": "embedding", "layer": "E", "ctx_idx": p, "clerp": ""}
             for p in range(T)]
    for lay, p, f in itertools.product(range(layers), range(1, T), range(2)):
        nodes.append({"node_id": f"{lay}_{f + 5 * lay}_{p}", "feature_type": "cross layer transcoder",
                      "layer": str(lay), "ctx_idx": p, "clerp": "", "influence": 0.5, "activation": 1.0})
    nodes += [{"node_id": f"0_{lay}_{p}", "feature_type": "mlp reconstruction error", "layer": str(lay),
               "ctx_idx": p, "clerp": ""} for lay in range(layers) for p in range(1, T)]
    nodes += [{"node_id": f"{layers + 1}_{v}_{T - 1}", "feature_type": "logit", "layer": str(layers + 1),
               "ctx_idx": T - 1, "clerp": f"Output {v}", "token_prob": pr, "is_target_logit": v == 7}
              for v, pr in ((9, 0.5), (7, 0.3))]
    doc0 = ex.GraphDoc({"metadata": {"prompt_tokens": [f"t{p}" for p in range(T)], "info": {"n_layers": layers}},
                        "nodes": nodes, "links": []}, [n["node_id"] for n in nodes],
                       np.zeros((len(nodes), len(nodes)), np.float32))
    rows = [ex.row_of(doc0, n["node_id"]) for n in nodes]
    A = np.zeros((len(nodes), len(nodes)), np.float32)
    for t, s in itertools.product(range(len(nodes)), repeat=2):
        kind = doc0.kind(nodes[t]["node_id"])
        if kind in ("feature", "logit") and rows[s] < rows[t] and doc0.kind(nodes[s]["node_id"]) != "logit":
            if rng.random() < 0.6:
                A[t, s] = rng.normal() * rng.exponential()
    return ex.GraphDoc(doc0.wire, doc0.ids, A)


def all_paths(doc: ex.GraphDoc, target: str) -> list[tuple[float, list[str]]]:
    """Every path into `target` back to a node without inputs, with its product of normalised weights."""
    A = np.abs(doc.adjacency.astype(np.float64))
    out = []

    def walk(path: list[int], strength: float) -> None:
        row = A[path[-1]]
        if row.sum() == 0:
            out.append((strength, [doc.ids[i] for i in reversed(path)]))
            return
        for s in np.flatnonzero(row):
            walk(path + [int(s)], strength * row[s] / row.sum())
    walk([doc.index[target]], 1.0)
    return sorted(out, key=lambda x: -x[0])


def test_kinds_are_the_wire_formats():
    assert {v: k for k, v in ex.KINDS.items()} == FEATURE_TYPES


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_paths_are_the_strongest_of_all_paths(seed):
    doc = small_doc(seed)
    target = doc.logits()[0]
    assert doc.nodes[target]["is_target_logit"]
    every = all_paths(doc, target)
    got = ex.top_paths(doc, target, k=6, branch=len(doc.ids))
    assert [round(s, 9) for s, _ in got] == [round(s, 9) for s, _ in every[:6]]
    assert all(p[-1] == target for _, p in got)
    want = {tuple(p) for _, p in every[:6]}
    assert {tuple(p) for _, p in got} == want or every[5][0] == pytest.approx(every[6][0])  # a tie at the cut
    assert sum(s for s, _ in every) == pytest.approx(1.0)  # the shares into the target over all paths


def test_edges_sorted_by_size():
    doc = small_doc(0)
    t = doc.logits()[0]
    inc, out = ex.edges(doc, t, k=3)
    row = doc.adjacency[doc.index[t]]
    assert [w for _, w in inc] == sorted(row[row != 0].tolist(), key=abs, reverse=True)[:3]
    assert out == []  # nothing reads a logit
    src = inc[0][0]
    assert (t, inc[0][1]) in ex.edges(doc, src, k=100)[1]


def test_url_state_parsed_and_problems_named():
    doc = small_doc(0)
    f1, f2, f3 = "0_0_1", "0_1_1", "1_5_2"
    state, problems = ex.view_state(doc, {"pinned": f"{f1},nope,{f2},{f1}",
                                          "groups": f"a b:{f1}|{f3};:x;a b:{f2};c:zz;d:{f3}|{f2}",
                                          "node": "1_2_3_4", "logit": "nope"})
    assert state["pinned"] == [f1, f2] and state["node"] is None
    assert state["logit"] == doc.logits()[0]
    assert state["groups"] == [("a b", [f1, f3]), ("d", [f2])]  # f3 was taken by "a b"
    text = " ".join(problems)
    for phrase in ("not in this graph", "without a name", "used twice", "no nodes of this graph", "`logit=nope`"):
        assert phrase in text
    assert ex.encode_groups(state["groups"]) == f"a b:{f1}|{f3};d:{f2}"
    assert ex.clean_name(" x:y;z|w,v\n ") == "x y z w v"


def test_subgraph_links_and_summed_unit_links():
    doc = small_doc(1)
    t = doc.logits()[0]
    g = [x for x in doc.ids if doc.kind(x) == "feature"][:3]
    sub = ex.subgraph(doc, [t], [("grp", g)])
    assert {n["node_id"] for n in sub["nodes"]} == {t, *g}
    A, i = doc.adjacency, doc.index
    want = sum(float(A[i[t], i[x]]) for x in g)
    (link,) = [u for u in sub["unit_links"] if u["source"] == "g:grp" and u["target"] == t] or [None]
    assert (link is None and want == 0) or link["weight"] == pytest.approx(want)
    assert all(lk["weight"] == pytest.approx(float(A[i[lk["target"]], i[lk["source"]]])) for lk in sub["links"])
    unit = next(u for u in sub["units"] if u["id"] == "g:grp")
    assert unit["row"] == pytest.approx(np.mean([ex.row_of(doc, x) for x in g]))


def test_snapshot_without_pins_takes_the_strongest_paths():
    doc = small_doc(2)
    state, _ = ex.view_state(doc, {})
    snap = ex.snapshot(doc, state, k_paths=3)
    on_paths = {x for p in snap["paths"] for x in p["nodes"]}
    assert {n["node_id"] for n in snap["nodes"]} == on_paths and snap["kind"] == "circuits"


def test_inconsistent_doc_refused():
    doc = small_doc(0)
    with pytest.raises(ex.ExploreError, match="adjacency"):
        ex.GraphDoc(doc.wire, doc.ids, doc.adjacency[:-1])
    with pytest.raises(ex.ExploreError, match="different nodes"):
        ex.GraphDoc(doc.wire, doc.ids[:-1] + ["x"], doc.adjacency)
