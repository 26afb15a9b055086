"""Check a graph by intervention: ablate, scale or steer a node, a subgraph or a supernode (a set of node ids), and
put the change of each logit target that the graph predicts beside the change measured in the frozen replacement
model and in the real model (core.circuits.passes).

Ops, on each chosen node (a = a feature's activation on the prompt, m = the largest activation of the same feature
over the graph's nodes, i.e. over the positions where the graph has it):
    zero      a feature's activation set to 0; an error node's error vector removed
    scale:A   a feature's activation set to A·a; an error vector multiplied by A
    steer:A   a feature's activation set to a + A·m (feature nodes only)
The chosen nodes are clamped there: they do not respond to each other or to anything upstream.

Prediction (the graph's): the path sum through its adjacency. With M[u, s] = A[u, s] / v_s (v_s: a feature's
activation, 1 for an error node: edges per unit of the source) and the chosen nodes' rows of M zeroed (clamped), the
change δ0 at the chosen nodes (new − old value) spreads as δ = (I + M + M² + ...) δ0: every downstream feature
responds linearly through its pre-activation and stays on its active set, and a logit target changes by
(M δ)[k]. Logit changes are of the logit minus the mean logit, the quantity the graph's logit nodes carry. The
adjacency is the one the graph holds (`GraphNodes.edges`): a Graph just computed has every edge, so its prediction
equals the linearised replacement model's measured change exactly; a stored graph has every edge among its kept
nodes, a graph file only its kept links, so paths through dropped nodes are not in the prediction.

Measured: the frozen replacement model (features recomputed by their transcoders) and its linearised form (features
kept on their active set) in one batched pass, the real model (features and errors added or subtracted at their
layers' MLP outputs) in another; tokens gained and lost are read from the real model's probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from core.circuits.graph import ERROR, FEATURE, TOKEN, influence, normalize
from core.circuits.nodes import GraphNodes
from core.circuits.passes import Change, Prepared, prepare, real, replacement
from core.circuits.prompt import GraphError

OPS = ("zero", "scale", "steer")
RTOL, ATOL = 0.05, 1e-3
"""How closely a graph's feature activations must match the model and set it is opened with."""


@dataclass(frozen=True)
class Op:
    kind: Literal["zero", "scale", "steer"]
    alpha: float = 0.0

    def __str__(self) -> str:
        return self.kind if self.kind == "zero" else f"{self.kind}:{self.alpha:g}"


def parse_op(text: str | Op) -> Op:
    """'zero', 'scale:A' or 'steer:A' -> Op; GraphError (one line) otherwise."""
    if isinstance(text, Op):
        return text
    kind, _, arg = str(text).strip().partition(":")
    if kind not in OPS or (kind == "zero") != (arg == ""):
        raise GraphError(f"--op {text!r}: expected zero, scale:A or steer:A (A a number)")
    try:
        alpha = float(arg) if arg else 0.0
    except ValueError:
        raise GraphError(f"--op {text!r}: {arg!r} is not a number") from None
    if not math.isfinite(alpha):
        raise GraphError(f"--op {text!r}: A must be finite")
    return Op(kind, alpha)  # type: ignore[arg-type]


@dataclass
class GraphModel:
    """A graph with the model and transcoder set it describes, checked against each other, and its clean pass:
    make once per graph (`open_graph`), then each intervention costs two batched forward passes."""

    lm: object
    transcoders: list
    """One transcoder per layer (core.saes SAE objects)."""
    nodes: GraphNodes
    prep: Prepared


def _check_shape(lm, transcoders, nodes: GraphNodes) -> None:
    if nodes.n_layers != lm.n_layers or len(transcoders) != lm.n_layers:
        raise GraphError(f"the graph has {nodes.n_layers} layers, {lm.name} {lm.n_layers} and the transcoder set "
                         f"{len(transcoders)}: a graph of another model or set")
    V = lm.model.get_output_embeddings().weight.shape[0]
    if not nodes.tokens or max(nodes.tokens) >= V or min(nodes.tokens) < 0:
        raise GraphError(f"the graph's token ids do not fit {lm.name}'s vocabulary of {V}: a graph of another model")
    for n in nodes.nodes:
        if n.kind == TOKEN and nodes.tokens[n.pos] != n.index:
            raise GraphError(f"token node {n.id!r} disagrees with the graph's tokens")
        if n.kind == FEATURE and n.index >= transcoders[n.layer].d_sae:
            raise GraphError(f"feature node {n.id!r}: layer {n.layer}'s transcoder has {transcoders[n.layer].d_sae} "
                             "features: a graph of another transcoder set")


