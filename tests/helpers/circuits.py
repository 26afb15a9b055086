"""Tiny models and transcoder sets for the attribution-graph tests (core.circuits)."""

import numpy as np
import torch

from core.circuits.graph import Graph
from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.saes.sae import SAE
from helpers.tiny import tiny_tokenizer


def relu_llama(layers: int = 3, d: int = 64, d_mlp: int = 128, seed: int = 0):
    """A tiny random Llama whose MLPs are plain ReLU MLPs, W_down relu(W_gate x + b_gate) + b_down (the gated
    up-projection fixed at 1 by weight 0 and bias 1): a transcoder equal to the MLP exists."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=d, intermediate_size=d_mlp, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300, max_position_embeddings=64, hidden_act="relu",
                      mlp_bias=True, bos_token_id=0, pad_token_id=1)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval().requires_grad_(False)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.up_proj.weight.zero_()
            layer.mlp.up_proj.bias.fill_(1.0)
            layer.mlp.gate_proj.bias.normal_(0, 0.5)
            layer.mlp.down_proj.bias.normal_(0, 0.1)
            layer.input_layernorm.weight.normal_(1, 0.2)
            layer.post_attention_layernorm.weight.normal_(1, 0.2)
        model.model.norm.weight.normal_(1, 0.2)
    return LoadedModel(name="relu-llama", source="test", model=model, tokenizer=tiny_tokenizer(),
                       parts=find_parts(model))


def mlp_as_transcoders(lm) -> list[SAE]:
    """One 'transcoder' per layer that is that layer's MLP itself: W_enc = W_gateᵀ, W_dec = W_downᵀ."""
    out = []
    for i, layer in enumerate(lm.model.model.layers):
        m = layer.mlp
        out.append(SAE(W_enc=m.gate_proj.weight.T.clone(), b_enc=m.gate_proj.bias.clone(),
                       W_dec=m.down_proj.weight.T.clone(), b_dec=m.down_proj.bias.clone(), activation="relu",
                       b_dec_in=False, site=f"mlp_in.{i}", out_site=f"mlp_out.{i}"))
    return out


def random_transcoders(lm, d_tc: int = 96, seed: int = 1, k: int | None = None) -> list[SAE]:
    """Random per-layer transcoders (TopK when k is given): their error nodes are large, which the exactness
    tests want."""
    g = torch.Generator().manual_seed(seed)
    d = lm.parts.d_model
    out = []
    for i in range(lm.n_layers):
        out.append(SAE(W_enc=torch.randn(d, d_tc, generator=g) / d ** 0.5, b_enc=torch.randn(d_tc, generator=g) * 0.1,
                       W_dec=torch.randn(d_tc, d, generator=g) / d_tc ** 0.5, b_dec=torch.randn(d, generator=g) * 0.1,
                       activation="topk" if k else "relu", k=k, b_dec_in=False, site=f"mlp_in.{i}",
                       out_site=f"mlp_out.{i}"))
    return out


def topk_transcoders(layers, seed: int, d: int = 64, d_tc: int = 40, k: int = 6) -> list[SAE]:
    """One random TopK transcoder (mlp_in.L -> mlp_out.L) per layer, for a model of width d."""
    g = torch.Generator().manual_seed(seed)
    return [SAE(torch.randn(d, d_tc, generator=g) * 0.3, torch.randn(d_tc, generator=g) * 0.1,
                torch.randn(d_tc, d, generator=g), torch.randn(d, generator=g) * 0.1, activation="topk", k=k,
                b_dec_in=False, site=f"mlp_in.{L}", out_site=f"mlp_out.{L}") for L in layers]


def random_graph(seed: int, F: int = 30, L: int = 2, T: int = 4, K: int = 3) -> Graph:
    """A random DAG in the node order of an attribution graph: features are ordered by layer; sources come before
    targets; error and token rows are empty; logits read features, errors and tokens."""
    rng = np.random.default_rng(seed)
    N = F + (L + 1) * T + K
    A = np.zeros((N, N), np.float32)
    srcs = list(range(F, F + (L + 1) * T))  # errors and tokens
    for i in range(F):  # feature i reads tokens, errors and earlier features
        pool = srcs + list(range(i))
        pick = rng.choice(pool, size=min(6, len(pool)), replace=False)
        A[i, pick] = rng.normal(size=len(pick)) * rng.exponential(size=len(pick))
    for k in range(K):
        pick = rng.choice(F + (L + 1) * T, size=15, replace=False)
        A[N - K + k, pick] = rng.normal(size=15)
    active = torch.tensor([[i % L, 1 + i % (T - 1), i] for i in range(F)])
    return Graph(prompt="x", tokens=list(range(T)), token_strs=["t"] * T, n_layers=L, active=active,
                 activations=torch.ones(F), selected=torch.arange(F), adjacency=torch.tensor(A),
                 logit_ids=list(range(K)), logit_strs=["l"] * K,
                 logit_probs=torch.tensor(rng.dirichlet(np.ones(K)) * 0.9, dtype=torch.float32))
