"""Live unit activations equal the captured activations of plain single-sequence forward passes."""

import torch
from helpers.tiny import tiny_model

from core.model.load import LoadedModel
from core.model.parts import capture, find_hook_points
from core.units.live import unit_activations


def test_batched_equals_single_forward():
    model = tiny_model("llama")
    lm = LoadedModel(name="t", source="c", model=model, tokenizer=None, points=find_hook_points(model))
    seqs = [[5, 9, 2, 200, 17], [3, 4], [100, 101, 102]]
    got = unit_activations(lm, 1, 11, seqs)
    for s, g in zip(seqs, got, strict=True):
        with torch.inference_mode(), capture(lm.points, mlp=[1]) as st:
            model(torch.tensor([s]))
        torch.testing.assert_close(torch.from_numpy(g), st["mlp"][1][0, :, 11], atol=1e-5, rtol=1e-5)
