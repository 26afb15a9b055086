"""Live recomputation for the pages: one unit's activations over given token sequences (context highlighting,
custom text) and one layer's attention patterns on a prompt. Each pass stops after the layer it reads."""

from __future__ import annotations

import numpy as np
import torch

from core.model.intervene import store
from core.model.load import LoadedModel
from core.model.run import forward_until, pad_batch
from core.model.sites import Site


@torch.inference_mode()
def unit_activations(lm: LoadedModel, layer: int, unit: int, seqs: list[list[int]]) -> list[np.ndarray]:
    """The unit's activation at every position of each sequence (one right-padded batch)."""
    if not seqs:
        return []
    ids, _ = pad_batch(seqs)  # (B, T)
    got: dict = {}
    forward_until(lm, ids, layer, edits={Site("neurons", layer): store(got, "a")})
    acts = got["a"][:, :, unit].float().numpy()  # (B, T)
    return [acts[i, : len(s)].copy() for i, s in enumerate(seqs)]


@torch.inference_mode()
def attention_pattern(lm: LoadedModel, layer: int, ids: list[int]) -> np.ndarray:
    """(H, T, T) attention weights of every head of `layer` on one sequence (queries x keys; needs a model loaded
    with eager attention)."""
    got: dict = {}
    forward_until(lm, torch.tensor([ids]), layer, edits={Site("pattern", layer): store(got, "p")})
    return got["p"][0].float().numpy()
