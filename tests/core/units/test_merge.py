"""Merging reducer states (LayerReducer.merge, what a sharded or distributed extraction needs): over random
shardings of a token stream into contiguous shards, merged in a random order, every piece of state equals one
reducer's over the whole stream — counts, histograms (across bin-width growth), max/min, the top-K with its tie
order and contexts, the interval reservoirs and so the interval samples — and the mean to float64 rounding."""

import random

import numpy as np
import pytest
import torch

from core.units.reduce import LayerReducer, ReduceConfig


def stream(seed: int, n: int = 2400, d: int = 9):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    a = torch.where(torch.rand(n, d, generator=g) < 0.6, torch.zeros(()), a)  # sparse, like ReLU features
    a[:, 0] = 0.0  # a unit that never fires
    a[: n // 2, 1] = 0.0  # one that fires only late (takes its bin width when it starts)
    a[:, 2] = (a[:, 2] * 2).round() / 2  # many exact ties
    a *= torch.logspace(-3, 3, d)  # widths from 2^-10 to 2^10: bins merge as maxima grow
    a[n // 3, 4] = 5e4  # a late spike: a large width change
    return a


def run(acts: torch.Tensor, spans: list[tuple[int, int]], cfg: ReduceConfig) -> LayerReducer:
    """One reducer over the batches `spans` ([a, b) token ranges), with contexts from each batch."""
    r = LayerReducer(acts.shape[1], 3, cfg)
    W = cfg.ctx_window
    for a, b in spans:
        x = acts[a:b]
        i = torch.arange(b - a)[:, None] + torch.arange(-W, W + 1)[None, :]
        idx = torch.where((i >= 0) & (i < b - a), i, torch.full_like(i, -1))
        r.update(x, torch.arange(a, b), (x, idx))
    return r


@pytest.mark.parametrize("seed", range(6))
def test_merge_over_random_shardings_equals_one_pass(seed):
    rng = random.Random(seed)
    cfg = ReduceConfig(top_k=6, samples=3, hist_bins=8, ctx_examples=3, ctx_window=2)
    acts = stream(seed)
    n = acts.shape[0]
    cuts = sorted(rng.sample(range(1, n), 40))
    batches = list(zip([0, *cuts], [*cuts, n], strict=True))
    whole = run(acts, batches, cfg)
    k = rng.randint(2, 6)  # shards: contiguous runs of batches (documents), merged in a random order
    bounds = sorted(rng.sample(range(1, len(batches)), k - 1))
    shards = [batches[a:b] for a, b in zip([0, *bounds], [*bounds, len(batches)], strict=True)]
    parts = [run(acts, sh, cfg) for sh in shards]
    rng.shuffle(parts)
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    want, got = whole.state_dict(), merged.state_dict()
    for key in want:
        if key == "sum":
            assert torch.allclose(got[key], want[key], rtol=1e-12, atol=0), key
        else:
            assert torch.equal(got[key].nan_to_num(-7.0), want[key].nan_to_num(-7.0)), key
    a, b = whole.finalize(), merged.finalize()
    assert np.array_equal(a.count, b.count) and np.array_equal(a.hist, b.hist)
    assert np.array_equal(a.top_tok, b.top_tok) and np.array_equal(np.nan_to_num(a.top_ctx), np.nan_to_num(b.top_ctx))
    assert repr(a.intervals) == repr(b.intervals)
    assert int(b.n_tokens) == n and b.count[0] == 0


def test_merge_refuses_other_units():
    cfg = ReduceConfig(top_k=2, samples=1, hist_bins=4)
    with pytest.raises(ValueError, match="different units"):
        LayerReducer(4, 0, cfg).merge(LayerReducer(5, 0, cfg))


@pytest.mark.parametrize("seed", range(3))
def test_merge_in_corpus_order_with_sum_logs_equals_one_pass_bit_for_bit(seed):
    """What a sharded extraction does (core.units.shards): each shard keeps its batch sums, and the shards are
    merged in corpus order into a fresh reducer; then the float64 sum, so the mean, is bit-equal too."""
    rng = random.Random(seed)
    cfg = ReduceConfig(top_k=6, samples=3, hist_bins=8, ctx_examples=3, ctx_window=2)
    acts = stream(seed + 10)
    n = acts.shape[0]
    batches = [(a, a + 60) for a in range(0, n, 60)]  # 40 batches
    bounds = sorted(rng.sample(range(2, len(batches) - 2), 2))
    shards = [batches[a:b] for a, b in zip([0, *bounds], [*bounds, len(batches)], strict=True)]
    # unit 3 sums to 1 in the first batch and to 2^-53 in each later one: one pass adds them to 1 one at a time and
    # stays at 1; a shard's total of them is large enough to move 1, so adding shard totals differs in the last bit
    acts[:, 3] = 0.0
    acts[0, 3] = 1.0
    acts[torch.arange(60, n, 60) + 7, 3] = 2.0**-53
    whole = run(acts, batches, cfg)
    merged, plain = LayerReducer(acts.shape[1], 3, cfg), LayerReducer(acts.shape[1], 3, cfg)
    for sh in shards:
        part = LayerReducer(acts.shape[1], 3, cfg)
        part.sum_log = []
        W = cfg.ctx_window
        for a, b in sh:
            x = acts[a:b]
            i = torch.arange(b - a)[:, None] + torch.arange(-W, W + 1)[None, :]
            part.update(x, torch.arange(a, b), (x, torch.where((i >= 0) & (i < b - a), i, torch.full_like(i, -1))))
        merged.merge(part)
        part.sum_log = None
        plain.merge(part)
    want, got = whole.state_dict(), merged.state_dict()
    for key in want:
        assert torch.equal(got[key].nan_to_num(-7.0), want[key].nan_to_num(-7.0)), key
    assert want["sum"][3] == 1.0 and plain.sum[3] != 1.0, "shard totals added as totals must round differently"
