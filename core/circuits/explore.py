"""A stored attribution graph as a reader explores it (the circuits page, its findings, the offline report): its
nodes by id, the direct effects among its kept nodes, the strongest paths into a logit, a node's strongest edges,
pinned nodes and named supernodes, and the subgraph they make. NumPy only: pages read it before any model loads.

The URL keeps what a reader chose (the circuits page writes it, core.findings reads the same):

    pinned=ID,ID,...                      node ids of the graph (core.circuits.wire names them)
    groups=NAME:ID|ID;NAME:ID|ID          supernodes: a name (without , : ; |) and its nodes; a node is in one at most
    logit=ID                              the logit whose strongest paths are highlighted (default: the target's)

A path's strength is the product of its edges' normalised weights, each edge's |weight| over the sum of |weights|
into its target (the weights `core.circuits.graph.influence` sums over all paths): a path of strength 0.1 carries a
tenth of the target's input share along that route.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from core.errors import UserError

FEATURE, ERROR, TOKEN, LOGIT = "feature", "error", "token", "logit"
KINDS = {"cross layer transcoder": FEATURE, "mlp reconstruction error": ERROR, "embedding": TOKEN, "logit": LOGIT}
"""The wire format's feature_type -> node kind (the inverse of core.circuits.wire.FEATURE_TYPES)."""
FEATURE_ID = re.compile(r"(\d+)_(\d+)_(\d+)")
NAME_BAD = re.compile(r"[,:;|\x00-\x1f]")
NODE_KEYS = ("node_id", "feature_type", "layer", "ctx_idx")


class ExploreError(UserError):
    """A graph or a URL state that cannot be shown as asked (one line)."""


@dataclass(frozen=True)
class GraphDoc:
    """A graph file (core.circuits.wire) with the direct effects among its nodes."""

    wire: dict
    ids: list[str]
    """The kept nodes, in the adjacency's order (every node of the file)."""
    adjacency: np.ndarray  # (n, n) float32 [target, source]: direct effects among the kept nodes

    def __post_init__(self) -> None:
        w = self.wire
        if not isinstance(w, dict) or not all(isinstance(w.get(k), t) for k, t in
                                              (("metadata", dict), ("nodes", list), ("links", list))):
            raise ExploreError("not a graph file: expected an object with metadata, nodes and links")
        if any(not isinstance(x, dict) or x.get("feature_type") not in KINDS or any(k not in x for k in NODE_KEYS)
               for x in w["nodes"]):
            raise ExploreError(f"graph file: a node lacks one of {', '.join(NODE_KEYS)} or has an unknown type")
        n = len(self.ids)
        if self.adjacency.shape != (n, n):
            raise ExploreError(f"the graph's adjacency is {self.adjacency.shape}, not ({n}, {n}) over its nodes")
        if set(self.ids) != {x["node_id"] for x in self.wire.get("nodes", [])}:
            raise ExploreError("the graph's file and its stored adjacency name different nodes")

    @cached_property
    def nodes(self) -> dict[str, dict]:
        return {x["node_id"]: x for x in self.wire["nodes"]}

    @cached_property
    def index(self) -> dict[str, int]:
        return {x: i for i, x in enumerate(self.ids)}

    @cached_property
    def normalized(self) -> np.ndarray:  # (n, n) |A| with each target's row summing to 1 (0 for source rows)
        a = np.abs(self.adjacency.astype(np.float64))
        s = a.sum(1, keepdims=True)
        return np.divide(a, s, out=np.zeros_like(a), where=s > 0)

    @property
    def tokens(self) -> list[str]:
        return list(self.wire["metadata"].get("prompt_tokens", []))

    @property
    def n_layers(self) -> int:
        info = self.wire["metadata"].get("info") or {}
        if "n_layers" in info:
            return int(info["n_layers"])
        return 1 + max([int(x["layer"]) for x in self.wire["nodes"] if self.kind(x["node_id"]) in (FEATURE, ERROR)],
                       default=-1)

    def kind(self, node_id: str) -> str:
        return KINDS[self.nodes[node_id]["feature_type"]]

    def logits(self) -> list[str]:
        """The logit nodes, the graph's target first, then by probability."""
        out = [x for x in self.ids if self.kind(x) == LOGIT]
        return sorted(out, key=lambda x: (not self.nodes[x].get("is_target_logit"), -float(
            self.nodes[x].get("token_prob") or 0.0)))


