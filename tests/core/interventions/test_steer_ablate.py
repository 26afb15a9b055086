"""Directions, steering and directional ablation against independent routes: NumPy on the model's own hidden states,
plain torch hooks written here, and a weight-edited copy of the model."""

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.interventions.ablate import AblateError, ablation_edits, orthogonalized
from core.interventions.directions import DirectionError, from_prompt_set, from_spec
from core.interventions.steer import NORM_TOKENS, SteerError, steer, stream_norm
from core.model.intervene import store
from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.model.run import logits
from core.model.tokens import tokenize

PAIRS = [("The cat sat on the mat.", "The cat sat on the hat."), ("Paris is the capital of France.",
         "Rome is the capital of France."), ("The dog chased the cat.", "The cat chased the dog."),
         ("Berlin is in Germany.", "Berlin is in Italy."), ("Numbers like 12 appear in tables.",
         "Numbers like 12 appear in trees."), ("def add(a, b): return a + b", "def add(a, b): return a - b"),
         ("The bird watched from a tree.", "The bird watched from a car."), ("In 1905 he published.",
         "In 1905 she published."), ("Italy has Rome.", "Italy has Paris."), ("Four papers in 1905.",
         "Four papers in 1950.")]


def _lm(arch: str) -> LoadedModel:
    model = tiny_model(arch)
    return LoadedModel(name=arch, source="config", model=model, tokenizer=tiny_tokenizer(), parts=find_parts(model))


@pytest.fixture
def prompt_csv(tmp_path):
    rows = ["text,label,group"] + [f'"{a}",yes,g{i}\n"{b}",no,g{i}' for i, (a, b) in enumerate(PAIRS)]
    p = tmp_path / "set.csv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(p)


def _last_states(lm, texts, layer):
    """(N, d) block `layer`'s output at each prompt's last token: HF hidden states, one prompt at a time."""
    out = []
    for t in texts:
        with torch.inference_mode():
            hs = lm.model(torch.tensor([tokenize(lm.tokenizer, t)]), output_hidden_states=True).hidden_states
        out.append(hs[layer + 1][0, -1].double().numpy())
    return np.stack(out)


def test_directions_equal_numpy(prompt_csv):
    lm, L = _lm("llama"), 1
    pos = _last_states(lm, [a for a, _ in PAIRS], L)
    neg = _last_states(lm, [b for _, b in PAIRS], L)
    train = [k for k in range(len(PAIRS)) if k % 4 != 3]  # every 4th pair held out
    held = [k for k in range(len(PAIRS)) if k % 4 == 3]
    dm = from_prompt_set(lm, prompt_csv, L, "diffmeans")
    np.testing.assert_allclose(dm.vector.numpy(), pos[train].mean(0) - neg[train].mean(0), atol=1e-4)
    D = pos[train] - neg[train]
    v = np.linalg.svd(D)[2][0]
    v = v if (D @ v).mean() > 0 else -v
    pca = from_prompt_set(lm, prompt_csv, L, "pca")
    np.testing.assert_allclose(pca.vector.numpy(), v, atol=1e-4)
    # quality by hand: held-out AUC by a double loop, mean pairwise cosine of the training differences
    for d in (dm, pca):
        w = d.vector.double().numpy()
        wins = [1.0 if p @ w > n @ w else 0.5 if p @ w == n @ w else 0.0 for p in pos[held] for n in neg[held]]
        assert d.quality.separation == pytest.approx(np.mean(wins)) and d.quality.held_out == 2 * len(held)
    cos = [D[i] @ D[j] / np.linalg.norm(D[i]) / np.linalg.norm(D[j]) for i in range(len(D)) for j in range(len(D))
           if i != j]
    assert dm.quality.pair_cosine == pytest.approx(np.mean(cos), abs=1e-5) and dm.quality.pairs == len(train)
    probe = from_prompt_set(lm, prompt_csv, L, "probe")
    assert probe.made == {"method": "probe", "set": prompt_csv, "position": "last", "positive": "yes"}
    assert 0 <= probe.quality.separation <= 1
    neuron = from_spec(lm, "neuron:2:5")
    torch.testing.assert_close(neuron.vector, lm.model.model.layers[2].mlp.down_proj.weight[:, 5].float())


