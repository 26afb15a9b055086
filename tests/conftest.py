"""Shared fixtures: tiny random-initialised models built from configs, a fixed seed, offline mode."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def tiny_config(arch: str):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

    if arch == "llama":
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)
    if arch == "gemma3":
        return Gemma3TextConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=16, vocab_size=300, max_position_embeddings=256,
                                sliding_window=8, layer_types=["sliding_attention", "sliding_attention",
                                                               "full_attention"], final_logit_softcapping=30.0)
    if arch == "gpt2":
        return GPT2Config(n_embd=64, n_layer=3, n_head=4, vocab_size=300, n_positions=256, bos_token_id=0,
                          eos_token_id=0)
    raise ValueError(arch)


def tiny_model(arch: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation="eager")
    return model.eval().requires_grad_(False)


@pytest.fixture(params=["llama", "gemma3", "gpt2"])
def tiny(request):
    return tiny_model(request.param)