def feature_of(node_id: str) -> tuple[int, int, int] | None:
    """(layer, feature, position) of a feature node's id `{layer}_{feature}_{position}`; None for other ids."""
    m = FEATURE_ID.fullmatch(node_id)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def label(doc: GraphDoc, node_id: str, labels: dict[str, str] | None = None) -> str:
    """A node's short label: `labels` (core.circuits.labels) or its file's clerp, else what it is."""
    n, kind = doc.nodes[node_id], doc.kind(node_id)
    if labels and labels.get(node_id):
        return labels[node_id]
    if n.get("clerp"):
        return str(n["clerp"])
    pos = int(n["ctx_idx"])
    tok = repr(doc.tokens[pos]) if 0 <= pos < len(doc.tokens) else f"position {pos}"
    if kind == FEATURE:
        f = feature_of(node_id)
        return f"feature {f[1] if f else n.get('feature')} of layer {n['layer']} at {tok}"
    if kind == ERROR:
        return f"error of layer {n['layer']} at {tok}"
    if kind == TOKEN:
        return f"token {tok}"
    return f"logit {n.get('feature')}"


def edges(doc: GraphDoc, node_id: str, k: int = 8) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(strongest incoming, strongest outgoing) direct effects of a node: (other node, weight), by |weight|."""
    i = doc.index[node_id]

    def top(row: np.ndarray) -> list[tuple[str, float]]:
        nz = np.flatnonzero(row)
        order = nz[np.argsort(-np.abs(row[nz]), kind="stable")][:k]
        return [(doc.ids[j], float(row[j])) for j in order]
    return top(doc.adjacency[i]), top(doc.adjacency[:, i])


def top_paths(doc: GraphDoc, target: str, k: int = 5, branch: int = 8, max_pops: int = 20000
              ) -> list[tuple[float, list[str]]]:
    """The k strongest paths into `target` (module docstring), each (strength, [source, ..., target]), strongest
    first; a path ends where a node has no incoming edge (a token, an error, an unexplained feature). Best-first
    over each node's `branch` strongest inputs: strengths only fall along a path, so the first k finished are the
    strongest of those routes."""
    W = doc.normalized
    heap: list[tuple[float, list[int]]] = [(-1.0, [doc.index[target]])]
    out, pops = [], 0
    while heap and len(out) < k and pops < max_pops:
        neg, path = heapq.heappop(heap)
        pops += 1
        row = W[path[-1]]
        srcs = np.flatnonzero(row)
        if not len(srcs):
            out.append((-neg, [doc.ids[i] for i in reversed(path)]))
            continue
        for s in srcs[np.argsort(-row[srcs], kind="stable")][:branch]:
            heapq.heappush(heap, (neg * float(row[s]), path + [int(s)]))
    return out


def path_edges(paths: list[tuple[float, list[str]]]) -> set[tuple[str, str]]:
    """(source, target) of every edge on the paths."""
    return {(a, b) for _, p in paths for a, b in zip(p, p[1:], strict=False)}


def clean_name(name: str) -> str:
    """A supernode's name as the URL keeps it: without , : ; | or control characters, at most 40 characters."""
    return " ".join(NAME_BAD.sub(" ", name).split())[:40]


def parse_pinned(raw: str | None, doc: GraphDoc) -> tuple[list[str], str | None]:
    """The pinned node ids of `pinned=` that are in the graph (in order, once each); a problem line naming the
    others."""
    ids = list(dict.fromkeys(x.strip() for x in (raw or "").split(",") if x.strip()))
    bad = [x for x in ids if x not in doc.index]
    problem = (f"`pinned=`: {len(bad)} node{'s' * (len(bad) != 1)} not in this graph ({', '.join(bad[:3])[:80]}"
               f"{', …' if len(bad) > 3 else ''}); left out." if bad else None)
    return [x for x in ids if x in doc.index], problem


