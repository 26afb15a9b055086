"""Model parts found by structure, checked against the module names each architecture really uses."""

import pytest
import torch

from core.model.parts import PartPaths, StructureError, find_parts, in_out, io_dims


def test_structure_found(tiny):
    parts = find_parts(tiny)
    assert len(parts.layers) == 3 and parts.d_model == 64
    assert parts.d_mlp in (96, 128, 256)
    assert parts.final_norm is not None
    assert all(any(m is d for m in mlp.modules()) for mlp, d in zip(parts.mlp, parts.mlp_down, strict=True))
    H, H_kv, dh = parts.heads
    assert H == 4 and H * dh == io_dims(parts.o_proj(0))[0]


NORMS = {"llama": (None, "post_attention_layernorm", None),
         "gemma3": ("post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"),
         "gpt2": (None, "ln_2", None)}


@pytest.mark.parametrize("arch", list(NORMS))
def test_norms_from_call_order(arch):
    from helpers.tiny import tiny_model

    model = tiny_model(arch)
    parts = find_parts(model)
    block = parts.layers[1]
    names = {id(m): n for n, m in block.named_children()}
    n = parts.norms(1)
    got = tuple(None if m is None else names[id(m)] for m in (n.post_attn, n.mlp_in, n.post_mlp))
    assert got == NORMS[arch]
    assert parts.block_returns_tuple is False  # transformers 5 blocks return the stream alone


def test_in_out_orientation():
    """nn.Linear stores (out, in), GPT-2's Conv1D (in, out); in_out gives (in, out) for both, and x @ W + b is the
    module's own output."""
    from helpers.tiny import tiny_model

    for arch in ("llama", "gpt2"):
        parts = find_parts(tiny_model(arch))
        down = parts.mlp_down[0]
        x = torch.randn(5, parts.d_mlp)
        b = down.bias if getattr(down, "bias", None) is not None else 0
        torch.testing.assert_close(x @ in_out(down) + b, down(x))


def test_explicit_paths_override_the_finder(tiny_lm_dir):
    from core.model.load import load_model

    lm = load_model(str(tiny_lm_dir), paths=PartPaths(layers="model.layers", mlp_down="mlp.down_proj",
                                                       attn="self_attn"))
    assert lm.parts.mlp_down[0] is lm.model.model.layers[0].mlp.down_proj
    assert lm.parts.attn[2] is lm.model.model.layers[2].self_attn
    with pytest.raises(StructureError):
        find_parts(lm.model, PartPaths(layers="model.embed_tokens"))
