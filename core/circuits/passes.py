"""The forward passes that measure an intervention on a graph's nodes: the frozen replacement model the graph
describes, and the real model. Each runs B edited copies of the prompt in one pass (row 0 unedited, the baseline).

A change (`Change`) sets some feature activations to new values and scales some error vectors; each entry is a
(layer, position) of the graph. Passes:

  prepare          once per graph: the clean pass (core.circuits.replacement.clean_pass), each layer's clean q and
                   k (its query and key projections applied to the clean attention input), and each layer's clean
                   transcoder activations (position 0 left out, as the graph leaves it) and error vectors (the MLP
                   output minus the transcoder's output).
  replacement      the frozen replacement model, by value: every norm's scale and every attention pattern fixed at
                   the prompt's (attn_in.L and mlp_in.L as y0 + r ⊙ (x − x0), q.L and k.L patched with their clean
                   values, the final norm as its clean ratio), each MLP replaced by its transcoder recomputed on the
                   edited MLP input plus the fixed error term (plus W_skip's path): mlp_out = f W_dec + b_dec +
                   x W_skip + s ⊙ error, position 0 the clean MLP output. Edited features are clamped to their new
                   values; `linear` rows keep every other feature on its clean active set and linear in its
                   pre-activation (f = pre on the active set, 0 elsewhere): the model the graph's edges are the
                   derivatives of, so a complete graph's path sum predicts its change exactly.
  real             the model itself, with Σ (f_new − f) W_dec[feature] + (s − 1) error added at mlp_out.L of each
                   changed (layer, position); everything downstream real (MLPs, norms, attention recomputed).
Both read the final position's logits (float32, CPU). Blocks below the first changed layer are the clean pass's in
both models, so a pass replays their output (core.model.intervene's `replay`) and computes only the blocks from there
on. All edits go through core.model.intervene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.circuits.attribute import active_features
from core.circuits.replacement import Clean, clean_pass, frozen_scale
from core.model.intervene import intervene, patch, store
from core.model.run import unembed


@dataclass
class Change:
    """One batch row's edits."""

    features: list[tuple[int, int, int, float]] = field(default_factory=list)
    """(layer, position, feature, new activation)."""
    errors: list[tuple[int, int, float]] = field(default_factory=list)
    """(layer, position, factor on the error vector)."""


@dataclass(frozen=True)
class Prepared:
    """What every intervention on one graph reuses (batch 1, float32, CPU)."""

    ids: list[int]
    clean: Clean
    qk: dict[str, torch.Tensor]  # 'q.L' / 'k.L' -> (1, T, d_q or d_k) clean projections
    acts: list[torch.Tensor]  # L × (T, d_tc) clean transcoder activations, position 0 zeroed
    errors: torch.Tensor  # (L, T, d) the MLP output minus the transcoder's output, 0 at position 0


def prepare(lm, transcoders, ids: list[int]) -> Prepared:
    """The clean pass, the clean q and k, activations and errors (module docstring)."""
    clean = clean_pass(lm, ids)
    qk, parts = {}, lm.parts
    with torch.no_grad():
        for layer in range(lm.n_layers):
            for kind in "qk":
                proj = parts.qk_proj(layer, kind)
                x = clean.attn_in[layer][None].to(proj.weight.device, proj.weight.dtype)  # (1, T, d)
                qk[f"{kind}.{layer}"] = proj(x).float().cpu()  # (1, T, d_q or d_k)
    acts = []
    for layer, tc in enumerate(transcoders):
        a = tc.encode(clean.mlp_in[layer])  # (T, d_tc)
        a[0] = 0
        acts.append(a)
    errors = active_features(transcoders, clean).errors
    return Prepared(list(ids), clean, qk, acts, errors)


def _grids(changes: list[Change], layer: int, T: int):
    """(feature clamps as (rows, positions, features, values), error factors (B, T)) of one layer."""
    rows, pos, feat, vals = [], [], [], []
    factor = torch.ones(len(changes), T)
    for b, ch in enumerate(changes):
        for lay, p, f, v in ch.features:
            if lay == layer:
                rows.append(b), pos.append(p), feat.append(f), vals.append(v)
        for lay, p, s in ch.errors:
            if lay == layer:
                factor[b, p] = s
    return (torch.tensor(rows, dtype=torch.long), torch.tensor(pos, dtype=torch.long),
            torch.tensor(feat, dtype=torch.long), torch.tensor(vals, dtype=torch.float32)), factor


def first_layer(changes: list[Change], n_layers: int) -> int:
    """The lowest layer any change touches (n_layers - 1 when none does)."""
    return min([lay for ch in changes for lay, *_ in ch.features + ch.errors] or [n_layers - 1])


