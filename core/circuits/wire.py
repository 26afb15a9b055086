"""The graph file Neuronpedia's graph page and circuit-tracer's local viewer read (circuit-tracer 0.5.0's
`create_graph_files`, its records typed in frontend/graph_models.py), written from a pruned Graph and read back.

    {"metadata": {slug, scan, transcoder_list, prompt_tokens, prompt, node_threshold, schema_version,
                  info, generation_settings, pruning_settings},
     "qParams": {pinnedIds, supernodes, linkType, clickedId, sg_pos},
     "nodes": [{node_id, feature, layer, ctx_idx, feature_type, token_prob, is_target_logit, run_idx,
                reverse_ctx_idx, jsNodeId, clerp, influence, activation}, ...],
     "links": [{source, target, weight}, ...]}

Node ids: `{layer}_{feature}_{position}` for a transcoder feature, `0_{layer}_{position}` for an error node (as
circuit-tracer 0.5.0 writes it; where that id equals a kept feature's, every error node of the file takes 0.5.1's
`{layer}_-1_{position}`, which both viewers also read), `E_{token id}_{position}` for a token, and
`{n_layers + 1}_{token id}_{position}` for a logit. `feature` is circuit-tracer's Cantor pairing of (layer, feature)
for a feature node, -1 for an error, the position for a token and the token id for a logit. `influence` is the
node's cumulative share of influence when nodes are sorted by it (small: important), as the viewers expect.
`metadata.info` carries what neuroboard adds: model, transcoder set, scores, layer count and the full feature
indices; the viewers ignore what they do not know.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.circuits.graph import ERROR, FEATURE, LOGIT, TOKEN, Graph, Pruned
from core.circuits.prompt import GraphError

FEATURE_TYPES = {FEATURE: "cross layer transcoder", ERROR: "mlp reconstruction error", TOKEN: "embedding",
                 LOGIT: "logit"}
KINDS = {v: k for k, v in FEATURE_TYPES.items()}
SCHEMA_VERSION = 1


def cantor(a: int, b: int) -> int:
    return (a + b) * (a + b + 1) // 2 + b


def _record(node_id, feature, layer, ctx_idx, kind, js, *, influence, activation=None, token_prob=0.0,
            target=False, clerp="") -> dict:
    """A node in circuit-tracer's field order."""
    return {"node_id": node_id, "feature": feature, "layer": layer, "ctx_idx": ctx_idx,
            "feature_type": FEATURE_TYPES[kind], "token_prob": token_prob, "is_target_logit": target, "run_idx": 0,
            "reverse_ctx_idx": 0, "jsNodeId": js, "clerp": clerp, "influence": influence, "activation": activation}


def _node(graph: Graph, i: int, cumulative: float, error_ids_new: bool) -> dict:
    kind, T, L = graph.kind(i), graph.n_pos, graph.n_layers
    if kind == FEATURE:
        layer, pos, feat = graph.active[graph.selected[i]].tolist()
        return _record(f"{layer}_{feat}_{pos}", cantor(layer, feat), str(layer), pos, kind, f"{layer}_{feat}-0",
                       influence=cumulative, activation=float(graph.activations[graph.selected[i]]))
    if kind == ERROR:
        layer, pos = divmod(i - graph.n_features, T)
        nid = f"{layer}_-1_{pos}" if error_ids_new else f"0_{layer}_{pos}"
        js = f"{layer}_-1-{pos}" if error_ids_new else f"{layer}_{pos}-0"
        return _record(nid, -1, str(layer), pos, kind, js, influence=cumulative)
    if kind == TOKEN:
        pos = i - graph.token_index(0)
        tok = graph.tokens[pos]
        return _record(f"E_{tok}_{pos}", pos, "E", pos, kind, f"E_{tok}-{pos}", influence=cumulative)
    k = i - graph.logit_index(0)
    vid, p = graph.logit_ids[k], float(graph.logit_probs[k])
    return _record(f"{L + 1}_{vid}_{T - 1}", vid, str(L + 1), T - 1, kind, f"L_{vid}-{T - 1}", influence=None,
                   token_prob=p, target=k == 0, clerp=f'Output "{graph.logit_strs[k]}" (p={p:.3f})')


def _error_ids_collide(graph: Graph, kept: list[int]) -> bool:
    feats = {f"{a}_{f}_{p}" for a, p, f in graph.active[graph.selected[[i for i in kept if i < graph.n_features]]].tolist()}
    errs = {f"0_{divmod(i - graph.n_features, graph.n_pos)[0]}_{divmod(i - graph.n_features, graph.n_pos)[1]}"
            for i in kept if graph.kind(i) == ERROR}
    return bool(feats & errs)


def node_ids(graph: Graph, kept: list[int]) -> list[str]:
    """The file's id of each kept node index (module docstring; `kept` decides whether error ids must change)."""
    new = _error_ids_collide(graph, kept)
    return [_node(graph, i, 0.0, new)["node_id"] for i in kept]