def _hand_steer(lm, L, vec):
    def fn(_m, _i, out):
        return (out[0] + vec, *out[1:]) if isinstance(out, tuple) else out + vec
    return lm.parts.layers[L].register_forward_hook(fn)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_steering_equals_a_hand_edited_model(arch):
    lm, L = _lm(arch), 1
    d = torch.randn(lm.parts.d_model)
    prompt = "The cat sat on the"
    res = steer(lm, prompt, L, d, alpha=0.8, tokens=6)
    vec = 0.8 * stream_norm(lm, L) * d / d.norm()
    ids = tokenize(lm.tokenizer, prompt)
    h = _hand_steer(lm, L, vec)
    try:  # greedy by hand: the whole sequence again each step, no cache
        with torch.inference_mode():
            first = lm.model(torch.tensor([ids])).logits[0, -1].softmax(-1)
            seq = list(ids)
            for _ in range(6):
                seq.append(int(lm.model(torch.tensor([seq])).logits[0, -1].argmax()))
    finally:
        h.remove()
    out = seq[len(ids):]
    assert res.greedy[1] == lm.tokenizer.decode(out)
    tok, _, p_st = res.gained[0]
    assert p_st == pytest.approx(float(first[_id_of(lm, tok)]), abs=1e-5)
    zero = steer(lm, prompt, L, d, alpha=0.0, tokens=6)
    assert zero.greedy[0] == zero.greedy[1] and zero.sampled[0] == zero.sampled[1] and zero.kl == pytest.approx(0)
    assert zero.diverge == -1


def _id_of(lm, tok):
    """The id behind a gained token's display text (the tiny vocabulary's texts are unique)."""
    from core.model.tokens import token_texts

    texts = token_texts(lm.tokenizer, list(range(len(lm.tokenizer))))
    return texts.index(tok)


