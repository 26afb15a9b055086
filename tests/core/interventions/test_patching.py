"""Activation patching and back-patching against independent routes: the model's own hidden states and plain torch
hooks written here (none of core.model.intervene), on three tiny architectures."""

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.interventions.patching import PatchError, backpatch, direction_patch, patch_grid
from core.model.intervene import patch
from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.model.run import logits

ARCHS = ["llama", "gemma3", "gpt2"]
CLEAN, CORRUPT, ANSWER, FOIL = "The cat sat on the mat and", "The cat sat in the mat and", " the", " a"


def _lm(arch: str) -> LoadedModel:
    model = tiny_model(arch)
    return LoadedModel(name=arch, source="config", model=model, tokenizer=tiny_tokenizer(), parts=find_parts(model))


def _ids(lm, text):
    return torch.tensor([lm.tokenizer(text)["input_ids"]])


def _diff(lm, ids, hooks=()):
    """Logit(answer) − logit(foil) at the last position, with plain torch hooks (module, kind, fn) in place."""
    a, f = (lm.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (ANSWER, FOIL))
    handles = []
    try:
        for module, kind, fn in hooks:
            handles.append(module.register_forward_pre_hook(fn, with_kwargs=True) if kind == "pre"
                           else module.register_forward_hook(fn))
        with torch.inference_mode():
            out = lm.model(ids).logits[0, -1]
    finally:
        for h in handles:
            h.remove()
    return float(out[a] - out[f])


def _pre_replace(p, value):
    """Pre-hook on a block: its input stream at position p replaced."""
    def fn(_m, args, kwargs):
        if args:
            x = args[0].clone()
            x[:, p] = value
            return (x, *args[1:]), kwargs
        x = kwargs["hidden_states"].clone()
        x[:, p] = value
        return args, {**kwargs, "hidden_states": x}
    return fn


def _out_replace(p, value):
    def fn(_m, _inp, out):
        first = out[0] if isinstance(out, tuple) else out
        y = first.clone()
        y[:, p] = value
        return (y, *out[1:]) if isinstance(out, tuple) else y
    return fn


def _captured_output(lm, ids, module):
    got = {}

    def keep(_m, _i, o) -> None:
        got["o"] = o[0] if isinstance(o, tuple) else o
    h = module.register_forward_hook(keep)
    try:
        with torch.inference_mode():
            lm.model(ids)
    finally:
        h.remove()
    return got["o"]