def to_wire(graph: Graph, pruned: Pruned, *, slug: str, node_threshold: float, edge_threshold: float,
            scores: tuple[float, float] | None = None, labels: dict[int, str] | None = None,
            writes: dict[int, list[str]] | None = None) -> dict:
    """The wire-format dict of the pruned graph (module docstring); `labels`: node index -> its clerp; `writes`:
    node index -> the tokens the feature writes (core.circuits.labels.graph_writes), kept in metadata.info.writes
    and, where no label is given, as the clerp the viewers show."""
    kept = [i for i in range(graph.n_nodes) if pruned.nodes[i]]
    new_ids = _error_ids_collide(graph, kept)
    targets, sources = pruned.edges.nonzero(as_tuple=True)  # row-major: by target, then source
    linked = set(targets.tolist()) | set(sources.tolist())
    shown = [i for i in kept if i in linked or graph.kind(i) in (TOKEN, LOGIT)]
    nodes = {i: _node(graph, i, float(pruned.cumulative[i]), new_ids) for i in shown}
    for i, toks in (writes or {}).items():
        if i in nodes and graph.kind(i) == FEATURE:
            nodes[i]["clerp"] = "writes " + ", ".join(repr(t) for t in toks[:3])
    for i, text in (labels or {}).items():
        if i in nodes and graph.kind(i) == FEATURE:
            nodes[i]["clerp"] = text
    links = [{"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": float(graph.adjacency[t, s])}
             for t, s in zip(targets.tolist(), sources.tolist(), strict=True) if s in nodes and t in nodes]
    info = {"creator_name": "neuroboard", "model": graph.model, "transcoder_set": graph.transcoders,
            "n_layers": graph.n_layers, "tokens": graph.tokens}
    if scores:
        info["replacement_score"], info["completeness_score"] = scores
    if writes:
        info["writes"] = {nodes[i]["node_id"]: list(t) for i, t in writes.items() if i in nodes}
    s = graph.settings
    return {"metadata": {"slug": slug, "scan": graph.transcoders or graph.model, "transcoder_list": [],
                         "prompt_tokens": graph.token_strs, "prompt": graph.decoded or "".join(graph.token_strs),
                         "node_threshold": node_threshold, "schema_version": SCHEMA_VERSION, "info": info,
                         "generation_settings": {"max_n_logits": s.get("max_logits"),
                                                 "desired_logit_prob": s.get("logit_prob"),
                                                 "batch_size": s.get("batch_size"),
                                                 "max_feature_nodes": s.get("max_features")},
                         "pruning_settings": {"node_threshold": node_threshold, "edge_threshold": edge_threshold}},
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": list(nodes.values()), "links": links}


def write_wire(doc: dict, path: str | Path) -> Path:
    """Write the file atomically (a temporary name, then rename): a failed write leaves any old file as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    tmp.replace(path)
    return path


VIEWER_INDEX = "graph-metadata.json"
VIEWER_KEYS = ("slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold", "schema_version")
"""circuit-tracer's viewer (frontend/local_server.py) serves a folder: it lists the graphs in graph-metadata.json,
{"graphs": [metadata, ...]} with each graph's metadata fields VIEWER_KEYS (its add_graph_metadata), and reads a
graph as `{slug}.json` beside it."""


def add_to_viewer_index(folder: str | Path, metadata: dict) -> Path | None:
    """Add this graph's entry to the folder's graph-metadata.json (replacing an entry of the same slug, keeping the
    others), written atomically; None, leaving the file as it is, when it exists but is not such an index."""
    path = Path(folder) / VIEWER_INDEX
    index: object = {"graphs": []}
    if path.exists():
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    if not isinstance(index, dict) or not isinstance(index.get("graphs"), list) or not all(
            isinstance(g, dict) for g in index["graphs"]):
        return None
    entry = {k: metadata[k] for k in VIEWER_KEYS if k in metadata}
    index["graphs"] = [g for g in index["graphs"] if g.get("slug") != entry["slug"]] + [entry]
    return write_wire(index, path)


NODE_KEYS = ("node_id", "feature_type", "layer", "ctx_idx")


def check_wire(doc) -> dict:
    """`doc` if it has the wire format's shape; GraphError (one line) naming the first thing wrong."""
    if not isinstance(doc, dict) or not all(k in doc for k in ("metadata", "nodes", "links")):
        raise GraphError("not a graph file: expected an object with metadata, nodes and links")
    meta, nodes, links = doc["metadata"], doc["nodes"], doc["links"]
    if not isinstance(meta, dict) or not isinstance(meta.get("prompt_tokens"), list):
        raise GraphError("graph file: metadata.prompt_tokens is missing")
    if not isinstance(nodes, list) or not isinstance(links, list):
        raise GraphError("graph file: nodes and links must be lists")
    ids = set()
    for n in nodes:
        if not isinstance(n, dict) or any(k not in n for k in NODE_KEYS):
            raise GraphError(f"graph file: a node lacks one of {', '.join(NODE_KEYS)}")
        if n["feature_type"] not in KINDS:
            raise GraphError(f"graph file: unknown feature_type {n['feature_type']!r}")
        if n["node_id"] in ids:
            raise GraphError(f"graph file: node id {n['node_id']!r} appears twice")
        ids.add(n["node_id"])
    for link in links:
        if not isinstance(link, dict) or link.get("source") not in ids or link.get("target") not in ids:
            raise GraphError("graph file: a link names a node that is not in the file")
        if not isinstance(link.get("weight"), (int, float)):
            raise GraphError("graph file: a link has no numeric weight")
    return doc


def read_wire(path: str | Path) -> dict:
    """A graph file read and checked; GraphError (one line) for a missing, unreadable or malformed file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise GraphError(f"no graph file at {path}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphError(f"graph file {path} is not readable JSON: {str(e).splitlines()[0]}") from e
    return check_wire(doc)
