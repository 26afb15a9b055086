"""Logit effects against a hand-written formula per architecture and against the model's own forward."""

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model

from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.units.logit_effects import logit_effects


def wrap(model):
    return LoadedModel(name="tiny", source="config", model=model, tokenizer=None, parts=find_parts(model))


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_matches_hand_formula(arch):
    model = tiny_model(arch)
    with torch.no_grad():  # random gains so that a missing gain would be caught
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.3)
    lm = wrap(model)
    layer, unit = 1, 7
    if arch == "llama":
        g, w = model.model.norm.weight, model.model.layers[layer].mlp.down_proj.weight[:, unit]
    elif arch == "gemma3":
        g, w = 1 + model.model.norm.weight, model.model.layers[layer].mlp.down_proj.weight[:, unit]
    else:
        g, w = model.transformer.ln_f.weight, model.transformer.h[layer].mlp.c_proj.weight[unit]
    want = (model.get_output_embeddings().weight @ (g * w)).detach().numpy()
    got = logit_effects(lm, layer, unit, k=5)
    np.testing.assert_allclose(got.values, want, rtol=1e-5, atol=1e-6)
    assert list(got.top_ids) == list(np.argsort(-want)[:5])
    assert list(got.bottom_ids) == list(np.argsort(want)[:5])


def test_direction_is_what_the_neuron_writes():
    """Adding the unit's activation * direction is exactly what the MLP output changes by (bias-free Llama)."""
    model = tiny_model("llama")
    lm = wrap(model)
    from core.units.logit_effects import output_direction

    acts = torch.zeros(1, 1, lm.parts.d_mlp)
    acts[0, 0, 3] = 2.5
    torch.testing.assert_close(lm.parts.mlp_down[0](acts)[0, 0], 2.5 * output_direction(lm, 0, 3))


def test_out_of_range():
    lm = wrap(tiny_model("llama"))
    with pytest.raises(ValueError, match="no unit"):
        logit_effects(lm, 0, 10_000)