@pytest.mark.parametrize("arch", ARCHS)
def test_cells_equal_hand_edited_passes(arch):
    lm = _lm(arch)
    res = patch_grid(lm, CLEAN, CORRUPT, ANSWER, FOIL)
    c_ids, x_ids = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    m_c, m_x = _diff(lm, c_ids), _diff(lm, x_ids)
    assert res.clean_diff == pytest.approx(m_c, abs=1e-4) and res.corrupted_diff == pytest.approx(m_x, abs=1e-4)
    with torch.inference_mode():
        hs = lm.model(c_ids, output_hidden_states=True).hidden_states  # hs[L] is block L's input for L < n
    norm = lambda m: (m - m_x) / (m_c - m_x)  # noqa: E731
    rng = np.random.default_rng(0)
    T, n = c_ids.shape[1], lm.n_layers
    for L, p in [(0, T - 1), (n - 1, 2)] + [(int(rng.integers(n)), int(rng.integers(T))) for _ in range(2)]:
        block = lm.parts.layers[L]
        want = norm(_diff(lm, x_ids, [(block, "pre", _pre_replace(p, hs[L][0, p]))]))
        assert res.resid[L, p] == pytest.approx(want, abs=1e-4)
        for grid, module in ((res.attn, lm.parts.attn[L]), (res.mlp, lm.parts.mlp[L])):
            if lm.parts.norms(L).post_attn is not None:  # gemma: the site is the post-sublayer norm's output
                module = lm.parts.norms(L).post_attn if grid is res.attn else lm.parts.norms(L).post_mlp
            clean = _captured_output(lm, c_ids, module)[0, p]
            assert grid[L, p] == pytest.approx(norm(_diff(lm, x_ids, [(module, "out", _out_replace(p, clean))])),
                                               abs=1e-4)
    # a head: its slice of the output projection's input, every position
    o = lm.parts.o_proj(1)
    dh = lm.parts.heads[2]
    got = {}
    h = o.register_forward_pre_hook(lambda _m, a: got.update(z=a[0].clone()))
    with torch.inference_mode():
        lm.model(c_ids)
    h.remove()

    def head_patch(_m, args, kwargs, k=2):
        z = args[0].clone()
        z[..., k * dh:(k + 1) * dh] = got["z"][..., k * dh:(k + 1) * dh]
        return (z, *args[1:]), kwargs
    assert res.heads[1, 2] == pytest.approx(norm(_diff(lm, x_ids, [(o, "pre", head_patch)])), abs=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_whole_stream_restores_and_nothing_is_zero(arch):
    lm = _lm(arch)
    c_ids, x_ids = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    got = {}
    from core.model.intervene import store

    with torch.inference_mode():
        clean = logits(lm, c_ids, edits={f"resid_pre.{lm.n_layers - 1}": store(got, "c")})
        restored = logits(lm, x_ids, edits={f"resid_pre.{lm.n_layers - 1}": patch(got["c"])})
        plain = logits(lm, x_ids)
    torch.testing.assert_close(restored, clean, atol=1e-5, rtol=0)  # every position: normalised 1 exactly
    with torch.inference_mode():
        torch.testing.assert_close(plain, lm.model(x_ids).logits, atol=1e-5, rtol=0)  # nothing patched: 0
    # before the first position where the prompts differ, both runs are identical (causal attention): patching
    # there does nothing, in every grid and layer
    res = patch_grid(lm, CLEAN, CORRUPT, ANSWER, FOIL)
    first = int(np.nonzero((c_ids != x_ids)[0].numpy())[0][0])
    for grid in (res.resid, res.attn, res.mlp):
        np.testing.assert_allclose(grid[:, :first], 0, atol=1e-4)


def test_direction_patch_and_controls():
    lm = _lm("llama")
    c_ids, x_ids = _ids(lm, CLEAN), _ids(lm, CORRUPT)
    from core.model.intervene import store

    got = {}
    with torch.inference_mode():
        logits(lm, c_ids, edits={"resid_pre.1": store(got, "c")})
        logits(lm, x_ids, edits={"resid_pre.1": store(got, "x")})
    d = (got["c"] - got["x"])[0].sum(0)  # the difference itself: patching along it moves a lot
    r = direction_patch(lm, CLEAN, CORRUPT, ANSWER, FOIL, "resid_pre.1", d, controls=4)
    # by hand: x + ((c - x)·d̂) d̂ at every position of block 1's input
    u = d / d.norm()
    value = got["x"][0] + ((got["c"][0] - got["x"][0]) @ u)[:, None] * u
    m_c, m_x = _diff(lm, c_ids), _diff(lm, x_ids)

    def all_positions(_m, args, kwargs):
        if args:
            return (value[None].expand_as(args[0]).clone(), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": value[None].clone()}
    want = (_diff(lm, x_ids, [(lm.parts.layers[1], "pre", all_positions)]) - m_x) / (m_c - m_x)
    assert r["effect"] == pytest.approx(want, abs=1e-4) and len(r["controls"]) == 4
    with pytest.raises(PatchError, match="wide"):
        direction_patch(lm, CLEAN, CORRUPT, ANSWER, FOIL, "resid_pre.1", torch.ones(7))


@pytest.mark.parametrize("arch", ARCHS)
def test_backpatch_into_itself_changes_nothing(arch):
    lm = _lm(arch)
    bp = backpatch(lm, CLEAN, ANSWER)
    n = lm.n_layers
    np.testing.assert_allclose(np.diag(bp.prob), bp.base_prob, rtol=1e-4)
    assert (np.diag(bp.rank) == bp.base_rank).all()
    # one off-diagonal cell by hand: block 2's last-position output written over block 0's
    with torch.inference_mode():
        ids = _ids(lm, CLEAN)
        src = _captured_output(lm, ids, lm.parts.layers[2])[0, -1]
        h = lm.parts.layers[0].register_forward_hook(_out_replace(-1, src))
        try:
            out = lm.model(ids).logits[0, -1]
        finally:
            h.remove()
    a = lm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"][0]
    assert bp.prob[2, 0] == pytest.approx(float(out.softmax(-1)[a]), rel=1e-4)
    assert bp.rank[2, 0] == int((out > out[a]).sum()) and bp.prob.shape == (n, n)


@pytest.mark.parametrize("clean, corrupt, answer, match", [
    (CLEAN, "The cat", ANSWER, "tokens and the corrupted one"),
    (CLEAN, CORRUPT, " Paris", "must be exactly one"),
    ("", CORRUPT, ANSWER, "must not be empty"),
    (CLEAN, CLEAN, ANSWER, "nothing to restore")])
def test_bad_input_one_line(clean, corrupt, answer, match):
    with pytest.raises(PatchError, match=match):
        patch_grid(_lm("llama"), clean, corrupt, answer, FOIL)
