"""Interventions on a graph's nodes against independent routes: the linearised replacement model's measured change
is the graph's path sum (its edges came from backward passes, the measurement from forward ones); the real-model
edit is a plain torch forward hook subtracting a·W_dec at the MLP output; ablating every feature and error node of a
layer is zeroing that MLP's output, in the real model (a hook) and in the replacement model (a hand-written forward
pass with norm scales and attention patterns frozen by value, tests/helpers/frozen_values.py)."""

import dataclasses

import pytest
import torch
from helpers.circuits import random_transcoders
from helpers.frozen_values import llama_by_hand

from core.circuits.attribute import AttributionConfig, attribute
from core.circuits.interventions import (
    Op,
    change_of,
    intervene_nodes,
    intervention_table,
    measure,
    new_values,
    node_influence,
    open_graph,
    parse_op,
)
from core.circuits.nodes import from_graph
from core.circuits.passes import real
from core.circuits.prompt import GraphError

PROMPT = "The cat sat on the mat"


def graph_model(lm, tcs):
    graph = attribute(lm, tcs, PROMPT, AttributionConfig(max_features=None, batch_size=128))
    return graph, open_graph(lm, tcs, from_graph(graph))


@pytest.fixture(scope="module")
def relu_graph(relu_lm):
    tcs = random_transcoders(relu_lm, seed=1)
    return (tcs, *graph_model(relu_lm, tcs))


def ids_of(gm, idx):
    return [gm.nodes.nodes[i].id for i in idx]


@pytest.mark.parametrize("k", [None, 8])
def test_linearised_replacement_change_is_the_graphs_path_sum(relu_lm, relu_graph, k):
    """ReLU and TopK transcoders (large errors): zeroing, scaling and steering features, errors and sets of both."""
    tcs, graph, gm = relu_graph if k is None else (None, *graph_model(relu_lm, random_transcoders(relu_lm, seed=2,
                                                                                                   k=k)))
    nodes = gm.nodes
    infl = node_influence(nodes)
    feats = sorted(nodes.features(), key=lambda i: -float(infl[i]))
    errs = [i for i, n in enumerate(nodes.nodes) if n.kind == "error" and n.pos > 0]
    assert len(feats) > 50 and graph.n_features == len(graph.activations)  # every active feature is a node
    cases = [([f], "zero") for f in feats[:4]] + [(feats[:3], "scale:2.5"), ([feats[1]], "steer:1.5"),
                                                 (errs[3:5], "zero"), ([errs[-1], feats[0]], "scale:-1"),
                                                 (feats[::7], "zero")]
    indirect = 0.0
    for chosen, op in cases:
        e = intervene_nodes(gm, ids_of(gm, chosen), op)
        assert len(e.logits) == graph.n_logits and e.edges == "every edge"
        for c in e.logits:
            assert abs(c.linearised - c.predicted) < 1e-4 * max(1.0, abs(c.predicted)), (op, c)
        if op == "zero" and len(chosen) == 1:
            direct = -float(nodes.adjacency[nodes.target, chosen[0]])
            indirect = max(indirect, abs(e.target.predicted - direct))
    assert indirect > 1e-3  # the prediction is more than the direct edges


def hand_mlp_records(lm, ids):
    """(clean MLP inputs, clean MLP outputs) per layer, read with plain torch hooks."""
    ins, outs, hs = {}, {}, []

    def read(i):
        def hook(_m, args, out):
            ins[i], outs[i] = args[0][0].clone(), out[0].clone()
        return hook

    for i, layer in enumerate(lm.model.model.layers):
        hs.append(layer.mlp.register_forward_hook(read(i)))
    try:
        lm.model(torch.tensor([ids]))
    finally:
        for h in hs:
            h.remove()
    return ins, outs


def hand_edited_logits(lm, ids, deltas):
    """Last-position logits with deltas[layer] (T, d) added to the MLP's output by a plain forward hook."""
    hs = [lm.model.model.layers[i].mlp.register_forward_hook(lambda m, a, o, d=d: o + d[None])
          for i, d in deltas.items()]
    try:
        return lm.model(torch.tensor([ids])).logits[0, -1]
    finally:
        for h in hs:
            h.remove()


def test_real_model_intervention_equals_a_hand_edited_forward(relu_lm, relu_graph):
    tcs, graph, gm = relu_graph
    nodes, ids = gm.nodes, graph.tokens
    feats = nodes.features()
    pick = [feats[3], feats[-2], next(i for i, n in enumerate(nodes.nodes) if n.kind == "error" and n.pos == 2)]
    ins, outs = hand_mlp_records(relu_lm, ids)
    for op in ("zero", "scale:3", "steer:-2"):
        chosen = pick if op != "steer:-2" else pick[:2]
        new = new_values(nodes, chosen, parse_op(op))
        deltas = {}
        for i in chosen:
            n = nodes.nodes[i]
            d = deltas.setdefault(n.layer, torch.zeros(len(ids), relu_lm.parts.d_model))
            tc = tcs[n.layer]
            if n.kind == "feature":
                d[n.pos] += (new[i] - n.value) * tc.W_dec[n.index]
            else:
                x = ins[n.layer][n.pos]
                err = outs[n.layer][n.pos] - (torch.relu(x @ tc.W_enc + tc.b_enc) @ tc.W_dec + tc.b_dec)
                d[n.pos] += (new[i] - 1.0) * err
        hand = hand_edited_logits(relu_lm, ids, deltas)
        clean = relu_lm.model(torch.tensor([ids])).logits[0, -1]
        got = real(relu_lm, tcs, gm.prep, [change_of(nodes, {}), change_of(nodes, new)])
        torch.testing.assert_close(got[0], clean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got[1], hand, atol=1e-4, rtol=1e-4)
        e = intervene_nodes(gm, ids_of(gm, chosen), op)
        k = e.target.id
        want = (hand[k] - hand.mean()) - (clean[k] - clean.mean())
        assert abs(e.target.real - float(want)) < 1e-4
        assert abs(float(hand[k] - clean[k])) > 1e-3  # the edit matters


