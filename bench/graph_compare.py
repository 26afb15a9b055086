"""bench/graph.py's comparisons of a neuroboard graph with a circuit-tracer graph (numbers only, no I/O).

  compare_wire     two graph files, as circuit-tracer's tests/test_graph_ground_truth.py compares a graph with its
                   reference (THRESHOLDS); error nodes matched by (layer, position) whatever their id's form
  compare_raw      the unpruned graphs: circuit-tracer's exported tensors against a core.circuits Graph, node by node,
                   by blocks (target rows x source kinds); error columns also without the (layer, position)s where
                   circuit-tracer's TopK kept a negative feature (its error there differs from ours by design)
  encode_roundtrip one set encoded by both tools on the same MLP inputs
"""

from __future__ import annotations

import statistics

import torch

THRESHOLDS = {"feature_jaccard_min": 0.85, "activation_rel_median_max": 0.02, "activation_rel_max_max": 0.2,
              "influence_abs_median_max": 0.02, "influence_abs_max_max": 0.1, "logit_prob_atol": 0.03,
              "shared_links_fraction_min": 0.9, "edge_pearson_min": 0.99}
"""circuit-tracer's tests/test_graph_ground_truth.py (decoderesearch, after 0.5.0)."""
FEATURE, ERROR, LOGIT = "cross layer transcoder", "mlp reconstruction error", "logit"


def _canonical(doc: dict) -> tuple[dict, dict]:
    """({canonical id: node}, {file id: canonical id}); an error node is err_{layer}_{position} (0.5.0 and 0.5.1
    spell its id differently). circuit-tracer 0.5.0 writes an error node `0_{layer}_{position}`, which is also the
    id of layer 0's feature `layer` at that position: such an id maps to None (its links cannot be told apart)."""
    nodes, ids = {}, {}
    for n in doc["nodes"]:
        cid = f"err_{n['layer']}_{n['ctx_idx']}" if n["feature_type"] == ERROR else n["node_id"]
        nodes[cid] = n
        ids[n["node_id"]] = None if n["node_id"] in ids else cid
    return nodes, ids


def pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 2:
        return float("nan")
    t = torch.tensor([x, y], dtype=torch.float64)
    return float(torch.corrcoef(t)[0, 1])


def compare_wire(ref: dict, got: dict) -> dict:
    """circuit-tracer's ground-truth comparison of `got` (neuroboard) against `ref` (circuit-tracer)."""
    rn, rid = _canonical(ref)
    gn, gid = _canonical(got)
    rf = {k: n for k, n in rn.items() if n["feature_type"] == FEATURE}
    gf = {k: n for k, n in gn.items() if n["feature_type"] == FEATURE}
    shared = sorted(rf.keys() & gf.keys())
    rel = {k: abs(rf[k]["activation"] - gf[k]["activation"]) / abs(rf[k]["activation"])
           for k in shared if rf[k]["activation"]}
    infl = {k: abs(rf[k]["influence"] - gf[k]["influence"]) for k in shared}
    rl = {n["feature"]: n["token_prob"] for n in rn.values() if n["feature_type"] == LOGIT}
    gl = {n["feature"]: n["token_prob"] for n in gn.values() if n["feature_type"] == LOGIT}
    rlinks = {(rid[x["source"]], rid[x["target"]]): x["weight"] for x in ref["links"]
              if rid[x["source"]] and rid[x["target"]]}
    glinks = {(gid[x["source"]], gid[x["target"]]): x["weight"] for x in got["links"]}
    ambiguous = [k for k, c in rid.items() if c is None]
    sl = sorted(rlinks.keys() & glinks.keys())
    r_err = {k for k, n in rn.items() if n["feature_type"] == ERROR}
    g_err = {k for k, n in gn.items() if n["feature_type"] == ERROR}
    v = {"prompt_tokens_equal": ref["metadata"]["prompt_tokens"] == got["metadata"]["prompt_tokens"],
         "features": {"ref": len(rf), "got": len(gf), "shared": len(shared)},
         "feature_jaccard": len(shared) / len(rf.keys() | gf.keys()) if rf or gf else None,
         "activation_rel_median": statistics.median(rel.values()) if rel else None,
         "activation_rel_max": max(rel.values(), default=None),
         "influence_abs_median": statistics.median(infl.values()) if infl else None,
         "influence_abs_max": max(infl.values(), default=None),
         "argmax_logit_equal": max(rl, key=rl.get) == max(gl, key=gl.get, default=None),
         "logit_prob_max_diff": max(abs(p - gl.get(t, 0.0)) for t, p in rl.items()),
         "logits": {"ref": len(rl), "got": len(gl)},
         "links": {"ref": len(rlinks), "got": len(glinks), "shared": len(sl),
                   "ref_left_out": len(ref["links"]) - len(rlinks), "ref_duplicate_ids": ambiguous},
         "shared_links_fraction": len(sl) / max(1, len(rlinks)),
         "edge_pearson": pearson([rlinks[k] for k in sl], [glinks[k] for k in sl]),
         "edge_max_abs_diff": max((abs(rlinks[k] - glinks[k]) for k in sl), default=0.0),
         "error_nodes": {"ref": len(r_err), "got": len(g_err), "shared": len(r_err & g_err)},
         "influence_abs_max_all_nodes": max((abs(rn[k]["influence"] - gn[k]["influence"]) for k in rn.keys() & gn.keys()
                                             if rn[k]["influence"] is not None and gn[k]["influence"] is not None),
                                            default=None)}
    v["worst_activations"] = _worst(rel, lambda k: (rf[k]["activation"], gf[k]["activation"]))
    v["worst_influence"] = _worst(infl, lambda k: (rf[k]["influence"], gf[k]["influence"]))
    missing = sorted(rlinks.keys() - glinks.keys(), key=lambda k: -abs(rlinks[k]))[:5]
    v["largest_ref_links_missing"] = [{"source": s, "target": t, "weight": rlinks[s, t]} for s, t in missing]
    v["pass"] = _passes(v)
    v["all_pass"] = bool(rf or gf) and all(x is not False for x in v["pass"].values())
    if not (rf or gf):
        v["note"] = ("neither file keeps a feature node (the set explains too little of the MLPs for any feature to "
                     "reach the node threshold): the feature checks do not apply, so all_pass is false")
    return v


