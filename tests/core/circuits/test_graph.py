"""Influence, pruning and scores against a brute-force NumPy implementation of their rules, and circuit-tracer's
own hand-checkable example."""

import numpy as np
import pytest
import torch
from helpers.circuits import random_graph

from core.circuits.graph import influence, normalize, prune, scores


def np_influence(A, w):
    W = np.abs(A) / np.maximum(np.abs(A).sum(1, keepdims=True), 1e-10)
    return w @ np.linalg.inv(np.eye(len(A)) - W) - w, W  # w (W + W² + ...) as one inverse


def np_threshold(scores, share):
    s = np.sort(scores.ravel())[::-1]
    c = np.cumsum(s) / s.sum()
    return s[min(int(np.argmax(c >= share)) if (c >= share).any() else len(c) - 1, len(c) - 1)]


def np_prune(A, w, F, tail, nt, et):
    infl, _ = np_influence(A, w)
    nodes = infl >= np_threshold(infl, nt)
    nodes[-tail:] = True
    P = A * nodes[:, None] * nodes[None, :]
    einfl, W = np_influence(P, w)
    edge_scores = W * (einfl + w)[:, None]
    edges = edge_scores >= np_threshold(edge_scores, et)
    while True:
        edges &= nodes[:, None] & nodes[None, :]
        new = nodes.copy()
        new[:-tail] &= edges[:, :-tail].any(0)  # a kept feature or error feeds a kept edge
        new[:F] &= edges[:F].any(1)  # a kept feature is fed by a kept edge
        if (new == nodes).all():
            return nodes, edges & nodes[:, None] & nodes[None, :]
        nodes = new


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("nt,et", [(0.8, 0.98), (0.5, 0.9), (0.95, 0.995)])
def test_prune_equals_numpy(seed, nt, et):
    g = random_graph(seed)
    w = g.logit_weights().numpy()
    A = g.adjacency.numpy().astype(np.float64)
    infl, _ = np_influence(A, w)
    np.testing.assert_allclose(influence(normalize(g.adjacency.double()), torch.tensor(w, dtype=torch.float64)),
                               infl, rtol=1e-9, atol=1e-12)
    got = prune(g, nt, et)
    nodes, edges = np_prune(A, w, g.n_features, g.n_pos + g.n_logits, nt, et)
    assert got.nodes.tolist() == nodes.tolist()
    assert got.edges.numpy().tolist() == edges.tolist()
    assert got.nodes[-(g.n_pos + g.n_logits):].all()  # tokens and logits always kept
    assert nodes[:g.n_features].sum() < g.n_features  # the rule removed something: the test can fail


def test_circuit_tracer_small_graph_by_hand():
    """circuit-tracer's tests/test_graph.py::test_small_graph: node influence by hand."""
    A = torch.zeros(12, 12)
    for t, srcs in {11: [1, 3, 6, 8], 3: [0, 1, 6], 1: [9, 10], 0: [9]}.items():
        A[t, srcs] = 10
    w = torch.zeros(12)
    w[11] = 1
    got = influence(normalize(A), w)
    want = torch.tensor([1 / 12, 1 / 3, 0, 1 / 4, 0, 0, 1 / 3, 0, 1 / 4, 1 / 4, 1 / 6, 0])
    torch.testing.assert_close(got, want)


def test_scores_by_formula():
    g = random_graph(3)
    w = g.logit_weights().numpy()
    infl, W = np_influence(g.adjacency.numpy().astype(np.float64), w)
    e0, t0 = g.error_index(0, 0), g.token_index(0)
    rep = infl[t0:t0 + g.n_pos].sum() / (infl[t0:t0 + g.n_pos].sum() + infl[e0:t0].sum())
    comp = ((1 - W[:, e0:t0].sum(1)) * (infl + w)).sum() / (infl + w).sum()
    got = scores(g)
    assert got == pytest.approx((rep, comp), rel=1e-5)
    assert 0 < got[0] < 1 and 0 < got[1] < 1
