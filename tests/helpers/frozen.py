"""A hand-written frozen Llama forward pass, independent of the intervention layer: RMSNorm with its scale
detached, attention with its softmax pattern detached, and MLP outputs supplied by the caller. Used to check the
attribution graph's edges (core.circuits) against plain autograd."""

import math

import torch


def rms_frozen(x: torch.Tensor, norm) -> torch.Tensor:
    """w ⊙ x / sqrt(mean(x²) + eps), the mean detached. x (..., d)."""
    var = x.pow(2).mean(-1, keepdim=True).detach()
    return norm.weight * (x * torch.rsqrt(var + norm.variance_epsilon))


def frozen_llama(lm, ids: list[int], embed: torch.Tensor, mlp_out):
    """Run the frozen model from `embed` (T, d) with `mlp_out(layer, mlp_in (T, d)) -> (T, d)`; returns
    (mlp_in per layer [(T, d)], final norm output (T, d))."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model, cfg = lm.model, lm.model.config
    T, d = embed.shape
    H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    dh = d // H
    x = embed[None]  # (1, T, d)
    cos, sin = model.model.rotary_emb(x, torch.arange(T)[None])
    mask = torch.full((T, T), float("-inf")).triu(1)  # causal
    ins = []
    for layer_idx, layer in enumerate(model.model.layers):
        att = layer.self_attn
        n1 = rms_frozen(x, layer.input_layernorm)  # (1, T, d)
        q = (n1 @ att.q_proj.weight.T).view(1, T, H, dh).transpose(1, 2)  # (1, H, T, dh)
        k = (n1 @ att.k_proj.weight.T).view(1, T, Hkv, dh).transpose(1, 2)  # (1, Hkv, T, dh)
        v = (n1 @ att.v_proj.weight.T).view(1, T, Hkv, dh).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)  # (1, H, T, dh)
        pattern = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + mask, dim=-1).detach()  # (1, H, T, T)
        z = (pattern @ v).transpose(1, 2).reshape(1, T, H * dh)
        x = x + z @ att.o_proj.weight.T
        n2 = rms_frozen(x, layer.post_attention_layernorm)[0]  # (T, d)
        ins.append(n2)
        x = x + mlp_out(layer_idx, n2)[None]
    return ins, rms_frozen(x, model.model.norm)[0]