def parse_groups(raw: str | None, doc: GraphDoc) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The supernodes of `groups=` ([(name, node ids)]) and a problem line for each part left out or changed: no
    name, no nodes of this graph, a name used twice, a node already in an earlier supernode."""
    groups: list[tuple[str, list[str]]] = []
    problems: list[str] = []
    taken: set[str] = set()
    for part in (raw or "").split(";"):
        if not part.strip():
            continue
        name, sep, members = part.partition(":")
        name = clean_name(name)
        ids = list(dict.fromkeys(x.strip() for x in members.split("|") if x.strip())) if sep else []
        if not name:
            problems.append(f"`groups=`: a supernode without a name ({part[:40]!r}) is left out.")
            continue
        if name in {g[0] for g in groups}:
            problems.append(f"`groups=`: the name {name!r} is used twice; the second is left out.")
            continue
        bad = [x for x in ids if x not in doc.index]
        again = [x for x in ids if x in taken]
        ids = [x for x in ids if x in doc.index and x not in taken]
        if bad or again:
            problems.append(f"`groups=`: supernode {name!r} names {len(bad) + len(again)} node(s) not in this graph "
                            "or already in another supernode; left out of it.")
        if not ids:
            problems.append(f"`groups=`: supernode {name!r} has no nodes of this graph; left out.")
            continue
        taken.update(ids)
        groups.append((name, ids))
    return groups, problems


def encode_groups(groups: list[tuple[str, list[str]]]) -> str:
    return ";".join(f"{clean_name(n)}:{'|'.join(ids)}" for n, ids in groups if clean_name(n) and ids)


def subgraph(doc: GraphDoc, pinned: list[str], groups: list[tuple[str, list[str]]],
             labels: dict[str, str] | None = None) -> dict:
    """The pinned nodes and supernodes as one small graph (JSON-ready): `nodes` (each pinned node and group member,
    as in the file, with its label), `links` (every direct effect among them), `units` (what is drawn: each
    supernode as one unit at its members' mean layer row and position, each other pinned node as itself) and
    `unit_links` (the summed direct effects between units)."""
    members = [x for _, ids in groups for x in ids]
    ids = list(dict.fromkeys([*pinned, *members]))
    nodes = [doc.nodes[x] | {"label": label(doc, x, labels)} for x in ids]
    links = [{"source": s, "target": t, "weight": float(doc.adjacency[doc.index[t], doc.index[s]])}
             for t in ids for s in ids if doc.adjacency[doc.index[t], doc.index[s]] != 0]
    unit_of = {x: f"g:{n}" for n, g in groups for x in g}
    units = []
    for n, g in groups:
        rows = [row_of(doc, x) for x in g]
        units.append({"id": f"g:{n}", "name": n, "members": g, "kind": "supernode", "row": float(np.mean(rows)),
                      "pos": float(np.mean([int(doc.nodes[x]["ctx_idx"]) for x in g]))})
    for x in ids:
        if x not in unit_of:
            unit_of[x] = x
            units.append({"id": x, "name": label(doc, x, labels), "members": [x], "kind": doc.kind(x),
                          "row": float(row_of(doc, x)), "pos": float(doc.nodes[x]["ctx_idx"])})
    summed: dict[tuple[str, str], float] = {}
    for link in links:
        a, b = unit_of[link["source"]], unit_of[link["target"]]
        if a != b:
            summed[(a, b)] = summed.get((a, b), 0.0) + link["weight"]
    return {"nodes": nodes, "links": links, "units": units, "n_rows": doc.n_layers + 2,
            "unit_links": [{"source": a, "target": b, "weight": w} for (a, b), w in summed.items()]}


def row_of(doc: GraphDoc, node_id: str) -> int:
    """The node's row in a layers × positions drawing: 0 the token embeddings, 1 + l layer l, n_layers + 1 logits."""
    kind = doc.kind(node_id)
    if kind == TOKEN:
        return 0
    if kind == LOGIT:
        return doc.n_layers + 1
    return 1 + int(doc.nodes[node_id]["layer"])


def view_state(doc: GraphDoc, params: dict) -> tuple[dict, list[str]]:
    """What a circuits URL chose in `doc` (module docstring): {"logit", "pinned", "groups", "node"} valid for the
    graph, and a problem line for each thing that was not."""
    problems = []
    logits = doc.logits()
    logit = params.get("logit") or (logits[0] if logits else None)
    if logit not in logits:
        problems.append(f"`logit={str(logit)[:40]}` is not a logit of this graph; showing the target's paths.")
        logit = logits[0] if logits else None
    pinned, p = parse_pinned(params.get("pinned"), doc)
    groups, ps = parse_groups(params.get("groups"), doc)
    node = params.get("node") or None
    if node is not None and node not in doc.index:
        problems.append(f"`node={node[:40]}` is not in this graph; no node is selected.")
        node = None
    return {"logit": logit, "pinned": pinned, "groups": groups, "node": node}, problems + ([p] if p else []) + ps


def snapshot(doc: GraphDoc, state: dict, labels: dict[str, str] | None = None, k_paths: int = 5) -> dict:
    """A finding's view of the graph: the subgraph of the pinned nodes and supernodes (with nothing pinned, the
    nodes on the `k_paths` strongest paths into the chosen logit) and those paths."""
    paths = top_paths(doc, state["logit"], k_paths) if state.get("logit") else []
    pinned = state["pinned"]
    if not pinned and not state["groups"]:
        pinned = list(dict.fromkeys(x for _, p in paths for x in p))
    sub = subgraph(doc, pinned, state["groups"], labels)
    return {"kind": "circuits", "tokens": doc.tokens, "logit": state.get("logit"), "pinned": state["pinned"],
            "supernodes": [{"name": n, "nodes": g} for n, g in state["groups"]],
            "paths": [{"strength": s, "nodes": p} for s, p in paths]} | sub
