"""A neuron's direct effect on the logits: its output direction (down-projection column) through the unembedding.

effect = W_U @ (g * w_out), where w_out (d_model,) is the neuron's column of the down projection and g the final
norm's elementwise gain (RMSNorm: the scale as the module applies it, so Gemma's `1 + weight` is handled by running
the module on a ones vector; LayerNorm: its weight). The norm's position-dependent 1/rms factor is left out, as
usual for "direct logit attribution" views: ranks and signs are what the view shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.model.load import LoadedModel
from core.model.parts import in_out


@dataclass
class LogitEffects:
    values: np.ndarray  # (V,) float32 effect on every token's logit
    top_ids: np.ndarray  # (k,) most promoted token ids, strongest first
    bottom_ids: np.ndarray  # (k,) most suppressed, strongest first

    def __post_init__(self) -> None:
        assert self.values.ndim == 1 and self.top_ids.shape == self.bottom_ids.shape


def output_direction(lm: LoadedModel, layer: int, unit: int) -> torch.Tensor:
    """(d_model,) the neuron's write direction: its row of the down projection as (in, out) = (d_mlp, d_model)."""
    return in_out(lm.parts.mlp_down[layer])[unit].detach().float()


def final_gain(lm: LoadedModel) -> torch.Tensor:
    """(d_model,) elementwise gain of the final norm (ones if none)."""
    norm, d = lm.parts.final_norm, lm.parts.d_model
    if norm is None:
        return torch.ones(d)
    if getattr(norm, "bias", None) is not None:  # LayerNorm: (x - mean) / std * weight + bias
        return norm.weight.detach().float()
    with torch.inference_mode():
        return norm(torch.ones(1, d, dtype=norm.weight.dtype)).float()[0]  # RMSNorm of ones = its gain


@torch.inference_mode()
def logit_effects(lm: LoadedModel, layer: int, unit: int, k: int = 10) -> LogitEffects:
    if not 0 <= layer < lm.n_layers or not 0 <= unit < lm.parts.d_mlp:
        raise ValueError(f"no unit {unit} in layer {layer} (layers 0-{lm.n_layers - 1}, units 0-{lm.parts.d_mlp - 1})")
    return direction_effects(lm, output_direction(lm, layer, unit), k)


@torch.inference_mode()
def direction_effects(lm: LoadedModel, direction: torch.Tensor, k: int = 10) -> LogitEffects:
    """Effects of any residual-stream direction (d_model,) on the logits (neurons, SAE decoder rows, ...)."""
    W_U = lm.model.get_output_embeddings().weight.float()  # (V, d_model)
    vals = (W_U @ (final_gain(lm) * direction.float())).numpy()  # (V,)
    order = np.argsort(vals, kind="stable")
    return LogitEffects(values=vals, top_ids=order[::-1][:k].copy(), bottom_ids=order[:k].copy())
