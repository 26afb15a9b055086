"""One attribution graph of a prompt, and the functions over it: node influence, pruning, graph scores.

The node order is circuit-tracer's (graph.py there), so an adjacency matrix reads the same in both tools:

    [0, F)                          selected transcoder features (active features, in (layer, position, feature)
                                    order, the subset `selected` kept by --max-feature-nodes)
    F + l*T + p                     the error node of layer l at position p    (l in [0, L))
    F + L*T + p                     the token (embedding) node at position p
    F + (L+1)*T + k                 logit target k (most probable first)

`adjacency[target, source]` is the direct effect of the source on the target in the frozen replacement model
(core.circuits.attribute): for a feature target the effect on its pre-activation (without b_enc), for a logit target
on the logit minus the mean logit. Rows of error and token nodes are zero (they are only sources), and so are the
columns of logit nodes.

Influence (circuit-tracer's `compute_node_influence`): with W = |A| normalised to rows summing to 1 and w the logit
probabilities on the logit nodes, influence = w (W + W² + W³ + ...): the share of the logits' weight that reaches a
node over all paths. Pruning keeps nodes up to a cumulative share of influence and then edges up to a cumulative
share of edge influence; tokens and logits are always kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

FEATURE, ERROR, TOKEN, LOGIT = "feature", "error", "token", "logit"


@dataclass
class Graph:
    prompt: str
    """The prompt as given."""
    tokens: list[int]
    """The token ids the graph is about (a special token at position 0, core.circuits.prompt)."""
    token_strs: list[str]
    """Each token decoded on its own."""
    n_layers: int
    active: torch.Tensor  # (n_active, 3) int64: layer, position, feature of every active transcoder feature
    activations: torch.Tensor  # (n_active,) float32 their activations
    selected: torch.Tensor  # (F,) int64 indices into `active` of the feature nodes, ascending
    adjacency: torch.Tensor  # (N, N) float32, N = F + (L+1)*T + n_logits; [target, source]
    logit_ids: list[int]
    """Vocabulary ids of the logit targets, most probable first."""
    logit_strs: list[str]
    logit_probs: torch.Tensor  # (n_logits,) float32 each target's probability under the model
    model: str = ""
    transcoders: str = ""
    """The transcoder set's scan (its id; its folder when it names none)."""
    decoded: str = ""
    """The tokens decoded together (the prompt as the model saw it, position 0's special token included)."""
    settings: dict = field(default_factory=dict)
    """How it was made: max logits, logit probability, max feature nodes, batch size, timings."""

    def __post_init__(self) -> None:
        T, L, F, K = len(self.tokens), self.n_layers, len(self.selected), len(self.logit_ids)
        N = F + (L + 1) * T + K
        if self.adjacency.shape != (N, N):
            raise ValueError(f"adjacency {tuple(self.adjacency.shape)} != ({N}, {N}) for {F} features, {L} layers, "
                             f"{T} positions, {K} logits")
        if self.active.shape != (len(self.activations), 3) or len(self.logit_probs) != K:
            raise ValueError("active features, activations and logit probabilities disagree in length")

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return len(self.selected)

    @property
    def n_logits(self) -> int:
        return len(self.logit_ids)

    @property
    def n_nodes(self) -> int:
        return self.adjacency.shape[0]

    def error_index(self, layer: int, pos: int) -> int:
        return self.n_features + layer * self.n_pos + pos

    def token_index(self, pos: int) -> int:
        return self.n_features + self.n_layers * self.n_pos + pos

    def logit_index(self, k: int) -> int:
        return self.n_features + (self.n_layers + 1) * self.n_pos + k

    def kind(self, i: int) -> str:
        if i < self.n_features:
            return FEATURE
        if i < self.token_index(0):
            return ERROR
        return TOKEN if i < self.logit_index(0) else LOGIT

    def logit_weights(self) -> torch.Tensor:
        """(N,) the logit probabilities on the logit nodes, 0 elsewhere: where influence starts."""
        w = torch.zeros(self.n_nodes)
        w[self.logit_index(0):] = self.logit_probs.float()
        return w


