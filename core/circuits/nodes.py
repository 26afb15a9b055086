"""A graph's nodes as one table, from any of the three forms a graph comes in: a Graph just computed (every node and
edge), a graph stored in the index (the kept nodes and every edge among them, core.index.graphs.graph_kept) or a
graph file (the kept nodes and the kept links only, core.circuits.wire). Labels and interventions read this table.

Node ids are the wire format's (core.circuits.wire): `{layer}_{feature}_{position}` for a transcoder feature,
`0_{layer}_{position}` or `{layer}_-1_{position}` for an error node, `E_{token id}_{position}` for a token,
`{n_layers + 1}_{token id}_{position}` for a logit. Each node's `value` is what its outgoing edges are in units of:
a feature's activation a_s (edges A[t, s] are a_s times the effect per unit of activation), 1 for an error node
(its edges are the effect of the whole error vector), and 1 for a token (its whole embedding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.circuits.graph import ERROR, FEATURE, LOGIT, TOKEN, Graph
from core.circuits.prompt import GraphError
from core.circuits.wire import KINDS, check_wire, node_ids

EDGES_FULL, EDGES_KEPT, EDGES_LINKS = "every edge", "every edge among the kept nodes", "the kept links only"


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    """feature | error | token | logit (core.circuits.graph)."""
    layer: int
    """The transcoder's layer (features, errors); -1 for a token, n_layers for a logit."""
    pos: int
    """The token position."""
    index: int
    """The feature's index in its layer's transcoder; the token id of a token or logit; -1 for an error."""
    value: float
    """What the node's outgoing edges are in units of (module docstring)."""
    prob: float = 0.0
    """A logit's probability under the model."""
    is_target: bool = False
    """The graph's target logit (its first logit: the most probable, or the first target asked for)."""


@dataclass
class GraphNodes:
    nodes: list[Node]
    adjacency: torch.Tensor  # (n, n) float32 [target, source] over `nodes`
    tokens: list[int]
    """The prompt's token ids (a special token at position 0)."""
    n_layers: int
    model: str
    """The model as the graph names it (what `neuroboard graph --model` was given)."""
    transcoders: str
    """The transcoder set as the graph names it: its folder for a stored graph, its scan for a graph file."""
    edges: str
    """Which edges `adjacency` holds: EDGES_FULL, EDGES_KEPT or EDGES_LINKS."""

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if self.adjacency.shape != (n, n):
            raise ValueError(f"adjacency {tuple(self.adjacency.shape)} for {n} nodes")
        self.position = {node.id: i for i, node in enumerate(self.nodes)}

    @property
    def target(self) -> int:
        """The index of the target logit (the node marked so, else the most probable logit)."""
        logits = self.logits()
        if not logits:
            raise GraphError("the graph has no logit node")
        return next((i for i in logits if self.nodes[i].is_target), max(logits, key=lambda i: self.nodes[i].prob))

    def logits(self) -> list[int]:
        """Indices of the logit nodes in the graph's order (most probable first, unless targets were given)."""
        return [i for i, n in enumerate(self.nodes) if n.kind == LOGIT]

    def logit(self, node_id: str | None) -> int:
        """The index of the logit node `node_id` (the target when None); GraphError for any other id."""
        if node_id is None:
            return self.target
        i = self.position.get(node_id)
        if i is None or self.nodes[i].kind != LOGIT:
            raise GraphError(f"{node_id!r} is not a logit node of this graph")
        return i

    def features(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.kind == FEATURE]

    def select(self, ids: list[str], name: str = "") -> list[int]:
        """The indices of `ids`; GraphError (one line) for none or an id not in the graph."""
        if not ids:
            raise GraphError(f"supernode {name!r} has no nodes" if name else "no node ids given")
        missing = [i for i in ids if i not in self.position]
        if missing:
            raise GraphError(f"node {missing[0]!r} is not in this graph" + (f" ({len(missing)} ids are not)"
                                                                           if len(missing) > 1 else ""))
        return list(dict.fromkeys(self.position[i] for i in ids))


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise GraphError(f"graph file: {what} {text!r} is not a number") from None


def wire_node(rec: dict, n_layers: int) -> Node:
    """One graph-file node record as a Node; GraphError (one line) when its id does not fit its kind."""
    kind, nid, pos = KINDS[rec["feature_type"]], str(rec["node_id"]), _int(rec["ctx_idx"], "ctx_idx")
    parts = nid.split("_")
    if len(parts) != 3:
        raise GraphError(f"graph file: node id {nid!r} is not of the form a_b_c")
    if kind == FEATURE:
        act = rec.get("activation")
        if not isinstance(act, (int, float)) or not math.isfinite(act) or act <= 0:
            raise GraphError(f"graph file: feature node {nid!r} has no positive activation")
        return Node(nid, kind, _int(parts[0], "layer"), pos, _int(parts[1], "feature"), float(act))
    if kind == ERROR:
        return Node(nid, kind, _int(rec["layer"], "layer"), pos, -1, 1.0)
    if kind == TOKEN:
        return Node(nid, kind, -1, pos, _int(parts[1], "token id"), 1.0)
    prob = rec.get("token_prob")
    return Node(nid, kind, n_layers, pos, _int(parts[1], "token id"), 0.0,
                float(prob) if isinstance(prob, (int, float)) else 0.0, rec.get("is_target_logit") is True)


