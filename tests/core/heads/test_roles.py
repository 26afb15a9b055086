"""Head role scores and head ablation, each number against an independent route: hand-written loops over constructed
attention patterns, HF's own `output_attentions`, brute-force NumPy eigenvalues of the full d_model x d_model OV
matrix, and hand-edited copies of the model scored by HF's own `labels=` loss (tiny models; real smollm2 in the slow
test)."""

import math
import time

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.data.corpus import demo_documents
from core.heads.roles import (
    ALL_ROLES,
    LOCAL_WINDOW,
    SINK_THRESHOLD,
    HeadScores,
    head_scores,
    ov_copying,
    pattern_scores,
    probe_ids,
    text_probe_ids,
)
from core.model.load import LoadedModel
from core.model.parts import find_parts

ARCHS = ["llama", "gemma3", "gpt2"]


def wrap(model):
    return LoadedModel(name="tiny", source="config", model=model, tokenizer=tiny_tokenizer(),
                       parts=find_parts(model))


# ----------------------------------------------------------------------------- patterns: hand loops
def loop_scores(A: np.ndarray, n: int | None) -> dict[str, np.ndarray]:
    """The module docstring's formulas, one query at a time."""
    B, H, T, _ = A.shape
    out = {r: np.zeros(H) for r in ("prev_token", "current_token", "local_window", "sink", "entropy")}
    if n is not None:
        out |= {"duplicate_token": np.zeros(H), "induction": np.zeros(H)}
    for h in range(H):
        acc = {r: [] for r in out}
        for b in range(B):
            a = A[b, h]
            for t in range(1, T):
                acc["prev_token"].append(a[t, t - 1])
                acc["current_token"].append(a[t, t])
                acc["local_window"].append(sum(a[t, s] for s in range(max(0, t - LOCAL_WINDOW), t + 1)))
                acc["sink"].append(a[t, 0])
                acc["entropy"].append(-sum(p * math.log(p) for p in a[t] if p > 0))
            if n is not None:
                for t in range(T - n, T):  # the second copy
                    acc["duplicate_token"].append(a[t, t - n])
                    acc["induction"].append(a[t, t - n + 1])
        for r in out:
            out[r][h] = np.mean(acc[r])
    return out


def causal_softmax(B, H, T, seed=0):
    z = np.random.default_rng(seed).normal(size=(B, H, T, T)) * 2
    z = np.where(np.tril(np.ones((T, T))) > 0, z, -np.inf)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def one_hot_rows(T, target) -> np.ndarray:
    """(T, T) pattern: query t attends only to key target(t)."""
    A = np.zeros((T, T))
    for t in range(T):
        A[t, target(t)] = 1
    return A


def check(got, want):
    assert set(got) == set(want)
    for r in want:
        np.testing.assert_allclose(got[r], want[r], atol=1e-12, err_msg=r)


@pytest.mark.parametrize("n", [2, 5])
def test_prev_token_pattern(n):
    T = 1 + 2 * n
    A = one_hot_rows(T, lambda t: max(t - 1, 0))[None, None]  # (1, 1, T, T)
    got = pattern_scores(A, n)
    check(got, loop_scores(A, n))
    assert got["prev_token"][0] == 1 and got["current_token"][0] == 0 and got["local_window"][0] == 1
    assert got["entropy"][0] == 0 and got["sink"][0] == pytest.approx(1 / (T - 1))
    assert got["duplicate_token"][0] == 0  # t-1 is never t-n for n > 1
    assert got["induction"][0] == (1 if n == 2 else 0)  # t-1 is t-n+1 exactly when n = 2


