"""Attribution graphs against independent routes: a hand-frozen copy of the model differentiated by autograd, the
model's own logits, and the linear decomposition the freezes make exact."""

import torch
from helpers.circuits import mlp_as_transcoders, random_transcoders
from helpers.frozen import frozen_llama

from core.circuits.attribute import AttributionConfig, active_features, attribute
from core.circuits.replacement import clean_pass

PROMPT = "The cat sat on"


def hand_rows(lm, tcs, graph):
    """(rows, bias): A[target, source] for every row of `graph` by autograd on the hand-frozen model, and each row's
    bias terms. Each source's value is a leaf (a feature's activation, an error vector, a token embedding) and
    A = value · ∂target/∂value; the constants (each b_dec, and the MLP outputs at position 0) are leaves too, and
    their value · gradient is the row's bias."""
    ids = graph.tokens
    clean = clean_pass(lm, ids)
    act = active_features(tcs, clean)
    T = len(ids)
    a = act.values.clone().requires_grad_(True)  # (n,)
    err = act.errors.clone().requires_grad_(True)  # (L, T, d)
    E = clean.resid_pre[0].clone().requires_grad_(True)  # (T, d)
    const = torch.stack([tc.b_dec.expand(T, -1) for tc in tcs]).clone()  # (L, T, d)
    const[:, 0] = clean.mlp_out[:, 0]  # position 0: the MLP's own output
    const.requires_grad_(True)
    layer_of, pos_of, feat_of = act.index.T

    def mlp_out(layer, _x):
        sel = (layer_of == layer).nonzero().flatten()
        out = torch.zeros(T, lm.parts.d_model).index_add(0, pos_of[sel], a[sel, None] * tcs[layer].W_dec[feat_of[sel]])
        return out + err[layer] + const[layer]

    ins, final = frozen_llama(lm, ids, E, mlp_out)
    W_U = lm.model.lm_head.weight
    vecs = W_U[graph.logit_ids] - W_U.mean(0)
    targets = [tcs[lay].W_enc[:, f] @ ins[lay][p] for lay, p, f in act.index[graph.selected].tolist()]
    y = torch.stack(targets + list(vecs @ final[T - 1]))  # (n_rows,)
    ga, ge, gE, gc = torch.autograd.grad(y, [a, err, E, const], torch.eye(len(y)), is_grads_batched=True,
                                         allow_unused=True, materialize_grads=True)
    rows = torch.cat([(ga * a)[:, graph.selected], (ge * err).sum(-1).flatten(1), (gE * E).sum(-1)], dim=1)
    return rows, (gc * const).sum((1, 2, 3)), y.detach(), final


def test_mlp_as_its_own_transcoder_zero_errors_model_logits_and_hand_jacobian(relu_lm):
    tcs = mlp_as_transcoders(relu_lm)
    graph = attribute(relu_lm, tcs, PROMPT, AttributionConfig(max_features=None, batch_size=64))
    clean = clean_pass(relu_lm, graph.tokens)
    assert active_features(tcs, clean).errors.abs().max() < 1e-5  # the transcoder is the MLP: nothing left over
    hand, _, _, final = hand_rows(relu_lm, tcs, graph)
    model_logits = relu_lm.model(torch.tensor([graph.tokens])).logits[0, -1]
    assert torch.allclose(relu_lm.model.lm_head(final[-1]), model_logits, atol=1e-4)  # the graph's logits
    F, K = graph.n_features, graph.n_logits
    got = torch.cat([graph.adjacency[:F, :graph.n_nodes - K], graph.adjacency[-K:, :graph.n_nodes - K]])
    assert got.shape == hand.shape and F > 100
    assert torch.allclose(got, hand, atol=1e-4, rtol=1e-4), (got - hand).abs().max()
    assert graph.adjacency[F:graph.n_nodes - K].abs().sum() == 0  # error and token nodes have no inputs


def test_completeness_every_row_sums_to_its_preactivation(relu_lm):
    """With random TopK transcoders (large errors): for every node, its incoming edges plus its bias terms equal its
    pre-activation (without b_enc) or its demeaned logit, read from the model's clean pass."""
    tcs = random_transcoders(relu_lm, k=8)
    graph = attribute(relu_lm, tcs, "The dog chased the cat", AttributionConfig(max_features=None, batch_size=50))
    clean = clean_pass(relu_lm, graph.tokens)
    act = active_features(tcs, clean)
    _, bias, _, _ = hand_rows(relu_lm, tcs, graph)
    values = [tcs[lay].W_enc[:, f] @ clean.mlp_in[lay, p] for lay, p, f in act.index[graph.selected].tolist()]
    logits = relu_lm.model(torch.tensor([graph.tokens])).logits[0, -1]
    values += [logits[t] - logits.mean() for t in graph.logit_ids]
    F, K = graph.n_features, graph.n_logits
    rows = torch.cat([graph.adjacency[:F], graph.adjacency[-K:]])
    assert act.errors.abs().max() > 0.1  # the errors matter here
    torch.testing.assert_close(rows.sum(1) + bias, torch.stack(values), atol=3e-4, rtol=1e-4)