def _replayed(lm, prep: Prepared, layer: int, B: int) -> tuple[int, torch.Tensor] | None:
    """intervene's `replay` for blocks 0..layer-1: their clean output (B, T, d), or None from layer 0."""
    if layer == 0:
        return None
    w = lm.model.get_input_embeddings().weight
    return layer, prep.clean.resid_pre[layer][None].expand(B, -1, -1).to(w.device, w.dtype)


def _transcoder_out(tc, layer: int, prep: Prepared, kept: dict, clamps, factor: torch.Tensor, linear: torch.Tensor):
    """mlp_out.L of the replacement model (module docstring) for B rows."""
    mask = (prep.acts[layer] > 0).float()  # (T, d_tc) the clean active set

    def fn(_y: torch.Tensor) -> torch.Tensor:
        x = kept[("in", layer)].float().cpu()  # (B, T, d)
        pre = tc.pre_acts(x)  # (B, T, d_tc)
        a = torch.where(linear[:, None, None], pre * mask, tc.activate(pre))
        a[:, 0] = 0
        rows, pos, feat, vals = clamps
        a[rows, pos, feat] = vals
        out = a @ tc.W_dec + tc.b_dec + factor[..., None] * prep.errors[layer]  # (B, T, d)
        if getattr(tc, "W_skip", None) is not None:
            out = out + x @ tc.W_skip
        out[:, 0] = prep.clean.mlp_out[layer, 0]
        return out
    return fn


@torch.no_grad()
def replacement(lm, transcoders, prep: Prepared, changes: list[Change], linear: list[bool]) -> torch.Tensor:
    """(B, V) float32 last-position logits of the frozen replacement model, one row per change (module docstring)."""
    B, T, c, L = len(changes), len(prep.ids), prep.clean, len(transcoders)
    start = first_layer(changes, L)
    kept: dict = {}
    lin = torch.tensor(linear, dtype=torch.bool)
    edits: dict = {}
    for layer in range(start, L):
        tc = transcoders[layer]
        clamps, factor = _grids(changes, layer, T)
        edits[f"resid_pre.{layer}"] = store(kept, ("pre", layer))
        edits[f"attn_in.{layer}"] = frozen_scale(kept, ("pre", layer), c.resid_pre[layer], c.attn_in[layer])
        for kind in "qk":
            edits[f"{kind}.{layer}"] = patch(prep.qk[f"{kind}.{layer}"].expand(B, -1, -1))
        edits[f"resid_mid.{layer}"] = store(kept, ("mid", layer))
        edits[f"mlp_in.{layer}"] = [frozen_scale(kept, ("mid", layer), c.resid_mid[layer], c.mlp_in[layer]),
                                    store(kept, ("in", layer))]
        edits[f"mlp_out.{layer}"] = _transcoder_out(tc, layer, prep, kept, clamps, factor, lin)
    edits[f"resid_post.{L - 1}"] = store(kept, "last")
    ids = torch.tensor([prep.ids], device=lm.device).expand(B, T)
    skip = {layer: c.mlp_out[layer][None] for layer in range(start, L)}
    with intervene(lm, edits, skip_mlp=skip, replay=_replayed(lm, prep, start, B)):
        lm.parts.base(input_ids=ids)
    y = kept["last"][:, -1].float().cpu() * c.final_ratio[-1]  # (B, d) the frozen final norm's output
    head = lm.model.get_output_embeddings()
    return head(y.to(head.weight.device, head.weight.dtype)).float().cpu()  # (B, V)


def _added(delta: torch.Tensor):
    def fn(y: torch.Tensor) -> torch.Tensor:
        return y + delta.to(y.device, y.dtype)
    return fn


@torch.no_grad()
def real(lm, transcoders, prep: Prepared, changes: list[Change]) -> torch.Tensor:
    """(B, V) float32 last-position logits of the model with each change's features and errors added at their
    layers' MLP outputs (module docstring)."""
    B, T = len(changes), len(prep.ids)
    start = first_layer(changes, lm.n_layers)
    edits: dict = {}
    for layer in range(start, lm.n_layers):
        tc = transcoders[layer]
        (rows, pos, feat, vals), factor = _grids(changes, layer, T)
        if not len(rows) and bool((factor == 1).all()):
            continue
        delta = (factor - 1)[..., None] * prep.errors[layer]  # (B, T, d)
        old = prep.acts[layer][pos, feat]  # (n,)
        delta.index_put_((rows, pos), (vals - old)[:, None] * tc.W_dec[feat], accumulate=True)
        edits[f"mlp_out.{layer}"] = _added(delta)
    kept: dict = {}
    edits[f"resid_post.{lm.n_layers - 1}"] = store(kept, "last")
    with intervene(lm, edits, replay=_replayed(lm, prep, start, B)):
        lm.parts.base(input_ids=torch.tensor([prep.ids], device=lm.device).expand(B, T))
    return unembed(lm, kept["last"][:, -1]).float().cpu()  # (B, V)