def test_uniform_causal_pattern():
    T = 12
    A = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]  # row t: 1/(t+1) on 0..t
    got = pattern_scores(np.broadcast_to(A, (2, 3, T, T)), None)
    check(got, loop_scores(np.broadcast_to(A, (2, 3, T, T)), None))
    ts = np.arange(1, T)
    np.testing.assert_allclose(got["entropy"], np.mean(np.log(ts + 1)))
    np.testing.assert_allclose(got["sink"], np.mean(1 / (ts + 1)))
    np.testing.assert_allclose(got["local_window"], np.mean(np.minimum(ts + 1, LOCAL_WINDOW + 1) / (ts + 1)))


def test_induction_and_duplicate_patterns():
    n = 6
    T = 1 + 2 * n
    ind = one_hot_rows(T, lambda t: t - n + 1 if t > n else 0)  # second copy: the token after the earlier one
    dup = one_hot_rows(T, lambda t: t - n if t > n else 0)
    A = np.stack([ind, dup])[None]  # (1, 2, T, T)
    got = pattern_scores(A, n)
    check(got, loop_scores(A, n))
    np.testing.assert_array_equal(got["induction"], [1, 0])
    np.testing.assert_array_equal(got["duplicate_token"], [0, 1])


def test_random_patterns_match_loops():
    A = causal_softmax(3, 4, 15)
    check(pattern_scores(torch.tensor(A), 7), loop_scores(A, 7))
    check(pattern_scores(A, None), loop_scores(A, None))


def test_probe_ids():
    ids = probe_ids(50, n_seqs=5, half_len=10, seed=3, bos_id=7, exclude=[0, 1, 7])
    assert ids.shape == (5, 21) and ids.dtype == torch.long
    assert (ids[:, 0] == 7).all() and torch.equal(ids[:, 1:11], ids[:, 11:])
    for row in ids[:, 1:11]:
        assert len(set(row.tolist())) == 10 and not {0, 1, 7} & set(row.tolist())
    assert torch.equal(ids, probe_ids(50, 5, 10, 3, 7, exclude=[0, 1, 7]))
    assert not torch.equal(ids, probe_ids(50, 5, 10, 4, 7, exclude=[0, 1, 7]))


def test_text_probe_is_bos_plus_demo_tokens():
    lm = wrap(tiny_model("llama"))
    ids = text_probe_ids(lm, n_tokens=50, chunk=16, bos=0)
    first = lm.tokenizer(next(demo_documents()), add_special_tokens=False)["input_ids"]
    assert ids.shape == (4, 17) and (ids[:, 0] == 0).all()
    assert ids[0, 1:].tolist() == first[:16] and ids[1, 1:].tolist() == first[16:32]


def test_head_scores_rows_top():
    s = {r: np.arange(6.0).reshape(2, 3) for r in ALL_ROLES}
    hs = HeadScores(model="m", n_layers=2, n_heads=3, n_kv_heads=1, scores=s, n_seqs=1, half_len=2, seed=0,
                    text_windows=0)
    assert hs.rows()[4] == {"layer": 1, "head": 1, **{r: 4.0 for r in ALL_ROLES}}
    assert hs.top("sink", 2) == [(1, 2, 5.0), (1, 1, 4.0)]
    assert hs.above("sink", 3.5) == [(1, 2, 5.0), (1, 1, 4.0)]


# ----------------------------------------------------------------------------- head_scores vs HF's attentions
@pytest.mark.parametrize("arch", ARCHS)
def test_head_scores_equal_hf_attentions(arch):
    lm = wrap(tiny_model(arch))
    lm.model.set_attn_implementation("sdpa")
    hs = head_scores(lm, n_seqs=4, half_len=8, seed=1, text_tokens=40, batch_size=3)  # batches of 3 + 1
    assert lm.model.config._attn_implementation == "sdpa"  # restored
    specials = lm.tokenizer.all_special_ids
    rep = probe_ids(300, 4, 8, 1, lm.tokenizer.bos_token_id, exclude=specials)
    text = text_probe_ids(lm, 40, 16, lm.tokenizer.bos_token_id)
    assert hs.text_windows == len(text) == 3
    lm.model.set_attn_implementation("eager")
    with torch.inference_mode():
        att_rep = lm.model(rep, output_attentions=True).attentions  # L x (B, H, T, T)
        att_text = lm.model(text, output_attentions=True).attentions
    for layer in range(lm.n_layers):
        want = pattern_scores(att_text[layer], None) | {
            r: v for r, v in pattern_scores(att_rep[layer], 8).items() if r in ("duplicate_token", "induction")}
        for r, v in want.items():
            np.testing.assert_allclose(hs.scores[r][layer], v, atol=1e-6, err_msg=f"{r} layer {layer}")
    np.testing.assert_allclose(hs.scores["ov_copying"], ov_copying(lm))