def normalize(A: torch.Tensor) -> torch.Tensor:
    """|A| with each row divided by its sum (rows summing to 0 stay 0)."""
    A = A.abs()
    return A / A.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(W: torch.Tensor, w: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
    """w (W + W² + ...) for a nilpotent W (a graph without cycles): the series ends in exact zeros."""
    cur = w @ W
    total = cur.clone()
    for _ in range(max_iter):
        if not cur.any():
            return total
        cur = cur @ W
        total += cur
    raise RuntimeError(f"influence did not converge in {max_iter} steps: the graph has a cycle")


def node_influence(graph: Graph) -> torch.Tensor:
    """(N,) each node's influence on the logits (module docstring)."""
    return influence(normalize(graph.adjacency), graph.logit_weights())


def threshold_of(scores: torch.Tensor, share: float) -> torch.Tensor:
    """The smallest score among the top scores that together reach `share` of the total."""
    s = scores.flatten().sort(descending=True).values
    cum = s.cumsum(0) / s.sum()
    i = min(int(torch.searchsorted(cum, torch.tensor(share, dtype=cum.dtype))), len(cum) - 1)
    return s[i]


@dataclass
class Pruned:
    nodes: torch.Tensor  # (N,) bool kept nodes
    edges: torch.Tensor  # (N, N) bool kept edges [target, source]
    cumulative: torch.Tensor  # (N,) each node's cumulative share of influence when sorted (small = important)
    influence: torch.Tensor  # (N,) node influence


def prune(graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """circuit-tracer's `prune_graph`: nodes up to `node_threshold` of cumulative influence (tokens and logits
    always), then edges up to `edge_threshold` of cumulative edge influence, then nodes left without a kept outgoing
    edge (features and errors) or a kept incoming edge (features) drop out, until nothing changes."""
    if not (0 <= node_threshold <= 1 and 0 <= edge_threshold <= 1):
        raise ValueError("thresholds must be in [0, 1]")
    A, w = graph.adjacency, graph.logit_weights()
    keep_tail = graph.n_pos + graph.n_logits  # tokens and logits: the last nodes
    infl = influence(normalize(A), w)
    nodes = infl >= threshold_of(infl, node_threshold)
    nodes[-keep_tail:] = True
    P = A.clone()
    P[~nodes] = 0
    P[:, ~nodes] = 0
    Wn = normalize(P)
    edge_scores = Wn * (influence(Wn, w) + w)[:, None]
    edges = edge_scores >= threshold_of(edge_scores, edge_threshold)
    F = graph.n_features
    while True:
        old = nodes.clone()
        edges[~nodes] = False
        edges[:, ~nodes] = False
        nodes[:-keep_tail] &= edges[:, :-keep_tail].any(0)
        nodes[:F] &= edges[:F].any(1)
        if torch.equal(nodes, old):
            break
    edges[~nodes] = False
    edges[:, ~nodes] = False
    order = infl.sort(descending=True)
    cumulative = torch.zeros_like(infl)
    cumulative[order.indices] = order.values.cumsum(0) / order.values.sum()
    return Pruned(nodes, edges, cumulative, infl)


def scores(graph: Graph) -> tuple[float, float]:
    """(replacement score, completeness score) of the unpruned graph, as circuit-tracer computes them.

    Replacement: of the influence that reaches the inputs, the share that arrives at token nodes rather than error
    nodes (1: every path from the logits back to the prompt runs through features). Completeness: the influence-
    weighted share of each node's incoming |edge| weight that comes from non-error nodes (1: nothing is explained by
    reconstruction errors)."""
    W, w = normalize(graph.adjacency), graph.logit_weights()
    infl = influence(W, w)
    e0, t0 = graph.error_index(0, 0), graph.token_index(0)
    errors, tokens = slice(e0, t0), slice(t0, t0 + graph.n_pos)
    tok, err = float(infl[tokens].sum()), float(infl[errors].sum())
    replacement = tok / (tok + err) if tok + err > 0 else 0.0
    weight = infl + w
    completeness = float(((1 - W[:, errors].sum(-1)) * weight).sum() / weight.sum())
    return replacement, completeness
