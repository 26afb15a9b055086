"""Logit lens against a hand-written NumPy computation from the model's own hidden states, and at the last block
against the model's own logits (tiny models of three architectures here; real smollm2 in the slow test)."""

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.lens.logit import lens, trajectory
from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.model.tokens import token_id


def wrap(model):
    return LoadedModel(name="tiny", source="config", model=model, tokenizer=tiny_tokenizer(),
                       parts=find_parts(model))


def np_norm(arch, model, x):
    x = x.astype(np.float64)
    if arch == "gpt2":
        ln = model.transformer.ln_f
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + ln.eps) * ln.weight.numpy() + ln.bias.numpy()
    norm = model.model.norm
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
    g = norm.weight.numpy().astype(np.float64)
    y = x / np.sqrt((x**2).mean(-1, keepdims=True) + eps)
    return y * (1 + g) if arch == "gemma3" else y * g


def np_logsoftmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_lens_equals_hand_computation(arch):
    model = tiny_model(arch)
    with torch.no_grad():  # random gains, so that a missing or wrong norm shows
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.3)
    lm = wrap(model)
    ids = lm.tokenizer("Paris is the capital of France. The cat sat")["input_ids"]
    res = lens(lm, ids, k=5)
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    hs = [h[0].numpy() for h in out.hidden_states]  # embeddings, blocks 0..L-2, then the final-normed last block
    W = model.get_output_embeddings().weight.numpy().astype(np.float64)
    final = out.logits[0].numpy().astype(np.float64)
    cap = getattr(model.config, "final_logit_softcapping", None)
    L = model.config.num_hidden_layers if arch != "gpt2" else model.config.n_layer
    assert res.entropy.shape == (L, len(ids))
    flp = np_logsoftmax(final)
    for layer in range(L):
        z = (np_norm(arch, model, hs[layer + 1]) @ W.T) if layer < L - 1 else final  # the last: the model itself
        if layer < L - 1 and cap:
            z = cap * np.tanh(z / cap)
        lp = np_logsoftmax(z)
        np.testing.assert_allclose(res.entropy[layer], -(np.exp(lp) * lp).sum(-1), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res.kl_final[layer], (np.exp(flp) * (flp - lp)).sum(-1), rtol=1e-3, atol=1e-5)
        rows, tol = np.arange(len(ids)), 1e-4 * (1 + np.abs(z).max())  # float32 vs float64: near-ties may swap
        assert (z[rows, res.top_ids[layer, :, 0]] >= z.max(-1) - tol).all()
        tgt = final.argmax(-1)
        np.testing.assert_allclose(res.target_prob[layer], np.exp(lp[rows, tgt]), rtol=1e-4, atol=1e-6)
        t = z[rows, tgt][:, None]
        assert ((z > t + tol).sum(-1) <= res.target_rank[layer]).all()
        assert (res.target_rank[layer] <= (z > t - tol).sum(-1)).all()
    assert np.allclose(res.kl_final[L - 1], 0, atol=1e-5) and (res.target_rank[L - 1] == 0).all()


def test_fixed_target_and_trajectory_json():
    lm = wrap(tiny_model("llama"))
    ids = lm.tokenizer("The cat sat on the mat")["input_ids"]
    tgt = token_id(lm, " the")
    res = lens(lm, ids, target=tgt)
    assert (res.target_ids == tgt).all()
    j = trajectory(res, -1, lambda i: lm.tokenizer.decode([i]))
    assert j["target"] == " the" and j["position"] == len(ids) - 1 and len(j["layers"]) == 3
    assert {"layer", "top_token", "top_prob", "target_prob", "target_rank"} <= set(j["layers"][0])
    with pytest.raises(ValueError, match="out of range"):
        trajectory(res, len(ids), str)
    # a subset of positions gives exactly those columns of the full lens
    sub = lens(lm, ids, target=tgt, positions=[-1, 1])
    assert sub.positions == [1, len(ids) - 1] and sub.top_ids.shape[1] == 2
    cols = [1, len(ids) - 1]
    for name in ("top_ids", "target_rank"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(res, name)[:, cols])
    for name in ("top_probs", "entropy", "kl_final", "target_prob"):  # other matmul shapes: float rounding
        np.testing.assert_allclose(getattr(sub, name), getattr(res, name)[:, cols], rtol=1e-5, atol=2e-6)
    assert trajectory(sub, -1, lambda i: lm.tokenizer.decode([i]))["target"] == j["target"]
    with pytest.raises(ValueError, match="out of range"):
        trajectory(sub, 2, str)
    with pytest.raises(ValueError, match="not one token"):
        token_id(lm, " cat")