def _info(doc: dict) -> tuple[list[int], int]:
    info = doc["metadata"].get("info") or {}
    tokens, L = info.get("tokens"), info.get("n_layers")
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens) or not isinstance(L, int):
        raise GraphError("graph file: metadata.info lacks the token ids and layer count (not written by "
                         "neuroboard graph)")
    return tokens, L


def wire_nodes(doc: dict) -> list[Node]:
    """The nodes of a graph file, without its links (check_wire'd); GraphError (one line) for a malformed one."""
    doc = check_wire(doc)
    return _nodes(doc, *_info(doc))


def _nodes(doc: dict, tokens: list[int], L: int) -> list[Node]:
    nodes = [wire_node(rec, L) for rec in doc["nodes"]]
    for n in nodes:
        if not 0 <= n.pos < len(tokens) or (n.kind in (FEATURE, ERROR) and not 0 <= n.layer < L):
            raise GraphError(f"graph file: node {n.id!r} lies outside the graph's {L} layers and {len(tokens)} "
                             "positions")
    return nodes


def from_wire(doc: dict, kept: tuple[list[str], object] | None = None, *, model: str | None = None,
              transcoders: str | None = None) -> GraphNodes:
    """The nodes of a graph file (`doc`), with its links as the adjacency, or `kept` (ids, (n, n) adjacency among
    them as a tensor or array, from the index or the page's cache) when given; GraphError (one line) for a
    malformed file."""
    doc = check_wire(doc)
    tokens, L = _info(doc)
    nodes = _nodes(doc, tokens, L)
    at = {n.id: i for i, n in enumerate(nodes)}
    A = torch.zeros(len(nodes), len(nodes))
    if kept is None and doc["links"]:
        links = doc["links"]
        A[torch.tensor([at[lk["target"]] for lk in links]), torch.tensor([at[lk["source"]] for lk in links])] = \
            torch.tensor([float(lk["weight"]) for lk in links])
    else:
        ids, K = kept
        if sorted(ids) != sorted(at):
            raise GraphError("the stored graph's kept nodes differ from its file's nodes")
        where = {nid: j for j, nid in enumerate(ids)}
        order = torch.tensor([where[n.id] for n in nodes])
        A = torch.as_tensor(K)[order][:, order].float()
    info = doc["metadata"].get("info") or {}
    return GraphNodes(nodes, A, tokens, L, model or str(info.get("model", "")),
                      transcoders or str(info.get("transcoder_set", "")), EDGES_LINKS if kept is None else EDGES_KEPT)


def from_graph(graph: Graph) -> GraphNodes:
    """Every node and edge of a Graph just computed."""
    idx = list(range(graph.n_nodes))
    ids = node_ids(graph, idx)
    nodes = []
    for i, nid in zip(idx, ids, strict=True):
        kind = graph.kind(i)
        if kind == FEATURE:
            layer, pos, feat = graph.active[graph.selected[i]].tolist()
            nodes.append(Node(nid, kind, layer, pos, feat, float(graph.activations[graph.selected[i]])))
        elif kind == ERROR:
            layer, pos = divmod(i - graph.n_features, graph.n_pos)
            nodes.append(Node(nid, kind, layer, pos, -1, 1.0))
        elif kind == TOKEN:
            pos = i - graph.token_index(0)
            nodes.append(Node(nid, kind, -1, pos, graph.tokens[pos], 1.0))
        else:
            k = i - graph.logit_index(0)
            nodes.append(Node(nid, kind, graph.n_layers, graph.n_pos - 1, graph.logit_ids[k], 0.0,
                              float(graph.logit_probs[k]), k == 0))
    return GraphNodes(nodes, graph.adjacency.float(), list(graph.tokens), graph.n_layers, graph.model,
                      graph.transcoders, EDGES_FULL)


def from_index(con, graph_id: int) -> GraphNodes:
    """A graph stored in the index: its file's nodes and every edge among them; GraphError when there is none."""
    from core.index.graphs import graph_info, graph_kept, graph_wire

    info = graph_info(con, graph_id)
    if info is None:
        raise GraphError(f"no graph {graph_id} in this index")
    model = str(info.config.get("model") or info.model)
    return from_wire(graph_wire(con, graph_id), graph_kept(con, graph_id), model=model,
                     transcoders=info.transcoders)
