"""Interval samples from per-bin reservoirs, with a per-interval exactness certificate.

See core/units/reduce.py for the definitions. Inputs are one layer's final reducer state as NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INF = np.int64(2**40)
N_INTERVALS = 10


@dataclass
class IntervalSamples:
    unit: np.ndarray  # (m,) int64
    interval: np.ndarray  # (m,) int64 in [0, 10)
    rank: np.ndarray  # (m,) 0-based rank by priority within (unit, interval)
    tok: np.ndarray  # (m,) int64 global token index
    val: np.ndarray  # (m,) float32 activation
    lo: np.ndarray  # (d, 10) float64 interval lower edge i*max/10
    hi: np.ndarray  # (d, 10) upper edge
    frac_est: np.ndarray  # (d, 10) estimated share of active tokens in the interval, from the histogram
    exact: np.ndarray  # (d, 10) bool: sample proven equal to the exact one

    def __post_init__(self) -> None:
        m = self.unit.shape[0]
        assert self.interval.shape == self.rank.shape == self.tok.shape == self.val.shape == (m,)
        assert self.lo.shape == self.hi.shape == self.frac_est.shape == self.exact.shape


def interval_index(val: np.ndarray, vmax: np.ndarray) -> np.ndarray:
    """i = min(floor(10 * a / max), 9) in float64, the one definition used everywhere."""
    with np.errstate(divide="ignore", invalid="ignore"):
        i = np.floor(10.0 * val.astype(np.float64) / vmax.astype(np.float64))
    return np.clip(np.nan_to_num(i, nan=0.0), 0, N_INTERVALS - 1).astype(np.int64)


def interval_samples(vmax, exp, res_prio, res_tok, res_val, hist, cfg) -> IntervalSamples:
    """vmax: (d,); exp: (d,); res_*: (d*F, S'); hist: (d, 2F) -> IntervalSamples."""
    d, F, S = vmax.shape[0], cfg.hist_bins, cfg.samples
    S2 = res_prio.shape[1]
    prio = res_prio.reshape(d, F, S2).astype(np.int64)  # (d, F, S')
    tok = res_tok.reshape(d, F, S2).astype(np.int64)
    val = res_val.reshape(d, F, S2)
    live = vmax > 0  # units with any active token
    # ---- candidates -> bottom-S priorities per (unit, interval)
    u, b, s = np.nonzero((tok >= 0) & live[:, None, None])
    cv, cp, ct = val[u, b, s], prio[u, b, s], tok[u, b, s]
    ci = interval_index(cv, vmax[u])
    key = (u * N_INTERVALS + ci) * 2**33 + (cp + 2**31)
    order = np.argsort(key, kind="stable")
    grp = (u * N_INTERVALS + ci)[order]
    first = np.searchsorted(grp, grp, side="left")
    rank = np.arange(grp.size) - first
    keep = order[rank < S]
    rank = rank[rank < S]
    su, si, sp = u[keep], ci[keep], cp[keep]
    n_sel = np.zeros((d, N_INTERVALS), np.int64)
    np.add.at(n_sel, (su, si), 1)
    max_sel = np.full((d, N_INTERVALS), -INF)
    np.maximum.at(max_sel, (su, si), sp)
    # ---- certificate: bins that straddle an interval edge and dropped tokens
    w = np.ldexp(1.0, exp.astype(np.int64) - int(np.log2(F)))  # (d,) bin width 2^e / F
    lo_edge = np.arange(F)[None, :] * w[:, None]  # (d, F): positive bin b holds (b w, (b+1) w]
    hi_edge = lo_edge + w[:, None]
    safe_max = np.where(live, vmax, 1.0)[:, None]
    bi_lo = interval_index(np.nextafter(lo_edge, np.inf), safe_max)  # (d, F) interval of the bin's lowest value
    bi_hi = interval_index(hi_edge, safe_max)
    full = tok[:, :, S2 - 1] >= 0
    tau = np.where(full, prio[:, :, S2 - 1], INF)  # (d, F)
    split = bi_lo != bi_hi
    T = np.full((d, N_INTERVALS), INF)
    for i in range(N_INTERVALS):
        touches = split & (bi_lo <= i) & (bi_hi >= i)
        T[:, i] = np.where(touches, tau, INF).min(1)
    exact = np.where(n_sel >= S, max_sel <= T, T == INF) | ~live[:, None]
    # ---- interval edges and an estimated share of active tokens (histogram, split bins prorated)
    edges = np.arange(N_INTERVALS + 1)[None, :] * np.where(live, vmax, 0.0).astype(np.float64)[:, None] / 10
    pos_counts = hist[:, F:].astype(np.float64)  # (d, F)
    frac = np.zeros((d, N_INTERVALS))
    for i in range(N_INTERVALS):
        a, c = edges[:, i: i + 1], edges[:, i + 1: i + 2]
        overlap = np.clip(np.minimum(c, lo_edge + w[:, None]) - np.maximum(a, lo_edge), 0, None) / w[:, None]
        frac[:, i] = (pos_counts * overlap).sum(1)
    tot = frac.sum(1, keepdims=True)
    frac = np.divide(frac, tot, out=np.zeros_like(frac), where=tot > 0)
    return IntervalSamples(unit=su, interval=si, rank=rank, tok=ct[keep], val=cv[keep],
                           lo=edges[:, :-1], hi=edges[:, 1:], frac_est=frac, exact=exact)
