"""The compiled reducer kernels (core/units/fused.c) give exactly the torch path's reducer state: every tensor,
bit for bit, after every batch (histogram, top-K with tie order and contexts, reservoirs, scale growth)."""

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model

from core.units import fused
from core.units.reduce import LayerReducer, ReduceConfig

pytestmark = pytest.mark.skipif(fused.library() is None, reason="no C compiler: only the torch path exists here")


def batches(seed: int, d: int, sizes, W: int):
    """Activations with heavy tails, exact zeros, -0.0, ties and rising maxima (so the scale grows), each batch
    with its context rows as core.units.extract builds them (-1 outside a window)."""
    rng = np.random.default_rng(seed)
    tok0 = 0
    for k, n in enumerate(sizes):
        A = rng.standard_normal((n, d)).astype(np.float32) * (1 + k)  # maxima grow batch to batch
        A[rng.random((n, d)) < 0.2] = 0.0
        A[rng.random((n, d)) < 0.05] = -0.0
        A[:: max(1, n // 7)] = A[0]  # exact ties within a batch
        full = torch.from_numpy(A)
        rows = torch.arange(n)[:, None] + torch.arange(-W, W + 1)  # (n, 2W+1) one long window per batch
        rows = torch.where((rows >= 0) & (rows < n), rows, -1)
        yield full, torch.arange(tok0, tok0 + n), (full, rows)
        tok0 += n + 3


@pytest.mark.parametrize("seed", [0, 1])
def test_fused_equals_torch_path(seed, monkeypatch):
    cfg = ReduceConfig(top_k=8, samples=3, hist_bins=16, reservoir=4, ctx_examples=5, ctx_window=2)
    d = 37
    sizes = [300, 5, 400, 1, 257, 600, 80, 900]  # early ones overflow the kernels' capacity: torch fallback
    fast, slow = LayerReducer(d, 2, cfg), LayerReducer(d, 2, cfg)
    for acts, tok, ctx in batches(seed, d, sizes, cfg.ctx_window):
        fast.update(acts, tok, ctx)
        monkeypatch.setattr(fused, "library", lambda: None)
        slow.update(acts, tok, ctx)
        monkeypatch.undo()
        a, b = fast.state_dict(), slow.state_dict()
        for k in a:
            assert torch.equal(a[k].nan_to_num(-7.0), b[k].nan_to_num(-7.0)), k
    ra, rb = fast.finalize(), slow.finalize()
    np.testing.assert_array_equal(ra.top_tok, rb.top_tok)
    np.testing.assert_array_equal(ra.intervals.tok, rb.intervals.tok)


def test_both_paths_ran(monkeypatch):
    """The test above must exercise the kernels (and not only their fallback)."""
    calls = {"top": 0, "res": 0}
    top, res = fused.merge_top, fused.merge_res
    monkeypatch.setattr(fused, "merge_top", lambda *a: (calls.__setitem__("top", calls["top"] + 1), top(*a)))
    monkeypatch.setattr(fused, "merge_res", lambda *a: (calls.__setitem__("res", calls["res"] + 1), res(*a)))
    red = LayerReducer(37, 0, ReduceConfig(top_k=8, samples=3, hist_bins=16, reservoir=4))
    for acts, tok, ctx in batches(3, 37, [300, 900, 900, 900], 16):
        red.update(acts, tok, ctx)
    assert calls["top"] > 0 and calls["res"] > 0


def test_nan_is_a_clear_error(monkeypatch):
    acts = torch.ones(3, 4)
    acts[1, 2] = float("nan")
    for path in ("fused", "torch"):
        if path == "torch":
            monkeypatch.setattr(fused, "library", lambda: None)
        red = LayerReducer(4, 0, ReduceConfig(top_k=2, samples=1, hist_bins=8))
        with pytest.raises(ValueError, match="NaN"):
            red.update(acts, torch.arange(3))


def test_real_model_layer_equal(monkeypatch):
    """Both paths over a tiny model's neurons on the same tokens."""
    from core.model.intervene import store
    from core.model.load import LoadedModel
    from core.model.parts import find_parts
    from core.model.run import forward_until

    model = tiny_model("llama")
    lm = LoadedModel("t", "c", model, None, find_parts(model))
    got = {}
    ids = torch.randint(0, 300, (8, 64))
    with torch.inference_mode():
        forward_until(lm, ids, 1, edits={"neurons.1": store(got, 0)})
    a = got[0].reshape(-1, got[0].shape[-1]).contiguous()
    fast, slow = (LayerReducer(a.shape[1], 1, ReduceConfig(top_k=16, samples=2, hist_bins=32)) for _ in range(2))
    for s in range(0, a.shape[0], 128):
        fast.update(a[s:s + 128], torch.arange(s, s + 128))
        monkeypatch.setattr(fused, "library", lambda: None)
        slow.update(a[s:s + 128], torch.arange(s, s + 128))
        monkeypatch.undo()
    for k, v in fast.state_dict().items():
        assert torch.equal(v.nan_to_num(-7.0), slow.state_dict()[k].nan_to_num(-7.0)), k
