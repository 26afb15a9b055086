"""Live unit activations equal the captured activations of plain single-sequence forward passes."""

import torch
from helpers.raw import neurons
from helpers.tiny import tiny_model

from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.units.live import unit_activations


def test_batched_equals_single_forward():
    model = tiny_model("llama")
    lm = LoadedModel(name="t", source="c", model=model, tokenizer=None, parts=find_parts(model))
    seqs = [[5, 9, 2, 200, 17], [3, 4], [100, 101, 102]]
    got = unit_activations(lm, 1, 11, seqs)
    for s, g in zip(seqs, got, strict=True):
        torch.testing.assert_close(torch.from_numpy(g), neurons(lm, s, 1)[:, 11], atol=1e-5, rtol=1e-5)
