"""Streaming per-unit reducers: what every unit of one layer did, in memory bounded by the unit count.

`LayerReducer.update(acts, tok)` folds one batch of activations into running state; `finalize()` turns the state
into exact per-unit results. Nothing here depends on the corpus length: state is O(d * (K + 2F + F*S)).

Definitions (the brute-force reference in tests/core/test_reduce.py implements the same ones independently):

- active: activation > 0; `count` is exact, `density = count / n_tokens`; mean over all counted tokens.
- histogram: per unit, 2F bins of width w = 2^e / F covering (-2^e, 2^e], where e is the smallest integer with
  2^e > max|a| over the whole run. Bin j holds ((j-F) w, (j-F+1) w], i.e. j = ceil(a / w) - 1 + F, so the F
  positive bins hold exactly the active tokens. Edges are powers of two, so `a / w` is exact in floating point
  and growing e merges bin pairs exactly: the histogram is exact, not an estimate.
- top-K: the K tokens with the largest activation, ties broken by the smaller token index.
- interval samples (SAEDashboard's semantics): the active tokens of a unit are split into 10 equal-width intervals
  i = min(floor(10 * a / max), 9) (float64); each interval gets the S tokens of lowest priority, where
  priority = fmix32(tok) XOR fmix32(unit) read as int32 — a fixed pseudo-random order, so the sample is uniform
  within the interval and identical across runs and resumes.

Interval samples in one pass: the intervals depend on the final max, unknown until the end. Each unit keeps, for
each of F positive histogram bins, the S' >= S lowest-priority tokens seen in that bin (bins merge exactly when e
grows). At the end, an interval's sample is the S lowest priorities among the kept tokens that fall in it. This is
provably exact unless a bin straddling the interval's edge dropped a token that would have ranked; `finalize`
checks that condition per interval and reports it (`exact`), and with bins much narrower than an interval it
practically never fails (tests assert both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.units import fused
from core.units.kernels import (
    INT32_MAX,
    as_int32,
    batch_bottom,
    double_bins,
    fmix32,
    merge_reservoir,
    merge_top,
    reservoir_prefilter,
    unit_hash,
    update_topk,
)

STATE = ("n_tokens", "sum", "max", "min", "exp", "hist", "top_val", "top_tok", "top_ctx", "res_prio", "res_tok",
         "res_val")
"""A reducer's state: what a checkpoint or a shard's result holds."""


@dataclass
class ReduceConfig:
    top_k: int = 64
    """Exact top-K activating tokens kept per unit."""
    samples: int = 8
    """S: interval samples per interval."""
    hist_bins: int = 128
    """F: histogram bins on each side of zero (2F in all); a power of two."""
    reservoir: int | None = None
    """S': tokens kept per (unit, positive bin) for interval sampling; default S."""
    ctx_examples: int = 16
    """The unit's activation on the context of its first `ctx_examples` top examples is kept (0: none)."""
    ctx_window: int = 16
    """W: that context is the W tokens each side of the example's token, within its window (NaN outside)."""

    def __post_init__(self) -> None:
        if self.hist_bins < 2 or self.hist_bins & (self.hist_bins - 1):
            raise ValueError(f"hist_bins must be a power of two >= 2, got {self.hist_bins}")
        if self.reservoir is None:
            self.reservoir = self.samples
        if self.reservoir < self.samples:
            raise ValueError("reservoir must be >= samples")
        if self.top_k < 1 or self.samples < 1:
            raise ValueError("top_k and samples must be >= 1")
        if self.ctx_examples < 0 or self.ctx_window < 0:
            raise ValueError("ctx_examples and ctx_window must be >= 0")
        self.ctx_examples = min(self.ctx_examples, self.top_k)


