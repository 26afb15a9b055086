"""The tensor steps of a LayerReducer (core.units.reduce), as torch functions of its state tensors.

  priorities   fmix32, as_int32, unit_hash: the fixed pseudo-random order of the interval samples
  top-K        order_keys, update_topk/update_ctx (a batch into the sorted lists, contexts following), merge_top
  reservoirs   reservoir_prefilter and batch_bottom (exact candidate filters), merge_reservoir, double_bins

Functions named update_/merge_reservoir/double_bins change the tensors they are given in place; merge_top returns
new ones. Shapes: d units, K top-K slots (Kc of them with contexts of 2W+1), F positive histogram bins, S' reservoir
slots; a reservoir group is unit * F + positive bin. The compiled kernels (core/units/fused.c) do the same steps on
the CPU; these run wherever the tensors are.
"""

from __future__ import annotations

import numpy as np
import torch

from core.units import fused

INT32_MAX = 2**31 - 1


def fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finalizer, a bijection on [0, 2^32); int64 in, int64 in [0, 2^32) out."""
    m = 0xFFFFFFFF
    x = x & m
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & m
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & m
    return x ^ (x >> 16)


def as_int32(x: torch.Tensor) -> torch.Tensor:
    """Reinterpret values in [0, 2^32) as int32 (two's complement)."""
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def unit_hash(d: int, layer: int) -> torch.Tensor:
    """(d,) int64 hash of each unit of a layer, mixed into token priorities."""
    return fmix32(torch.arange(d, dtype=torch.int64) + (layer + 1) * 0x9E3779B1)


def order_keys(vals: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering by (value desc, token asc) under `>`: value bits made monotone, token complemented."""
    bits = vals.contiguous().view(torch.int32).to(torch.int64)  # same shape
    mono = torch.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits)  # monotone in the float value
    return (mono << 32) | (0xFFFFFFFF - tok.clamp(min=0))


# ---------------------------------------------------------------- top-K
def merge_top(top: tuple[torch.Tensor, torch.Tensor, torch.Tensor], other: tuple[torch.Tensor, torch.Tensor,
              torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two (top_val (K, d), top_tok (K, d), top_ctx (Kc, d, 2W+1)) lists of every unit as one, by (value desc,
    token asc), empties last; contexts follow their entries."""
    top_val, top_tok, top_ctx = top
    K, d = top_val.shape
    Kc = top_ctx.shape[0]
    vals = torch.cat([top_val, other[0]])  # (2K, d)
    toks = torch.cat([top_tok, other[1]])
    keys = order_keys(vals, toks)
    keys[toks < 0] = torch.iinfo(torch.int64).min
    order = torch.sort(keys, dim=0, descending=True, stable=True).indices[:K]  # (K, d)
    new_val = torch.gather(vals, 0, order).contiguous()
    new_tok = torch.gather(toks, 0, order).contiguous()
    new_ctx = top_ctx
    if Kc:
        pad = torch.full((K - Kc, d, top_ctx.shape[2]), torch.nan, device=top_val.device)
        ctx = torch.cat([top_ctx, pad, other[2], pad])  # (2K, d, 2W+1): ranks >= Kc carry none
        idx = order[:Kc, :, None].expand(-1, -1, ctx.shape[2])
        new_ctx = torch.gather(ctx, 0, idx).contiguous()
    return new_val, new_tok, new_ctx


def update_topk(top_val: torch.Tensor, top_tok: torch.Tensor, top_ctx: torch.Tensor, acts: torch.Tensor,
                tok: torch.Tensor, ctx, cands: tuple | str | None = None) -> None:
    """A batch (acts (n, d), tok (n,)) into the top lists (K, d), in place; ctx as LayerReducer.update takes it.
    cands: (flat i*d+u,) the entries with acts >= the unit's K-th kept value, from the fused pass ("done": the
    fused pass inserted them already)."""
    K, (n, d) = top_val.shape[0], acts.shape
    if isinstance(cands, str):
        return
    if cands is not None and cands[0].numel() <= 4 * K * d:  # few: insert them in place (compiled)
        fused.merge_top(cands[0], acts, tok, top_val, top_tok, top_ctx, ctx)
        return
    if cands is not None:
        r, c = cands[0] // d, cands[0] % d
    else:
        cand = acts >= top_val[K - 1]  # (n, d): only these can enter; ties kept for the exact order
        r, c = cand.nonzero(as_tuple=True)
    if r.numel() > 4 * K * d:  # early batches: a dense top-K first keeps the merge small
        k = min(K, n)
        vals, idx = torch.topk(acts, k, dim=0)  # (k, d)
        thr = vals[k - 1]
        r, c = (acts >= thr).nonzero(as_tuple=True)  # the top k plus any ties with the k-th
    aff = torch.bincount(c, minlength=d).nonzero().squeeze(1)  # (a,) affected units, no sort
    old_v, old_t = top_val[:, aff], top_tok[:, aff]  # (K, a)
    all_u = torch.cat([aff.repeat(K), c])
    all_v = torch.cat([old_v.reshape(-1), acts[r, c]])
    all_t = torch.cat([old_t.reshape(-1), tok[r]])
    keys = order_keys(all_v, all_t)
    keys[all_t < 0] = torch.iinfo(torch.int64).min  # empty slots last
    o1 = torch.sort(keys, descending=True, stable=True).indices
    o2 = torch.sort(all_u[o1], stable=True).indices
    order = o1[o2]  # by unit, then key desc
    u_sorted = all_u[order]
    rank = torch.arange(order.numel(), device=acts.device) - torch.searchsorted(u_sorted, u_sorted, side="left")
    ok = rank < K
    top_val[rank[ok], u_sorted[ok]] = all_v[order[ok]]
    top_tok[rank[ok], u_sorted[ok]] = all_t[order[ok]]
    if top_ctx.shape[0]:
        update_ctx(top_ctx, K, order, rank, u_sorted, aff, r, c, ctx)


def update_ctx(top_ctx: torch.Tensor, K: int, order, rank, u_sorted, aff, r, c, ctx) -> None:
    """Move kept contexts to their new ranks and bring new entries' contexts from the batch (in place)."""
    Kc, W2 = top_ctx.shape[0], top_ctx.shape[2]
    sel = rank < Kc
    src, dst_r, dst_u = order[sel], rank[sel], u_sorted[sel]  # merged-list index, new rank, unit
    n_old, a = K * aff.numel(), aff.numel()
    old = src < n_old  # entries of the old top-K: flat index k * a + i of (K, a)
    vals = torch.full((src.numel(), W2), torch.nan, device=top_ctx.device)
    o = src[old]
    keep = o // a < Kc  # an old entry from rank >= Kc cannot rise, so this is all of them
    vals[old] = torch.where(keep[:, None], top_ctx[(o // a).clamp(max=Kc - 1), aff[o % a]], torch.nan)
    if ctx is not None:
        full, idx = ctx
        j = src[~old] - n_old  # candidate index into (r, c)
        rows = idx[r[j]]  # (m, 2W+1)
        got = full[rows.clamp(min=0), c[j][:, None]].float()
        vals[~old] = got.masked_fill_(rows < 0, torch.nan)
    top_ctx[dst_r, dst_u] = vals


# ---------------------------------------------------------------- reservoirs
def reservoir_prefilter(res_prio: torch.Tensor, hist: torch.Tensor, exp: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit (value, priority) thresholds whose union over-approximates 'priority <= tau(bin)'.

    res_prio (d*F, S'), hist (d, 2F), exp (d,). Bins below the first bin with tau > LEVEL all have tau <= pthr, so
    a token there can only enter if its priority <= pthr; tokens at or above vthr (sparse bins) always go on to the
    exact per-bin check.
    """
    d, F, S2 = hist.shape[0], hist.shape[1] // 2, res_prio.shape[1]
    dev = res_prio.device
    tau = res_prio[:, S2 - 1].view(d, F).to(torch.int64)  # (d, F)
    # b_thr per unit minimises the expected number of tokens passing, judged from the histogram so far:
    # tokens below bin b_thr pass with probability frac(pthr), tokens above always pass
    pthr_at = torch.cat([torch.full((d, 1), -(2**31), device=dev), tau.cummax(1).values], 1)
    counts = hist.double()  # (d, 2F)
    below = counts[:, :F].sum(1, keepdim=True) + torch.cat(
        [torch.zeros(d, 1, dtype=torch.float64, device=dev), counts[:, F:].cumsum(1)], 1)
    cost = (pthr_at + 2**31).double() / 2**32 * below + (counts.sum(1, keepdim=True) - below)
    b_thr = cost.argmin(1)  # (d,)
    pthr = pthr_at.gather(1, b_thr[:, None]).squeeze(1).clamp(max=INT32_MAX).to(torch.int32)  # (d,)
    vthr = torch.ldexp(b_thr.float(), exp.float() - float(np.log2(F)))  # (d,) = b_thr * 2^e / F
    return vthr, pthr


def batch_bottom(gi: torch.Tensor, pr: torch.Tensor, live: torch.Tensor, S2: int, G: int) -> torch.Tensor:
    """Mask of candidates (group gi, priority pr) that may be among their group's S' lowest priorities in this
    batch (no sort); G groups.

    A group with c candidates keeps those with priority below the 3*S'/c quantile of the int32 range. If at
    least S' survive, every dropped one has S' lower priorities in its group and cannot enter; groups with
    fewer survivors keep all their candidates, so the result stays exact.
    """
    cnt = torch.bincount(gi[live], minlength=G)  # (G,)
    frac = (3.0 * S2 / cnt.clamp(min=1).double()).clamp(max=1.0)
    q = (-(2.0**31) + frac * 2.0**32).floor().to(torch.int64)  # (G,) threshold per group
    keep = live & (pr.to(torch.int64) <= q[gi])
    surv = torch.bincount(gi[keep], minlength=G)
    short = (surv < S2) & (cnt > surv)  # too few survivors: keep the whole group
    return keep | (live & short[gi])


def merge_reservoir(res_prio: torch.Tensor, res_tok: torch.Tensor, res_val: torch.Tensor, gi: torch.Tensor,
                    pr: torch.Tensor, tk: torch.Tensor, vv: torch.Tensor) -> None:
    """Fold candidates (group gi, priority pr, token tk, value vv) into the affected reservoirs (G, S'), in place:
    each keeps its S' lowest priorities, ascending."""
    G, S2 = res_prio.shape
    aff = torch.bincount(gi, minlength=G).nonzero().squeeze(1)  # (a,)
    op, ot, ov = res_prio[aff].view(-1), res_tok[aff].view(-1), res_val[aff].view(-1)
    og = aff.repeat_interleave(S2)
    keep_old = ot >= 0
    all_g = torch.cat([og[keep_old], gi])
    all_p = torch.cat([op[keep_old], pr])
    all_t = torch.cat([ot[keep_old], tk])
    all_v = torch.cat([ov[keep_old], vv])
    key = all_g * 2**32 + (all_p.to(torch.int64) + 2**31)
    order = key.argsort()
    all_g, all_p, all_t, all_v = all_g[order], all_p[order], all_t[order], all_v[order]
    first = torch.searchsorted(all_g, all_g, side="left")
    rank = torch.arange(all_g.numel(), device=res_prio.device) - first
    ok = rank < S2
    res_prio[aff] = INT32_MAX
    res_tok[aff] = -1
    res_val[aff] = 0.0
    gk, rk = all_g[ok], rank[ok]
    res_prio[gk, rk] = all_p[ok]
    res_tok[gk, rk] = all_t[ok]
    res_val[gk, rk] = all_v[ok]


def double_bins(hist: torch.Tensor, res: tuple[torch.Tensor, torch.Tensor, torch.Tensor], exp: torch.Tensor,
                units: torch.Tensor) -> None:
    """Double the bin width of `units`, in place: bins (2i, 2i+1) -> F/2 + i of hist (d, 2F); positive reservoirs
    (2i, 2i+1) -> i of res = (res_prio, res_tok, res_val) (d*F, S'); exp += 1."""
    F, S2 = hist.shape[1] // 2, res[0].shape[1]
    h = hist[units]  # (u, 2F)
    new = torch.zeros_like(h)
    new[:, F // 2: F // 2 + F] = h.view(-1, F, 2).sum(2)
    hist[units] = new
    rows = (units[:, None] * F + torch.arange(F, device=hist.device)).view(-1)  # (u*F,)
    p = res[0][rows].view(-1, F // 2, 2 * S2).to(torch.int64)  # (u, F/2, 2S')
    t = res[1][rows].view(-1, F // 2, 2 * S2)
    v = res[2][rows].view(-1, F // 2, 2 * S2)
    key = p + (t < 0).to(torch.int64) * 2**33  # empties last
    order = key.argsort(dim=2)[:, :, :S2]  # (u, F/2, S')
    merged = [torch.gather(x, 2, order) for x in (p.to(torch.int32), t, v)]
    for dst, src, empty in zip(res, merged, (INT32_MAX, -1, 0.0), strict=True):
        block = torch.full((units.numel(), F, S2), empty, dtype=dst.dtype, device=hist.device)
        block[:, : F // 2] = src
        dst[rows] = block.view(-1, S2)
    exp[units] += 1
