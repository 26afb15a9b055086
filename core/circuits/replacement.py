"""The local replacement model of a prompt: the model with its attention patterns and every norm's scale frozen at
their values on this prompt and each MLP replaced by its transcoder plus an error term (circuit-tracer's
`ReplacementModel`, "Circuit Tracing", Ameisen et al. 2025).

Freezing is a set of edits through core.model.intervene, applied to a pass over B identical copies of the prompt
(one copy per attribution target, so one backward pass gives B targets' rows):

    resid_pre.0    replaced by a leaf E (B, T, d) holding the token embeddings: gradients there give token edges
    attn_in.L      norm with its scale frozen: y = y0 + r ⊙ (x − x0), r = y0 / x0 (x = resid_pre.L, kept)
    q.L, k.L       detached: the attention pattern is a constant, gradients flow only through values
    mlp_in.L       norm with its scale frozen (x = resid_mid.L, kept); kept, for feature targets
    MLP L          not computed (intervene's skip_mlp): returns its output on the clean pass
    mlp_out.L      replaced by a leaf M_L (B, T, d) holding that output (+ (mlp_in − mlp_in0) W_skip for skip
                   transcoders): gradients there times a feature's decoder row give feature and error edges
    resid_post.L-1 kept; the final norm's frozen scale is applied outside, for logit targets

Forward values equal the clean pass's; every derivative is the frozen model's, which is linear in E and the M_L.
Norms must scale x elementwise (RMSNorm and Gemma's 1 + w); a norm that subtracts a mean or adds a bias
(LayerNorm), a norm after a sublayer (Gemma 2/3) or a fused query/key/value map is refused with one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.circuits.prompt import GraphError
from core.model.intervene import detach, intervene, keep, store
from core.model.run import logits


@dataclass(frozen=True)
class Clean:
    """What one unedited pass over the prompt gives (batch 1)."""

    resid_pre: torch.Tensor  # (L, T, d) the stream entering each block
    attn_in: torch.Tensor  # (L, T, d) attention's normed input
    resid_mid: torch.Tensor  # (L, T, d) the stream after attention
    mlp_in: torch.Tensor  # (L, T, d) the MLP's normed input
    mlp_out: torch.Tensor  # (L, T, d) what each MLP adds
    resid_last: torch.Tensor  # (T, d) the last block's output
    final_ratio: torch.Tensor  # (T, d) the final norm's output over its input (its frozen scale times its gain)
    logits: torch.Tensor  # (V,) float32 next-token logits after the last position


def check_supported(lm) -> None:
    """GraphError (one line) unless every norm scales elementwise, no norm follows a sublayer, and q and k have
    their own projections (module docstring)."""
    parts = lm.parts
    norms = [parts.final_norm]
    for layer in range(parts.n_layers):
        bn = parts.norms(layer)
        if bn.post_attn is not None or bn.post_mlp is not None:
            raise GraphError(f"{lm.name}: norms after attention or MLP outputs (Gemma 2/3) are not supported by "
                             "attribution graphs yet")
        norms += [bn.mlp_in]
        parts.qk_proj(layer, "q"), parts.qk_proj(layer, "k")  # StructureError (one line) for a fused map
    if any(n is None for n in norms):
        raise GraphError(f"{lm.name}: attribution graphs need a norm before each MLP and a final norm")
    for n in norms:
        if isinstance(n, torch.nn.LayerNorm) or getattr(n, "bias", None) is not None:
            raise GraphError(f"{lm.name}: {type(n).__name__} subtracts a mean or adds a bias; attribution graphs "
                             "support norms that only scale (RMSNorm)")


def ratio(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """out / x elementwise (0 where x is exactly 0): a scaling norm's gain times its frozen scale."""
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.zeros_like(x), out / safe)