def test_ablating_every_node_of_a_layer_is_zeroing_its_mlp(relu_lm):
    tcs = [dataclasses.replace(tc, b_dec=torch.zeros_like(tc.b_dec)) for tc in random_transcoders(relu_lm, seed=3)]
    graph, gm = graph_model(relu_lm, tcs)
    ids, layer = graph.tokens, 1
    chosen = [n.id for n in gm.nodes.nodes if n.kind in ("feature", "error") and n.layer == layer and n.pos > 0]
    new = new_values(gm.nodes, gm.nodes.select(chosen), Op("zero"))
    rep, _, rl = measure(gm, [new])
    mlps = relu_lm.model.model.layers
    zero = torch.zeros(len(ids), relu_lm.parts.d_model)
    ins, outs = hand_mlp_records(relu_lm, ids)
    # the real model: the MLP's output at positions 1.. replaced by zeros
    torch.testing.assert_close(rl[1], hand_edited_logits(relu_lm, ids, {layer: -outs[layer] * (zero + 1).index_fill(
        0, torch.tensor([0]), 0)}), atol=1e-4, rtol=1e-4)
    # the replacement model by hand: frozen norms and patterns; transcoders + fixed errors; layer 1 zeroed at 1..
    rec: dict = {}
    _, clean = llama_by_hand(relu_lm, ids, lambda i, x: mlps[i].mlp(x), rec)

    def recon(i, x):
        return tcs[i].encode(x) @ tcs[i].W_dec + tcs[i].b_dec

    def frozen_mlp(i, x):
        if i == layer:
            return torch.cat([outs[i][:1], zero[1:]])
        return outs[i] + recon(i, x) - recon(i, ins[i])

    _, frozen_clean = llama_by_hand(relu_lm, ids, lambda i, x: outs[i] + recon(i, x) - recon(i, ins[i]), rec, True)
    _, ablated = llama_by_hand(relu_lm, ids, frozen_mlp, rec, frozen=True)
    torch.testing.assert_close(rep[0], frozen_clean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rep[0], clean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rep[1], ablated, atol=1e-4, rtol=1e-4)
    assert (ablated - clean).abs().max() > 1e-2


def test_table_over_the_most_influential_features(relu_graph):
    tcs, graph, gm = relu_graph
    t = intervention_table(gm)
    assert len(t.rows) == 10 and [r.influence for r in t.rows] == sorted((r.influence for r in t.rows), reverse=True)
    for r in t.rows:
        e = intervene_nodes(gm, [r.node], "zero")
        assert (r.predicted, r.replacement, r.linearised, r.real) == pytest.approx(
            (e.target.predicted, e.target.replacement, e.target.linearised, e.target.real), abs=1e-5)
    assert t.correlation["linearised"] == pytest.approx(1.0, abs=1e-6)
    assert set(t.correlation) == {"replacement", "linearised", "real"}
    second = gm.nodes.nodes[gm.nodes.logits()[1]]
    e = intervene_nodes(gm, [t.rows[0].node], "zero", target=second.id)
    assert e.target == e.logits[1] and e.target.id == second.index and not second.is_target
    t2 = intervention_table(gm, n=3, target=second.id)
    assert [r.predicted for r in t2.rows[:1]] == pytest.approx([e.target.predicted], abs=1e-6)


def test_bad_input_is_one_line(relu_lm, relu_graph):
    tcs, graph, gm = relu_graph
    nodes = gm.nodes
    err = next(n.id for n in nodes.nodes if n.kind == "error")
    tok = next(n.id for n in nodes.nodes if n.kind == "token")
    cases = [(lambda: intervene_nodes(gm, ["9_9_9"], "zero"), "not in this graph"),
             (lambda: intervene_nodes(gm, [], "zero", name="capitals"), "supernode 'capitals' has no nodes"),
             (lambda: intervene_nodes(gm, [err], "steer:1"), "steer acts on feature nodes"),
             (lambda: intervene_nodes(gm, [tok], "zero"), "is a token node"),
             (lambda: intervene_nodes(gm, [err], "zero", target=tok), "not a logit node"),
             (lambda: open_graph(relu_lm, random_transcoders(relu_lm, seed=9), nodes), "another model or set")]
    cases += [(lambda op=op: parse_op(op), "--op") for op in ("zap", "scale", "scale:x", "zero:1", "steer:nan")]
    for fn, words in cases:
        with pytest.raises(GraphError) as e:
            fn()
        assert words in str(e.value) and "\n" not in str(e.value)
