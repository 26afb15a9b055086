"""Live recomputation for the pages: one unit's activations over given token sequences (context highlighting,
custom text) and one layer's attention patterns on a prompt."""

from __future__ import annotations

import numpy as np
import torch

from core.model.load import LoadedModel
from core.model.parts import StopForward, capture


@torch.inference_mode()
def unit_activations(lm: LoadedModel, layer: int, unit: int, seqs: list[list[int]]) -> list[np.ndarray]:
    """The unit's activation at every position of each sequence (right-padded batch, stops after `layer`)."""
    if not seqs:
        return []
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)  # (B, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    with capture(lm.points, mlp=[layer], stop_after=layer) as st:
        try:
            lm.points.base(input_ids=ids)
        except StopForward:
            pass
    acts = st["mlp"][layer][:, :, unit].float().numpy()  # (B, T)
    return [acts[i, : len(s)].copy() for i, s in enumerate(seqs)]


def text_activations(lm: LoadedModel, layer: int, unit: int, text: str) -> tuple[list[str], np.ndarray]:
    """Tokens (display strings) of `text` under the tokenizer's defaults and the unit's activation on each."""
    ids = list(lm.tokenizer(text)["input_ids"])
    if not ids:
        return [], np.zeros(0, np.float32)
    (acts,) = unit_activations(lm, layer, unit, [ids])
    return [lm.tokenizer.decode([i]) for i in ids], acts


@torch.inference_mode()
def attention_pattern(lm: LoadedModel, layer: int, ids: list[int]) -> np.ndarray:
    """(H, T, T) attention weights of every head of `layer` on one sequence (queries x keys; needs a model loaded
    with eager attention); the pass stops after that layer."""
    with capture(lm.points, attn_pattern=[layer], stop_after=layer) as st:
        try:
            lm.points.base(input_ids=torch.tensor([ids]))
        except StopForward:
            pass
    return st["attn_pattern"][layer][0].float().numpy()