def test_stream_norm_is_the_median_over_demo_tokens():
    from core.data.corpus import Corpus

    lm = _lm("llama")
    ids = []
    for text in Corpus("demo").documents():
        ids += tokenize(lm.tokenizer, text)[:128]
        if len(ids) >= NORM_TOKENS:
            break
    x = torch.tensor(ids[:NORM_TOKENS]).reshape(-1, 128)
    with torch.inference_mode():
        hs = lm.model(x, output_hidden_states=True).hidden_states[2]  # block 1's output
    keep = x != lm.tokenizer.bos_token_id
    assert stream_norm(lm, 1) == pytest.approx(float(hs.norm(dim=-1)[keep].median()), rel=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_directional_ablation_equals_weight_orthogonalisation(arch):
    if arch == "qwen2":
        from transformers import AutoModelForCausalLM, Qwen2Config

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(Qwen2Config(
            hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=300, max_position_embeddings=256, tie_word_embeddings=True)).eval().requires_grad_(False)
        lm = LoadedModel(name=arch, source="config", model=model, tokenizer=tiny_tokenizer(),
                         parts=find_parts(model))
    else:
        lm = _lm(arch)
    r = torch.randn(lm.parts.d_model)
    ids = torch.tensor([tokenize(lm.tokenizer, "The cat sat on the mat and the dog")])
    got = {}
    with torch.inference_mode():
        edits = ablation_edits(lm, r) | {f"resid_post.{L}": store(got, L) for L in range(lm.n_layers - 1)}
        by_acts = logits(lm, ids, edits=edits)
        ortho = orthogonalized(lm, r)
        by_weights = ortho.model(ids).logits
        plain = lm.model(ids).logits
    torch.testing.assert_close(by_acts, by_weights, atol=1e-4, rtol=0)
    assert (by_acts - plain).abs().max() > 1e-3  # it did something
    u = r / r.norm()
    for h in got.values():  # the stream holds nothing along r̂ anywhere
        assert float((h @ u).abs().max()) < 1e-4 * float(h.norm(dim=-1).max())
    with torch.inference_mode():  # the original model is untouched
        torch.testing.assert_close(lm.model(ids).logits, plain)


def test_gemma_weight_form_refused_activation_form_works():
    lm = _lm("gemma3")
    r = torch.randn(lm.parts.d_model)
    with pytest.raises(AblateError, match="activation form"):
        orthogonalized(lm, r)
    got = {}
    ids = torch.tensor([tokenize(lm.tokenizer, "The cat sat on the mat")])
    with torch.inference_mode():
        logits(lm, ids, edits=ablation_edits(lm, r) | {"resid_post.1": store(got, 1)})
    assert float((got[1] @ (r / r.norm())).abs().max()) < 1e-4 * float(got[1].norm(dim=-1).max())


def test_bad_input_one_line(prompt_csv, tmp_path):
    lm = _lm("llama")
    d = torch.randn(64)
    for kw, match in (({"layer": 9}, "out of range"), ({"alpha": float("nan")}, "finite"),
                      ({"direction": torch.randn(7)}, "7 wide"), ({"prompt": "  "}, "empty")):
        args = {"prompt": "The cat", "layer": 1, "direction": d, "alpha": 1.0} | kw
        with pytest.raises(SteerError, match=match):
            steer(lm, **args)
    single = tmp_path / "one.csv"
    single.write_text("text,label\nThe cat.,yes\nThe dog.,yes\n", encoding="utf-8")
    (tmp_path / "v.pt").write_bytes(b"\x80\x04")
    for spec, layer, match in ((f"diffmeans:{single}", 1, "2 distinct labels"), ("diffmeans:nope.csv", 1, "nope"),
                               (f"diffmeans:{prompt_csv}", 5, "out of range"), ("neuron:1:999", None, "out of range"),
                               (f"file:{tmp_path / 'v.pt'}", 1, "never unpickled"), ("what:x", 1, "unknown")):
        with pytest.raises(DirectionError, match=match):
            from_spec(lm, spec, layer)
    with pytest.raises(AblateError, match="7 wide"):
        ablation_edits(lm, torch.randn(7))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_ablated_continuation_equals_the_orthogonalised_model(arch):
    """`ablate` (row 1 of a batch edited through the intervention layer) continues exactly as the weight-edited copy
    does, greedily, and its next-token distribution is that copy's."""
    from core.interventions.steer import ablate

    lm = _lm(arch)
    r = torch.randn(lm.parts.d_model)
    res = ablate(lm, "The cat sat on the", r, tokens=6)
    ortho = orthogonalized(lm, r)
    ids = tokenize(lm.tokenizer, "The cat sat on the")
    seq = list(ids)
    with torch.inference_mode():
        first = ortho.model(torch.tensor([seq])).logits[0, -1].softmax(-1)
        for _ in range(6):
            seq.append(int(ortho.model(torch.tensor([seq])).logits[0, -1].argmax()))
    assert res.greedy[1] == lm.tokenizer.decode(seq[len(ids):])
    tok, _, p_abl = res.gained[0]
    assert p_abl == pytest.approx(float(first[_id_of(lm, tok)]), abs=1e-5)


@pytest.mark.parametrize("site, arch", [("neurons.1", "llama"), ("resid_pre.2", "llama"), ("z.1", "gpt2")])
def test_feature_and_neuron_directions_land_where_they_write(tmp_path, site, arch):
    """A feature's direction is its decoder row as it lands in the stream, computed here from the HF modules' own
    weights (down_proj / c_proj / o_proj), and steering with it equals adding it after the block it writes to."""
    from core.saes.formats import save_saelens
    from core.saes.sae import SAE

    lm = _lm(arch)
    kind, L = site.split(".")[0], int(site.split(".")[1])
    m = lm.model.model if arch == "llama" else lm.model.transformer
    block = m.layers[L] if arch == "llama" else m.h[L]
    d_in = {"neurons": lm.parts.d_mlp, "resid_pre": lm.parts.d_model, "z": lm.parts.d_model}[kind]
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(8, d_in, generator=g)
    sae = SAE(W_enc=W_dec.T.clone(), b_enc=torch.zeros(8), W_dec=W_dec, b_dec=torch.zeros(d_in), site=site)
    save_saelens(sae, tmp_path / "sae")
    d = from_spec(lm, f"feature:{tmp_path / 'sae'}:3")
    if kind == "neurons":  # Llama's down_proj: Linear(d_mlp → d_model), weight (d_model, d_mlp)
        want, layer = block.mlp.down_proj.weight @ W_dec[3], L
    elif kind == "z":  # GPT-2's attn.c_proj: Conv1D, weight (d_in, d_out)
        want, layer = W_dec[3] @ block.attn.c_proj.weight, L
    else:  # resid_pre.L is block L-1's output
        want, layer = W_dec[3], L - 1
    assert d.layer == layer and d.made["feature"] == 3
    np.testing.assert_allclose(d.vector.numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    if arch == "llama":
        nd = from_spec(lm, "neuron:1:5")
        np.testing.assert_allclose(nd.vector.numpy(), m.layers[1].mlp.down_proj.weight[:, 5].detach().numpy(),
                                   rtol=1e-6)
    res = steer(lm, "The cat sat on the", d.layer, d.vector, alpha=0.5, tokens=4)
    h = _hand_steer(lm, d.layer, 0.5 * stream_norm(lm, d.layer) * want / want.norm())
    try:
        ids = tokenize(lm.tokenizer, "The cat sat on the")
        seq = list(ids)
        with torch.inference_mode():
            for _ in range(4):
                seq.append(int(lm.model(torch.tensor([seq])).logits[0, -1].argmax()))
    finally:
        h.remove()
    assert res.greedy[1] == lm.tokenizer.decode(seq[len(ids):])