def _check_activations(lm, nodes: GraphNodes, prep: Prepared) -> None:
    for n in nodes.nodes:
        if n.kind != FEATURE:
            continue
        here = float(prep.acts[n.layer][n.pos, n.index])
        if abs(here - n.value) > ATOL + RTOL * abs(n.value):
            raise GraphError(f"feature node {n.id!r} has activation {n.value:.4g} in the graph and {here:.4g} with "
                             f"{lm.name} and this transcoder set: the graph was made with another model or set")


def open_graph(lm, transcoders, nodes: GraphNodes) -> GraphModel:
    """Check the graph against the model and set (layers, tokens, every feature node's activation) and make the
    clean pass; GraphError (one line) when they do not belong together."""
    transcoders = list(getattr(transcoders, "transcoders", transcoders))
    _check_shape(lm, transcoders, nodes)
    prep = prepare(lm, transcoders, nodes.tokens)
    _check_activations(lm, nodes, prep)
    return GraphModel(lm, transcoders, nodes, prep)


def new_values(nodes: GraphNodes, chosen: list[int], op: Op) -> dict[int, float]:
    """{node index: its clamped value} (module docstring); GraphError for a token or logit node, or steering an
    error node."""
    peak: dict[tuple[int, int], float] = {}
    for n in nodes.nodes:
        if n.kind == FEATURE:
            peak[(n.layer, n.index)] = max(peak.get((n.layer, n.index), 0.0), n.value)
    out = {}
    for i in chosen:
        n = nodes.nodes[i]
        if n.kind not in (FEATURE, ERROR):
            raise GraphError(f"node {n.id!r} is a {n.kind} node: interventions act on feature and error nodes")
        if op.kind == "steer" and n.kind == ERROR:
            raise GraphError(f"node {n.id!r} is an error node: steer acts on feature nodes (zero or scale it)")
        out[i] = {"zero": 0.0, "scale": op.alpha * n.value,
                  "steer": n.value + op.alpha * peak.get((n.layer, n.index), 0.0)}[op.kind]
    return out


def predict(nodes: GraphNodes, new: dict[int, float]) -> torch.Tensor:
    """(n,) every node's predicted change (module docstring): features in activation, errors in units of their
    vector, logits in logit minus mean logit."""
    A = nodes.adjacency
    value = torch.tensor([n.value if n.value else 1.0 for n in nodes.nodes])
    M = A / value[None, :]  # (n, n) effect per unit of each source
    idx = torch.tensor(list(new), dtype=torch.long)
    M[idx] = 0  # the chosen nodes are clamped
    delta0 = torch.zeros(len(nodes.nodes))
    delta0[idx] = torch.tensor(list(new.values())) - value[idx]
    total, cur = delta0.clone(), delta0
    for _ in range(len(nodes.nodes) + 1):
        cur = M @ cur
        if not cur.any():
            return total
        total += cur
    raise GraphError("the graph's edges form a cycle: not an attribution graph")


def change_of(nodes: GraphNodes, new: dict[int, float]) -> Change:
    ch = Change()
    for i, v in new.items():
        n = nodes.nodes[i]
        if n.kind == FEATURE:
            ch.features.append((n.layer, n.pos, n.index, v))
        else:
            ch.errors.append((n.layer, n.pos, v))
    return ch


@dataclass
class LogitChange:
    token: str
    id: int
    predicted: float
    """The graph's path sum."""
    replacement: float
    """Measured in the frozen replacement model, features recomputed by their transcoders."""
    linearised: float
    """Measured in the frozen replacement model with every other feature kept on its active set."""
    real: float
    """Measured in the real model."""


@dataclass
class TokenShift:
    token: str
    id: int
    p_before: float
    p_after: float


@dataclass
class Effect:
    nodes: list[str]
    op: str
    edges: str
    """Which edges the prediction read (GraphNodes.edges)."""
    target: LogitChange
    """The chosen logit's change (the graph's target logit unless another was asked for)."""
    logits: list[LogitChange]
    """Every logit node's, in the graph's order (most probable first unless targets were given)."""
    gained: list[TokenShift] = field(default_factory=list)
    """The tokens whose probability rose most in the real model."""
    lost: list[TokenShift] = field(default_factory=list)


def _demeaned(logits: torch.Tensor) -> torch.Tensor:
    """(B, V) -> each row's logits minus its mean, minus row 0's (the baseline)."""
    d = logits - logits.mean(-1, keepdim=True)
    return d - d[:1]