def _worst(d: dict, pair, n: int = 5) -> list[dict]:
    return [{"node": k, "diff": d[k], "ref_got": pair(k)} for k in sorted(d, key=lambda k: -d[k])[:n]]


def _passes(v: dict) -> dict:
    """Each check against THRESHOLDS; None where it does not apply (no feature nodes to compare)."""
    t = THRESHOLDS

    def le(x, limit):
        return None if x is None else x <= limit

    return {"prompt_tokens_equal": v["prompt_tokens_equal"],
            "feature_jaccard": None if v["feature_jaccard"] is None else v["feature_jaccard"] >= t["feature_jaccard_min"],
            "activation_rel_median": le(v["activation_rel_median"], t["activation_rel_median_max"]),
            "activation_rel_max": le(v["activation_rel_max"], t["activation_rel_max_max"]),
            "influence_abs_median": le(v["influence_abs_median"], t["influence_abs_median_max"]),
            "influence_abs_max": le(v["influence_abs_max"], t["influence_abs_max_max"]),
            "argmax_logit_equal": v["argmax_logit_equal"],
            "logit_probs": v["logit_prob_max_diff"] <= t["logit_prob_atol"],
            "shared_links_fraction": v["shared_links_fraction"] >= t["shared_links_fraction_min"],
            "edge_pearson": v["edge_pearson"] >= t["edge_pearson_min"]}


# ---- unpruned graphs ------------------------------------------------------------------------------------------------
def _keys(active: torch.Tensor, selected: torch.Tensor, n_layers: int, n_pos: int, logit_ids: list[int]) -> list:
    """Node keys in circuit-tracer's node order: features, errors, tokens, logits."""
    feats = [("f", *x) for x in active[selected].tolist()]
    errs = [("e", lay, p) for lay in range(n_layers) for p in range(n_pos)]
    return feats + errs + [("t", p) for p in range(n_pos)] + [("l", v) for v in logit_ids]


def _agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    """max |a − b|, the scale max |a|, and Pearson over the entries where either is non-zero."""
    nz = (a != 0) | (b != 0)
    out = {"entries": int(nz.sum()), "max_abs_diff": float((a - b).abs().max()) if a.numel() else 0.0,
           "scale": float(a.abs().max()) if a.numel() else 0.0}
    out["pearson"] = pearson(a[nz].tolist(), b[nz].tolist()) if out["entries"] > 1 else float("nan")
    return out


