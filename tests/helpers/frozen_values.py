"""A hand-written Llama forward pass whose norm scales and attention patterns can be frozen by value: the first run
records each RMSNorm's 1/rms and each attention pattern, a second run given that record reuses them. Independent of
the intervention layer (it reads the modules' weights and never hooks), for checking the frozen replacement model's
measured interventions (core.circuits.passes)."""

import math

import torch


def _rms(x: torch.Tensor, norm, rec: dict, key, frozen: bool) -> torch.Tensor:
    """w ⊙ x · s with s = 1/sqrt(mean(x²) + eps), or the recorded s when frozen. x (1, T, d)."""
    if not frozen:
        rec[key] = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * (x * rec[key])


def llama_by_hand(lm, ids: list[int], mlp_out, rec: dict, frozen: bool = False):
    """Run the model from its token embeddings with `mlp_out(layer, mlp_in (T, d)) -> (T, d)`; norm scales and
    patterns recorded into `rec` (frozen=False) or read from it (frozen=True). Returns ([mlp_in per layer],
    last-position logits (V,))."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model, cfg = lm.model, lm.model.config
    T = len(ids)
    x = model.model.embed_tokens(torch.tensor([ids]))  # (1, T, d)
    d = x.shape[-1]
    H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    dh = d // H
    cos, sin = model.model.rotary_emb(x, torch.arange(T)[None])
    mask = torch.full((T, T), float("-inf")).triu(1)  # causal
    ins = []
    for i, layer in enumerate(model.model.layers):
        att = layer.self_attn
        n1 = _rms(x, layer.input_layernorm, rec, ("n1", i), frozen)
        v = (n1 @ att.v_proj.weight.T).view(1, T, Hkv, dh).transpose(1, 2)  # (1, Hkv, T, dh)
        if not frozen:
            q = (n1 @ att.q_proj.weight.T).view(1, T, H, dh).transpose(1, 2)  # (1, H, T, dh)
            k = (n1 @ att.k_proj.weight.T).view(1, T, Hkv, dh).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k = k.repeat_interleave(H // Hkv, dim=1)
            rec[("pattern", i)] = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + mask, dim=-1)  # (1,H,T,T)
        z = (rec[("pattern", i)] @ v.repeat_interleave(H // Hkv, dim=1)).transpose(1, 2).reshape(1, T, d)
        x = x + z @ att.o_proj.weight.T
        n2 = _rms(x, layer.post_attention_layernorm, rec, ("n2", i), frozen)[0]  # (T, d)
        ins.append(n2)
        x = x + mlp_out(i, n2)[None]
    final = _rms(x, model.model.norm, rec, "final", frozen)[0]  # (T, d)
    return ins, model.lm_head(final[-1])