# ----------------------------------------------------------------------------- OV copying vs brute force
def full_ov(arch, model) -> list[list[np.ndarray]]:
    """Per layer, per query head: the full (d_model, d_model) W_V^h W_O^h, read straight from the HF modules."""
    cfg = model.config
    H = cfg.num_attention_heads
    H_kv = getattr(cfg, "num_key_value_heads", None) or H
    out = []
    for layer in range(cfg.num_hidden_layers):
        if arch == "gpt2":
            att = model.transformer.h[layer].attn
            d = cfg.n_embd
            wv, wo = att.c_attn.weight.numpy()[:, 2 * d:], att.c_proj.weight.numpy()  # (d, d), (d, d)
        else:
            att = model.model.layers[layer].self_attn
            wv, wo = att.v_proj.weight.numpy().T, att.o_proj.weight.numpy().T  # (d, H_kv*dh), (H*dh, d)
        dh = wo.shape[0] // H
        wv_heads = np.repeat(np.split(wv, H_kv, axis=1), H // H_kv, axis=0)  # (H, d, dh) as HF's repeat_kv
        out.append([wv_heads[h].astype(np.float64) @ wo[h * dh:(h + 1) * dh].astype(np.float64)
                    for h in range(H)])
    return out


def brute_score(M):
    lam = np.linalg.eigvals(M)
    return lam.sum().real / np.abs(lam).sum()


@pytest.mark.parametrize("arch", ARCHS)
def test_ov_copying_equals_full_eigenvalues(arch):
    model = tiny_model(arch)
    got = ov_copying(wrap(model))
    want = np.array([[brute_score(M) for M in layer] for layer in full_ov(arch, model)])
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_ov_copying_of_a_projection_and_its_negative():
    model = tiny_model("llama")
    att = model.model.layers[1].self_attn
    dh = 16
    with torch.no_grad():  # head 0 and head 1 share KV head 0 (GQA 4/2); W_O^h = +-pinv(W_V^kv): OV = +-projection
        wv = att.v_proj.weight[:dh].T  # (d, dh)
        att.o_proj.weight[:, :dh] = torch.linalg.pinv(wv).T
        att.o_proj.weight[:, dh:2 * dh] = -torch.linalg.pinv(wv).T
    got = ov_copying(wrap(model))
    np.testing.assert_allclose(got[1, :2], [1, -1], atol=1e-6)


# ----------------------------------------------------------------------------- real model
@pytest.mark.slow
def test_smollm2_has_induction_and_previous_token_heads():
    from core.model.load import load_model

    lm = load_model("smollm2-135m", attn="eager")
    t0 = time.perf_counter()
    hs = head_scores(lm)
    secs = time.perf_counter() - t0
    for role in ("induction", "prev_token", "duplicate_token", "sink"):
        print(role, [(layer, head, round(s, 3)) for layer, head, s in hs.top(role, 3)])
    print(f"sinks above {SINK_THRESHOLD}: {len(hs.above('sink', SINK_THRESHOLD))} of {hs.n_layers * hs.n_heads}; "
          f"head_scores {secs:.1f} s")
    assert hs.top("induction", 1)[0][2] > 0.5
    assert hs.top("prev_token", 1)[0][2] > 0.5