def compare_raw(raw: dict, info: dict, graph) -> dict:
    """circuit-tracer's unpruned graph (`raw`: adjacency, active, activations, selected, tokens, logit_probs; `info`:
    logit_ids, n_layers) against neuroboard's Graph, on the nodes both have."""
    T = len(raw["tokens"])
    ck = _keys(raw["active"], raw["selected"], info["n_layers"], T, info["logit_ids"])
    gk = _keys(graph.active, graph.selected, graph.n_layers, graph.n_pos, graph.logit_ids)
    where = {k: i for i, k in enumerate(gk)}
    pairs = [(i, where[k]) for i, k in enumerate(ck) if k in where]
    ci, gi = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    A = raw["adjacency"][ci][:, ci]  # (n, n) circuit-tracer, shared nodes
    B = graph.adjacency[gi][:, gi]  # (n, n) neuroboard, same order
    kinds = [ck[i][0] for i in ci.tolist()]
    rows = {"feature_rows": [i for i, k in enumerate(kinds) if k == "f"],
            "logit_rows": [i for i, k in enumerate(kinds) if k == "l"]}
    cols = {c: [i for i, k in enumerate(kinds) if k == c[0]] for c in ("feature", "error", "token")}
    neg = {tuple(x[:2]) for x, v in zip(raw["active"].tolist(), raw["activations"].tolist(), strict=True) if v < 0}
    keys = [ck[i] for i in ci.tolist()]
    cols["error_where_no_negative_ct_feature"] = [i for i in cols["error"] if keys[i][1:] not in neg]
    blocks = {f"{r}<-{c}": _agreement(A[ri][:, cj], B[ri][:, cj])
              for r, ri in rows.items() for c, cj in cols.items() if ri and cj}
    out = {"tokens_equal": raw["tokens"].tolist() == graph.tokens, "logit_ids_equal": info["logit_ids"]
           == graph.logit_ids, "logit_prob_max_diff": float((raw["logit_probs"] - graph.logit_probs).abs().max())
           if info["logit_ids"] == graph.logit_ids else None,
           "nodes": {"circuit_tracer": len(ck), "neuroboard": len(gk), "shared": len(pairs)},
           "adjacency": _agreement(A, B), "blocks": blocks, "largest_diffs": _largest(A, B, keys),
           "largest_diffs_elsewhere": _largest(A, B, keys, skip=[i for i in cols["error"]
                                                                  if i not in set(cols["error_where_no_negative_ct_feature"])]),
           "error_nodes_with_negative_ct_features": len(neg)}
    out |= _activation_agreement(raw, graph)
    return out


def _largest(A: torch.Tensor, B: torch.Tensor, keys: list, n: int = 5, skip: list[int] = ()) -> list[dict]:
    """The n entries where A and B differ most (source columns `skip` left out)."""
    d = (A - B).abs()
    d[:, list(skip)] = 0
    d = d.flatten()
    top = d.topk(min(n, d.numel())).indices.tolist()
    return [{"target": keys[i // A.shape[1]], "source": keys[i % A.shape[1]],
             "ct": float(A.flatten()[i]), "neuroboard": float(B.flatten()[i])} for i in top]


def _activation_agreement(raw: dict, graph) -> dict:
    ct = dict(zip(map(tuple, raw["active"].tolist()), raw["activations"].tolist(), strict=True))
    nb = dict(zip(map(tuple, graph.active.tolist()), graph.activations.tolist(), strict=True))
    shared = ct.keys() & nb.keys()
    only_ct = ct.keys() - nb.keys()
    sel_ct = {tuple(x) for x in raw["active"][raw["selected"]].tolist()}
    sel_nb = {tuple(x) for x in graph.active[graph.selected].tolist()}
    return {"active": {"circuit_tracer": len(ct), "neuroboard": len(nb), "shared": len(shared),
                       "only_circuit_tracer": len(only_ct),
                       "only_circuit_tracer_negative": sum(ct[k] < 0 for k in only_ct),
                       "only_neuroboard": len(nb.keys() - ct.keys())},
            "activation_max_abs_diff": max((abs(ct[k] - nb[k]) for k in shared), default=0.0),
            "selected_jaccard": len(sel_ct & sel_nb) / max(1, len(sel_ct | sel_nb))}


# ---- encoding -------------------------------------------------------------------------------------------------------
def encode_roundtrip(ts, mlp_in: torch.Tensor, ct: dict) -> dict:
    """Our encoding of mlp_in (L, T, d) against circuit-tracer's (`ct`: pre (L, T, n), acts (L, T, n))."""
    with torch.no_grad():
        pre = torch.stack([tc.pre_acts(mlp_in[L]) for L, tc in zip(ts.layers, ts.transcoders, strict=True)])
        acts = torch.stack([tc.encode(mlp_in[L]) for L, tc in zip(ts.layers, ts.transcoders, strict=True)])
    tc0 = ts.transcoders[0]
    differ = (ct["acts"] != 0) != (acts != 0)  # (L, T, n)
    out = {"layers": len(ts.layers), "d_transcoder": ts.d_transcoder, "activation": tc0.activation,
           "pre_max_abs_diff": float((ct["pre"] - pre).abs().max()),
           "acts_max_abs_diff": float((ct["acts"] - acts).abs().max()),
           "acts_max_abs_diff_after_relu": float((ct["acts"].relu() - acts).abs().max()),
           "active_differ": int(differ.sum()), "active_differ_graph_positions": int(differ[:, 1:].sum()),
           "ct_negative_acts": int((ct["acts"] < 0).sum())}
    if tc0.activation == "topk":
        kth = pre.topk(tc0.k, -1).values[..., -1]  # (L, T)
        out["topk_relu_tokens_kth_negative"] = int((kth[:, 1:] < 0).sum())
        out["topk_relu_token_layers"] = int(kth[:, 1:].numel())
    return out
