"""Head ablation against hand-edited models: zeroing a head's slice equals zeroing its output weights, mean
ablation equals a bias, ablating nothing changes nothing; the corpus sample."""

import copy

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.data.corpus import demo_documents
from core.heads.ablation import HeadAblator, corpus_windows, head_ablation
from core.model.load import LoadedModel
from core.model.parts import find_parts

ARCHS = ["llama", "gemma3", "gpt2"]


def wrap(model):
    return LoadedModel(name="tiny", source="config", model=model, tokenizer=tiny_tokenizer(),
                       parts=find_parts(model))


# ----------------------------------------------------------------------------- ablation vs hand-edited models
def windows_for(seed=0):
    g = np.random.default_rng(seed)
    return [g.integers(2, 300, size=n).tolist() for n in (12, 7, 16, 3)]


def hf_loss(model, windows) -> float:
    """HF's own loss, one unpadded window at a time, pooled over all predictions."""
    tot = n = 0
    with torch.inference_mode():
        for w in windows:
            ids = torch.tensor([w])
            tot += float(model(ids, labels=ids).loss) * (len(w) - 1)
            n += len(w) - 1
    return tot / n


def zero_head_columns(arch, model, layer, head, dh):
    if arch == "gpt2":
        model.transformer.h[layer].attn.c_proj.weight[head * dh:(head + 1) * dh] = 0  # Conv1D (in, out)
    else:
        model.model.layers[layer].self_attn.o_proj.weight[:, head * dh:(head + 1) * dh] = 0  # Linear (out, in)


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_ablation_equals_zeroed_weights(arch):
    model = tiny_model(arch)
    lm, windows = wrap(model), windows_for()
    got = head_ablation(lm, windows, kinds=("zero",))["zero"]  # (L, H)
    base = hf_loss(model, windows)
    for layer, head in [(0, 0), (1, 3), (2, 1)]:
        edited = copy.deepcopy(model)
        with torch.no_grad():
            zero_head_columns(arch, edited, layer, head, 16)
        assert got[layer, head] == pytest.approx(hf_loss(edited, windows) - base, abs=2e-5)
    assert np.abs(got).max() > 1e-4  # the heads matter (the check above is not 0 == 0)


def test_mean_ablation_equals_mean_bias():
    model = tiny_model("llama")
    lm, windows, layer, head, dh = wrap(model), windows_for(1), 1, 2, 16
    got = head_ablation(lm, windows, kinds=("mean", "zero"), layers=[layer])
    assert np.isnan(got["mean"][0]).all() and np.isfinite(got["mean"][layer]).all()
    o = model.model.layers[layer].self_attn.o_proj
    seen = []
    handle = o.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0][0, :, head * dh:(head + 1) * dh]))
    try:
        hf_loss(model, windows)
    finally:
        handle.remove()
    mean = torch.cat(seen).double().mean(0)  # (dh,) over all tokens of all windows
    edited = copy.deepcopy(model)
    eo = edited.model.layers[layer].self_attn.o_proj
    new = torch.nn.Linear(eo.in_features, eo.out_features, bias=True)
    with torch.no_grad():  # W x with x_h := mean  ==  W' x + W_h mean, W' = W with head h's columns zeroed
        new.weight.copy_(eo.weight)
        new.weight[:, head * dh:(head + 1) * dh] = 0
        new.bias.copy_((eo.weight[:, head * dh:(head + 1) * dh].double() @ mean).float())
    edited.model.layers[layer].self_attn.o_proj = new
    want = hf_loss(edited, windows) - hf_loss(model, windows)
    assert got["mean"][layer, head] == pytest.approx(want, abs=2e-5)
    assert got["mean"][layer, head] != pytest.approx(got["zero"][layer, head], abs=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_ablating_nothing_changes_nothing(arch):
    model = tiny_model(arch)
    windows = windows_for(2)
    abl = HeadAblator(wrap(model), windows)
    assert abl.baseline == pytest.approx(hf_loss(model, windows), abs=1e-5)  # padded batch = unpadded windows
    for layer in range(3):  # replayed prefix + hook with no heads: the baseline again
        for kind in ("zero", "mean"):
            assert abl.loss(layer, [], kind) == pytest.approx(abl.baseline, abs=1e-6)
    with pytest.raises(ValueError, match="kind"):
        abl.loss(0, [0], "resample")


def test_corpus_windows():
    lm = wrap(tiny_model("llama"))
    wins = corpus_windows(lm, n_tokens=300, context_len=64)
    assert sum(map(len, wins)) == 300 and max(map(len, wins)) <= 64 and min(map(len, wins)) >= 2
    first = lm.tokenizer(next(demo_documents()))["input_ids"]  # tokenizer defaults: BOS first
    assert wins[0] == first[:64] and wins[0][0] == lm.tokenizer.bos_token_id




@pytest.mark.parametrize("arch", ARCHS)
def test_batched_ablations_equal_one_at_a_time(arch, monkeypatch):
    """Stacked copies, each with its own head ablated (in several passes when the budget is small), give the
    losses of single ablated passes."""
    lm = wrap(tiny_model(arch))
    abl = HeadAblator(lm, windows_for(1))
    variants = [(h, k) for h in range(abl.n_heads) for k in ("zero", "mean")]
    monkeypatch.setattr(HeadAblator, "TOKENS_PER_PASS", 3 * abl.ids.numel())  # 3 copies a pass
    got = abl.layer_losses(1, variants)
    want = [abl.loss(1, [h], k) for h, k in variants]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