def clean_pass(lm, ids: list[int]) -> Clean:
    """One pass over the prompt with read edits at every site the graph needs."""
    L, got = lm.n_layers, {}
    edits = {}
    for layer in range(L):
        for kind in ("resid_pre", "attn_in", "resid_mid", "mlp_in", "mlp_out"):
            edits[f"{kind}.{layer}"] = store(got, (kind, layer))
    edits[f"resid_post.{L - 1}"] = store(got, "last")
    with torch.no_grad():  # not inference mode: the frozen pass multiplies these into tensors that need grad
        out = logits(lm, torch.tensor([ids]), edits=edits)[0, -1].float().cpu()  # (V,)
        stack = {k: torch.stack([got[(k, layer)][0].float().cpu() for layer in range(L)])
                 for k in ("resid_pre", "attn_in", "resid_mid", "mlp_in", "mlp_out")}  # each (L, T, d)
        last = got["last"][0].float().cpu()  # (T, d)
        final = lm.parts.final_norm(got["last"][0]).float().cpu()  # (T, d)
    return Clean(**stack, resid_last=last, final_ratio=ratio(final, last), logits=out)


@dataclass
class Frozen:
    """One pass of the frozen replacement model over B copies of the prompt, its autograd graph retained."""

    embed: torch.Tensor  # (B, T, d) leaf: token embeddings
    mlp_out: list[torch.Tensor]  # L leaves (B, T, d): MLP outputs
    mlp_in: list[torch.Tensor]  # L (B, T, d): MLP inputs, attached (feature targets read them)
    resid_last: torch.Tensor  # (B, T, d) attached: the last block's output (logit targets read it)


def frozen_scale(kept: dict, key, x0: torch.Tensor, y0: torch.Tensor):
    """An edit for a norm's output: the norm with its scale frozen at the prompt's, y0 + r ⊙ (x − x0) with
    r = y0 / x0, x the norm's input kept as kept[key] by an earlier edit; x0, y0 (T, d) its clean input and output."""
    r = ratio(y0, x0)

    def fn(_y: torch.Tensor) -> torch.Tensor:
        return y0 + r * (kept[key].to(y0) - x0)  # (B, T, d)
    return fn


def _leaf(value: torch.Tensor, skip: torch.Tensor | None = None, kept: dict | None = None, key=None,
          x0: torch.Tensor | None = None):
    def fn(_y: torch.Tensor) -> torch.Tensor:
        return value if skip is None else value + (kept[key] - x0) @ skip
    return fn


def frozen_pass(lm, ids: list[int], clean: Clean, batch: int, skips: list[torch.Tensor | None]) -> Frozen:
    """The frozen replacement model over `batch` copies of the prompt (module docstring); `skips[L]` is layer L's
    W_skip (d, d) or None."""
    L, T = lm.n_layers, len(ids)
    kept: dict = {}
    embed = clean.resid_pre[0].expand(batch, T, -1).clone().requires_grad_(True)  # (B, T, d)
    mlp_out = [clean.mlp_out[layer].expand(batch, T, -1).clone().requires_grad_(True) for layer in range(L)]
    edits: dict = {}
    for layer in range(L):
        pre = [keep(kept, ("pre", layer))]
        edits[f"resid_pre.{layer}"] = [_leaf(embed), *pre] if layer == 0 else pre
        edits[f"attn_in.{layer}"] = frozen_scale(kept, ("pre", layer), clean.resid_pre[layer], clean.attn_in[layer])
        edits[f"q.{layer}"] = detach()
        edits[f"k.{layer}"] = detach()
        edits[f"resid_mid.{layer}"] = keep(kept, ("mid", layer))
        edits[f"mlp_in.{layer}"] = [frozen_scale(kept, ("mid", layer), clean.resid_mid[layer], clean.mlp_in[layer]),
                                    keep(kept, ("in", layer))]
        edits[f"mlp_out.{layer}"] = _leaf(mlp_out[layer], skips[layer], kept, ("in", layer), clean.mlp_in[layer])
    edits[f"resid_post.{L - 1}"] = keep(kept, "last")
    with torch.enable_grad(), intervene(lm, edits, skip_mlp={layer: clean.mlp_out[layer][None] for layer in range(L)}):
        lm.parts.base(input_ids=torch.tensor([ids], device=lm.device).expand(batch, T))
    return Frozen(embed, mlp_out, [kept[("in", layer)] for layer in range(L)], kept["last"])