class LayerReducer:
    """Running state of one layer's d units. Its tensors live on `device` (the CPU by default, where the compiled
    kernels of core/units/fused.c run; elsewhere, e.g. beside a model on a GPU, the same steps run as torch ops);
    state_dict() and finalize() always give CPU tensors and arrays."""

    def __init__(self, d: int, layer: int, cfg: ReduceConfig, device: str | torch.device = "cpu") -> None:
        self.d, self.layer, self.cfg = d, layer, cfg
        self.device = torch.device(device)
        F, S2, K = cfg.hist_bins, cfg.reservoir, cfg.top_k
        self.n_tokens = torch.zeros((), dtype=torch.int64)
        self.sum = torch.zeros(d, dtype=torch.float64)
        self.max = torch.full((d,), -torch.inf)
        self.min = torch.full((d,), torch.inf)
        self.exp = torch.full((d,), -1000, dtype=torch.int32)  # -1000: no data yet
        self.hist = torch.zeros(d, 2 * F, dtype=torch.int64)  # (d, 2F)
        self.top_val = torch.full((K, d), -torch.inf)  # (K, d) sorted desc
        self.top_tok = torch.full((K, d), -1, dtype=torch.int64)  # (K, d)
        # (Kc, d, 2W+1): activation on positions tok-W..tok+W of the top-Kc examples. A kept token's rank only ever
        # grows, so only tokens entering at rank < Kc need a context, and they bring it from their own batch.
        self.top_ctx = torch.full((cfg.ctx_examples, d, 2 * cfg.ctx_window + 1), torch.nan)
        self.res_prio = torch.full((d * F, S2), INT32_MAX, dtype=torch.int32)  # (d*F, S') sorted asc
        self.res_tok = torch.full((d * F, S2), -1, dtype=torch.int32)  # (d*F, S'), -1 = empty
        self.res_val = torch.zeros(d * F, S2)  # (d*F, S')
        self.uhash = as_int32(unit_hash(d, layer))  # (d,)
        self._hist_offs = (torch.arange(d) * (2 * F) + F - 1).float()  # (d,)
        if self.device.type != "cpu":
            for k in (*STATE, "uhash", "_hist_offs"):
                setattr(self, k, getattr(self, k).to(self.device))
        self._pending: list[tuple[torch.Tensor, ...]] = []  # reservoir candidates not merged yet
        self._n_pending = 0
        self.sum_log: list[torch.Tensor] | None = None
        """When a list: each batch's float64 sum, in order (a shard keeps it, so that merging shards in corpus order
        adds the same numbers in the same order as one pass: the mean bit for bit)."""

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state as CPU tensors (checkpoints, shard results)."""
        self.flush()
        return {k: getattr(self, k).cpu().contiguous() for k in STATE}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            cur = getattr(self, k)
            if cur.shape != v.shape or cur.dtype != v.dtype:
                raise ValueError(f"checkpoint tensor {k} has shape {tuple(v.shape)}, expected {tuple(cur.shape)}")
            setattr(self, k, v.to(self.device, copy=True))

    # ---------------------------------------------------------------- merge
    @torch.inference_mode()
    def merge(self, other: LayerReducer) -> None:
        """Fold in another reducer of the same units that saw other tokens (a shard of the corpus, with global
        token indices): afterwards this state is what one reducer over both token sets holds. Counts, histograms,
        max/min, the top-K (same order, ties by earlier token) with their contexts and the interval reservoirs are
        exact: each is a function of the token set (a reservoir keeps its bin's S' lowest priorities, and priorities
        of one unit never tie: fmix32 is a bijection). The float64 sum behind the mean is exact up to the order of
        its additions (a few ulps); bit for bit when `other` kept its `sum_log` and shards are merged in corpus
        order into a fresh reducer: its batch sums are then added one by one, as one pass adds them."""
        if (other.d, other.layer, other.cfg) != (self.d, self.layer, self.cfg):
            raise ValueError("merge: reducers of different units or settings")
        self.flush()
        o = LayerReducer(self.d, self.layer, self.cfg, self.device)
        o.load_state_dict(other.state_dict())
        # both to the common bin width: a unit with no data, or only zeros (they sit in the centre bin at every
        # width), takes the other's width outright, as update() does for a unit's first non-zero batch
        fresh_s = (self.exp == -1000) | ((self.max == 0) & (self.min == 0))
        fresh_o = (o.exp == -1000) | ((o.max == 0) & (o.min == 0))
        target = torch.where(fresh_s & ~fresh_o, o.exp, torch.where(fresh_o & ~fresh_s, self.exp,
                                                                    torch.maximum(self.exp, o.exp)))
        for red, fresh in ((self, fresh_s), (o, fresh_o)):
            red.exp[fresh] = target[fresh]
            while True:
                grow = target > red.exp
                if not grow.any():
                    break
                red._merge_once(grow.nonzero().squeeze(1))
        self.hist += o.hist
        self.n_tokens += o.n_tokens
        if other.sum_log is not None:
            for s in other.sum_log:
                self.sum += s.to(self.device)
        else:
            self.sum += o.sum
        torch.maximum(self.max, o.max, out=self.max)
        torch.minimum(self.min, o.min, out=self.min)
        self.top_val, self.top_tok, self.top_ctx = merge_top((self.top_val, self.top_tok, self.top_ctx),
                                                             (o.top_val, o.top_tok, o.top_ctx))
        live = o.res_tok.view(-1) >= 0
        gi = torch.arange(self.d * self.cfg.hist_bins, device=self.device).repeat_interleave(self.cfg.reservoir)[live]
        if gi.numel():
            merge_reservoir(self.res_prio, self.res_tok, self.res_val, gi, o.res_prio.view(-1)[live],
                            o.res_tok.view(-1)[live], o.res_val.view(-1)[live])

    # ---------------------------------------------------------------- update
    @torch.inference_mode()
    def update(self, acts: torch.Tensor, tok: torch.Tensor, ctx: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """acts: (n, d) activations of n counted tokens; tok: (n,) int64 global token indices.

        ctx: (full, idx) for top-example contexts: full (m, d) holds the batch's activations at every position, idx
        (n, 2W+1) the row of `full` at offsets -W..W from each counted token (-1 outside its window). Without it,
        contexts of examples entering in this batch are NaN.
        """
        n = acts.shape[0]
        if n == 0:
            return
        acts = acts.to(self.device, torch.float32).contiguous()
        tok = tok.to(self.device)
        if ctx is not None:
            ctx = (ctx[0].to(self.device, torch.float32), ctx[1].to(self.device))
        compiled = self.device.type == "cpu" and fused.library() is not None
        if compiled:
            mx, mn = fused.minmax(acts)  # (d,), (d,) in one pass
        else:
            mx, mn = acts.amax(0), acts.amin(0)  # (d,), (d,); aminmax(dim=0) is ~10x slower on CPU
            if torch.isnan(mx).any():
                raise ValueError("NaN activations: the model produced NaN at this layer")
        self._grow_scale(torch.maximum(mx, -mn))
        torch.maximum(self.max, mx, out=self.max)
        torch.minimum(self.min, mn, out=self.min)
        self.n_tokens += n
        bsum = (torch.ones(1, n, device=self.device) @ acts).squeeze(0).double()  # (d,) a BLAS reduction
        self.sum += bsum
        if self.sum_log is not None:
            self.sum_log.append(bsum)
        F, K, S2 = self.cfg.hist_bins, self.cfg.top_k, self.cfg.reservoir
        scale = torch.ldexp(torch.full((self.d,), float(F), device=self.device), -self.exp.float())  # (d,) F/2^e
        thash = as_int32(fmix32(tok))  # (n,)
        top = res = None
        if compiled:  # one pass: histogram and both candidate lists (core/units/fused.c)
            cap = 4 * K * self.d // max(1, torch.get_num_threads()) + 1
            top, res = fused.scan(acts, thash, self.uhash, scale, F, self.hist, self.top_val[K - 1].contiguous(),
                                  self.res_prio[:, S2 - 1].contiguous(), cap)
            if top is None or res is None:  # too many to list (a run's first batches): insert straight from acts
                tok = tok.contiguous()
                fused.insert(acts, tok, thash, self.uhash, scale, F,
                             (self.top_val, self.top_tok, self.top_ctx) if top is None else None,
                             (self.res_prio, self.res_tok, self.res_val) if res is None else None, ctx)
                top = top if top is not None else "done"
                res = res if res is not None else "done"
        else:
            binf = (acts * scale).ceil_()  # (n, d) in [-F+1, F]: bin = ceil(a / w) - 1 + F
            binf += self._hist_offs  # unit * 2F + F - 1, exact in float32
            self.hist += torch.bincount(binf.to(torch.int32).view(-1), minlength=self.d * 2 * F).view(self.d, 2 * F)
            del binf
        update_topk(self.top_val, self.top_tok, self.top_ctx, acts, tok, ctx, top)
        self._update_reservoir(acts, tok, scale, thash, res)

    def _grow_scale(self, absmax: torch.Tensor) -> None:
        _, e_new = torch.frexp(absmax)  # absmax < 2^e_new
        e_new = e_new.to(torch.int32)
        # a unit with no data yet, or with only zeros so far (an SAE feature that has not fired), takes this batch's
        # scale outright: zeros sit at the centre edge, in bin F-1 at every scale, so nothing needs merging
        fresh = (self.exp == -1000) | ((self.max == 0) & (self.min == 0) & (absmax > 0))
        self.exp[fresh] = e_new[fresh]
        e_new = torch.where(absmax > 0, e_new, self.exp)  # a batch of zeros (frexp(0) = 0) never widens the bins
        while True:
            grow = e_new > self.exp
            if not grow.any():
                return
            self._merge_once(grow.nonzero().squeeze(1))

    def _merge_once(self, units: torch.Tensor) -> None:
        """Double the bin width of `units` (core.units.kernels.double_bins)."""
        self.flush(units)  # their pending candidates name bins of the old width
        double_bins(self.hist, (self.res_prio, self.res_tok, self.res_val), self.exp, units)

    def _update_reservoir(self, acts: torch.Tensor, tok: torch.Tensor, scale: torch.Tensor, thash: torch.Tensor,
                          cands: tuple | None = None) -> None:
        """cands: (flat i*d+u, priority, group) of the exact candidates, from the fused pass."""
        F, S2 = self.cfg.hist_bins, self.cfg.reservoir
        if cands == "done":
            return
        if cands is not None:  # exact candidates: insert them in place (compiled)
            idx, pr, gi = cands
            fused.merge_res(gi, pr, tok[idx // self.d].to(torch.int32), acts.view(-1)[idx], F, self.res_prio,
                            self.res_tok, self.res_val)
            return
        else:
            vthr, pthr = reservoir_prefilter(self.res_prio, self.hist, self.exp)
            prio = thash[:, None] ^ self.uhash[None, :]  # (n, d) int32
            maybe = (prio <= pthr) | (acts > vthr)  # (n, d), cheap broadcasts only
            r, c = maybe.nonzero(as_tuple=True)
            v = acts[r, c]
            keep = v > 0
            r, c, v = r[keep], c[keep], v[keep]
            gi = (v * scale[c]).ceil_().long() - 1 + c * F  # (m,) group = unit * F + positive bin
            pr = prio[r, c]
            real = pr <= self.res_prio[gi, S2 - 1]  # the exact test against the bin's own tau
        if int(real.sum()) > 4 * S2 * self.d:  # early batches: keep only what can be a batch's bottom-S'
            real &= batch_bottom(gi, pr, real, S2, self.d * F)
        if real.any():
            self._pending.append((gi[real], pr[real], tok[r[real]].to(torch.int32), v[real]))
            self._n_pending += int(real.sum())
        if self._n_pending > 64 * self.d:
            self.flush()

    def flush(self, units: torch.Tensor | None = None) -> None:
        """Merge buffered reservoir candidates (buffering amortises the merge; taus only shrink, so it is safe);
        `units`: only those units' candidates (the bottom S' of a group does not depend on when each candidate
        joins it)."""
        if not self._pending:
            return
        gi, pr, tk, vv = (torch.cat(x) for x in zip(*self._pending, strict=True))
        self._pending, self._n_pending = [], 0
        if units is not None:
            hit = torch.zeros(self.d, dtype=torch.bool, device=self.device)
            hit[units] = True
            now = hit[gi // self.cfg.hist_bins]
            later = ~now
            if later.any():
                self._pending, self._n_pending = [(gi[later], pr[later], tk[later], vv[later])], int(later.sum())
            gi, pr, tk, vv = gi[now], pr[now], tk[now], vv[now]
        if gi.numel():
            merge_reservoir(self.res_prio, self.res_tok, self.res_val, gi, pr, tk, vv)

    # ---------------------------------------------------------------- results
    def finalize(self) -> LayerResult:
        from core.units.intervals import interval_samples

        if self.device.type != "cpu":  # the results from a CPU copy
            cpu = LayerReducer(self.d, self.layer, self.cfg)
            cpu.load_state_dict(self.state_dict())
            return cpu.finalize()
        self.flush()
        n = int(self.n_tokens)
        F = self.cfg.hist_bins
        cnt = self.hist[:, F:].sum(1).numpy()  # positive bins hold exactly the tokens with a > 0
        top_v, top_t = self.top_val.numpy().T.copy(), self.top_tok.numpy().T.copy()  # (d, K)
        top_ctx = self.top_ctx.permute(1, 0, 2).numpy().copy()  # (d, Kc, 2W+1)
        iv = interval_samples(self.max.numpy(), self.exp.numpy(), self.res_prio.numpy(), self.res_tok.numpy(),
                              self.res_val.numpy(), self.hist.numpy(), self.cfg)
        mean = self.sum.numpy() / max(n, 1)
        return LayerResult(layer=self.layer, n_tokens=n, count=cnt, mean=mean,
                           max=self.max.numpy().copy(), min=self.min.numpy().copy(), exp=self.exp.numpy().copy(),
                           hist=self.hist.numpy().copy(), top_val=top_v, top_tok=top_t, intervals=iv,
                           top_ctx=top_ctx)


@dataclass
class LayerResult:
    """Finished per-unit results of one layer; arrays indexed by unit along axis 0."""

    layer: int
    n_tokens: int
    count: np.ndarray  # (d,) int64
    mean: np.ndarray  # (d,) float64
    max: np.ndarray  # (d,) float32
    min: np.ndarray  # (d,)
    exp: np.ndarray  # (d,) int32: histogram covers [-2^e, 2^e) in 2F bins
    hist: np.ndarray  # (d, 2F) int64
    top_val: np.ndarray  # (d, K) float32, desc; -inf where fewer than K tokens
    top_tok: np.ndarray  # (d, K) int64; -1 where empty
    intervals: object  # core.units.intervals.IntervalSamples
    top_ctx: np.ndarray | None = None  # (d, Kc, 2W+1) float32: activation around each of the first Kc top examples

    def __post_init__(self) -> None:
        d = self.count.shape[0]
        assert self.hist.shape[0] == d and self.top_val.shape == self.top_tok.shape and self.top_val.shape[0] == d
