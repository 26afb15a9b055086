"""Residual-stream geometry along depth for one prompt: norms, massive activations, how much each block moves the
stream.

Streams: h_{-1} is the stream entering block 0 (the embeddings, scaled as the model scales them) and h_l the output
of block l (l = 0..L-1), as `core.lens.logit.stream` captures them. Per block l and position t:
  norm[l, t]       = ||h_l[t]||_2                                 (row 0 of `norms` is h_{-1}, row l+1 is h_l)
  cos_prev[l, t]   = <h_l[t], h_{l-1}[t]> / (||h_l[t]|| ||h_{l-1}[t]||)
  rel_update[l, t] = ||h_l[t] - h_{l-1}[t]|| / ||h_{l-1}[t]||
A block is "quiet" (it barely moves the stream; cf. "Void in Language Models") when the median of its relative
update over the positions (the first position excluded when there are others: attention sinks make it an outlier)
is below `quiet_below`.
Massive activations (Sun et al. 2024): the largest |h_l[t, i]| over all blocks, positions and dimensions, each with
its ratio to the median |h_l| of its block; one is flagged `massive` when |value| > 100 and the ratio > 1000, the
paper's criterion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.lens.logit import Stream

MASSIVE_ABS = 100.0
MASSIVE_RATIO = 1000.0


@dataclass
class ResidualGeometry:
    norms: np.ndarray  # (L+1, T) row 0: the embedding stream, row l+1: block l's output
    cos_prev: np.ndarray  # (L, T) cosine between block l's output and its input
    rel_update: np.ndarray  # (L, T) ||h_l - h_{l-1}|| / ||h_{l-1}||
    median_update: np.ndarray  # (L,) the median of rel_update over positions (first excluded when T > 1; NaN-aware)
    quiet: list[int]
    """Blocks whose median relative update is below the threshold."""
    massive: list[dict]
    """Largest-magnitude entries, largest first: layer, dim, position, value, ratio, massive."""

    def __post_init__(self) -> None:
        L, T = self.cos_prev.shape
        assert self.norms.shape == (L + 1, T) and self.rel_update.shape == (L, T) and self.median_update.shape == (L,)


def residual_geometry(s: Stream, *, top_n: int = 12, quiet_below: float = 0.1) -> ResidualGeometry:
    hs = torch.cat([s.embed[None], s.h]).double()  # (L+1, T, d)
    norms = torch.linalg.vector_norm(hs, dim=-1)  # (L+1, T)
    prev, cur = hs[:-1], hs[1:]  # (L, T, d) each
    cos = ((prev * cur).sum(-1) / (norms[:-1] * norms[1:])).numpy()  # (L, T); a zero stream gives NaN or inf
    rel = (torch.linalg.vector_norm(cur - prev, dim=-1) / norms[:-1]).numpy()  # (L, T)
    rel[~np.isfinite(rel)] = np.nan
    cos[~np.isfinite(cos)] = np.nan
    med = np.nanmedian(rel[:, 1:] if rel.shape[1] > 1 else rel, axis=1)  # (L,)
    quiet = [int(i) for i in np.flatnonzero(med < quiet_below)]
    return ResidualGeometry(norms=norms.numpy(), cos_prev=cos, rel_update=rel, median_update=med, quiet=quiet,
                            massive=massive_activations(s.h, top_n))


def massive_activations(h: torch.Tensor, top_n: int = 12) -> list[dict]:
    """The `top_n` largest |h[l, t, i]| of block outputs h (L, T, d), with each block's median |h| ratio."""
    L, T, d = h.shape
    a = h.abs().double()  # (L, T, d)
    med = np.median(a.reshape(L, -1).numpy(), axis=1)  # (L,)
    vals, idx = torch.topk(a.reshape(-1), min(top_n, a.numel()))
    out = []
    for v, i in zip(vals.tolist(), idx.tolist(), strict=True):
        layer, rest = divmod(i, T * d)
        pos, dim = divmod(rest, d)
        ratio = v / max(float(med[layer]), 1e-30)
        out.append({"layer": layer, "dim": dim, "position": pos, "value": float(h[layer, pos, dim]),
                    "ratio": ratio, "massive": bool(v > MASSIVE_ABS and ratio > MASSIVE_RATIO)})
    return out