def _shifts(lm, logits: torch.Tensor, top: int) -> tuple[list[TokenShift], list[TokenShift]]:
    """Tokens gained and lost between row 0 and row 1 of (2, V) logits, by probability."""
    p = logits.softmax(-1)
    dp = p[1] - p[0]

    def shift(i: int) -> TokenShift:
        return TokenShift(lm.tokenizer.decode([i]), i, float(p[0, i]), float(p[1, i]))
    return ([shift(i) for i in dp.topk(top).indices.tolist()],
            [shift(i) for i in (-dp).topk(top).indices.tolist()])


def measure(gm: GraphModel, news: list[dict[int, float]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(replacement, linearised, real) logits, each (1 + len(news), V), row 0 the unedited baseline: two passes."""
    changes = [Change()] + [change_of(gm.nodes, new) for new in news]
    rep = replacement(gm.lm, gm.transcoders, gm.prep, changes + changes[1:],
                      [False] * len(changes) + [True] * len(news))
    lin = torch.cat([rep[:1], rep[len(changes):]])
    return rep[:len(changes)], lin, real(gm.lm, gm.transcoders, gm.prep, changes)


def intervene_nodes(gm: GraphModel, ids: list[str], op: str | Op, *, name: str = "", top: int = 5,
                    target: str | None = None) -> Effect:
    """The predicted and measured effect of `op` on the nodes `ids` together (a node, a subgraph, or the supernode
    `name`), read at the logit node `target` (default: the graph's target); GraphError (one line) for an unknown id,
    an empty supernode, a bad op."""
    op = parse_op(op)
    nodes = gm.nodes
    k = nodes.logit(target)
    chosen = nodes.select(ids, name)
    new = new_values(nodes, chosen, op)
    pred = predict(nodes, new)
    logits = measure(gm, [new])
    rep, lin, rl = (_demeaned(x) for x in logits)
    changes = []
    for i in nodes.logits():
        tid = nodes.nodes[i].index
        changes.append(LogitChange(gm.lm.tokenizer.decode([tid]), tid, float(pred[i]), float(rep[1, tid]),
                                   float(lin[1, tid]), float(rl[1, tid])))
    gained, lost = _shifts(gm.lm, logits[2], top)
    return Effect([nodes.nodes[i].id for i in chosen], str(op), nodes.edges, changes[nodes.logits().index(k)],
                  changes, gained, lost)


@dataclass
class TableRow:
    node: str
    influence: float
    predicted: float
    replacement: float
    linearised: float
    real: float


@dataclass
class Table:
    """Zero ablation of the graph's most influential features, one at a time: the target logit's change."""

    target: str
    rows: list[TableRow]
    correlation: dict[str, float | None]
    """Pearson correlation of the predicted change with each measured one (None with fewer than 3 rows or no
    spread)."""


def node_influence(nodes: GraphNodes) -> torch.Tensor:
    """(n,) each node's influence on the logit targets, weighted by their probabilities (core.circuits.graph)."""
    w = torch.tensor([n.prob for n in nodes.nodes])
    try:
        return influence(normalize(nodes.adjacency), w)
    except RuntimeError:
        raise GraphError("the graph's edges form a cycle: not an attribution graph") from None


def _pearson(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3:
        return None
    a, b = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else None


def intervention_table(gm: GraphModel, n: int = 10, target: str | None = None) -> Table:
    """Zero each of the graph's `n` most influential feature nodes alone: predicted vs measured change of the logit
    node `target` (default: the graph's target; logit minus the mean logit), and their correlations; two batched
    passes in all."""
    nodes = gm.nodes
    t = nodes.logit(target)
    infl = node_influence(nodes)
    feats = sorted(nodes.features(), key=lambda i: -float(infl[i]))[:n]
    news = [new_values(nodes, [i], Op("zero")) for i in feats]
    k = nodes.nodes[t].index
    rep, lin, rl = (_demeaned(x)[:, k] for x in measure(gm, news)) if news else (None, None, None)
    rows = [TableRow(nodes.nodes[i].id, float(infl[i]), float(predict(nodes, new)[t]),
                     float(rep[j + 1]), float(lin[j + 1]), float(rl[j + 1]))
            for j, (i, new) in enumerate(zip(feats, news, strict=True))]
    pred = [r.predicted for r in rows]
    corr = {m: _pearson(pred, [getattr(r, m) for r in rows]) for m in ("replacement", "linearised", "real")}
    return Table(gm.lm.tokenizer.decode([k]), rows, corr)
