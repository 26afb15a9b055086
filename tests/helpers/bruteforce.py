"""Brute-force NumPy reference for per-unit statistics: the full activation matrix, no streaming."""

import numpy as np


def np_fmix32(x):
    x = x.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return x


def brute_force(A, tok, layer, K, S, F):
    """A: (n, d) float32 all activations; tok: (n,) global token indices. Returns dicts of exact answers."""
    n, d = A.shape
    out = {"count": (A > 0).sum(0), "max": A.max(0), "min": A.min(0), "mean": A.astype(np.float64).mean(0)}
    absmax = np.abs(A).max(0)
    e = np.frexp(absmax)[1].astype(np.int64)  # smallest e with 2^e > absmax (0 for a unit that is always 0)
    hist = np.zeros((d, 2 * F), np.int64)
    for u in range(d):
        w = 2.0 ** e[u] / F
        edges = -(2.0 ** e[u]) + w * np.arange(2 * F + 1)
        j = np.searchsorted(edges, A[:, u].astype(np.float64), side="left") - 1  # edges[j] < a <= edges[j+1]
        hist[u] = np.bincount(j, minlength=2 * F)
    out["hist"], out["exp"] = hist, e
    order = np.lexsort((tok[:, None].repeat(d, 1), -A), axis=0)[:K]  # value desc, then token asc
    out["top_tok"] = tok[order].T
    out["top_val"] = np.take_along_axis(A, order, 0).T
    uh = np_fmix32(np.arange(d, dtype=np.uint64) + np.uint64((layer + 1) * 0x9E3779B1))
    th = np_fmix32(tok.astype(np.uint64))
    prio = (th[:, None] ^ uh[None, :]).astype(np.uint32).view(np.int32).astype(np.int64)  # (n, d)
    samples = {}
    for u in range(d):
        m = A[:, u].max()
        act = np.nonzero(A[:, u] > 0)[0]
        if m <= 0:
            continue
        iv = np.minimum(np.floor(10.0 * A[act, u].astype(np.float64) / np.float64(m)), 9).astype(int)
        for i in range(10):
            rows = act[iv == i]
            pick = rows[np.argsort(prio[rows, u])][:S]
            samples[(u, i)] = sorted(tok[pick].tolist())
    out["samples"] = samples
    return out
