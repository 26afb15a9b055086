"""Head ablation: how much the model's next-token loss grows when one attention head's output is removed.

For every (layer l, head h) and kind, effect = loss(ablated) - loss(unablated), where loss is the mean next-token
cross-entropy in nats over every real next token of the given windows (window b of length n_b contributes the
n_b - 1 predictions of its tokens 1..n_b-1; all predictions weigh the same).

The ablation acts on the head's output before the attention output projection (site z.l.h, core.model.sites).
  zero   head h's slice is set to 0 at every position.
  mean   head h's slice is replaced at every position by its mean over all real tokens of the same windows,
         measured in a first, unablated pass.
The windows run as one right-padded batch (causal attention never lets a real token see the padding; padded
positions carry no loss). Blocks before the ablated layer cannot change, so an ablated pass does not recompute them:
those blocks replay the unablated pass's output of block l-1 (core.model.intervene's `replay`) and only blocks
l..L-1 and the unembedding run. Cost: 1 + len(kinds) * L * H passes over the windows, each about (L - l) / L of a full pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from core.data.corpus import sample_windows
from core.model.intervene import fill, store, zero
from core.model.load import LoadedModel
from core.model.run import logits, pad_batch
from core.model.sites import Site

KINDS = ("zero", "mean")


def corpus_windows(lm: LoadedModel, n_tokens: int = 512, context_len: int = 64, corpus: str = "demo"
                   ) -> list[list[int]]:
    """The corpus's first `n_tokens` tokens as windows of at most `context_len` tokens (tokenizer defaults,
    core.data.corpus.sample_windows); windows of one token (no next-token prediction) are left out."""
    return sample_windows(corpus, lm.tokenizer, n_tokens=n_tokens, context_len=context_len, min_len=2)


class HeadAblator:
    """One padded batch of windows, its unablated pass (loss, block outputs, mean head outputs) and ablated losses.

    Keeps every block's unablated output, L x (B, T, d_model) (35 MB for smollm2-135m on 512 tokens)."""

    def __init__(self, lm: LoadedModel, windows: list[list[int]]):
        if not windows or any(len(w) < 2 for w in windows):
            raise ValueError("head ablation needs windows of at least 2 tokens")
        self.lm = lm
        self.n_heads = lm.parts.heads[0]
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        self.ids, valid = pad_batch(windows, pad)  # (B, T)
        self.mask = valid.long()  # (B, T) 1 on real tokens
        self.labels = torch.where(valid, self.ids, -100)[:, 1:]  # (B, T-1) next token or -100
        self.baseline, self.block_out, self.means = self._first_pass()

    def _loss(self, edits=None, replay=None) -> float:
        z = logits(self.lm, self.ids, edits=edits, attention_mask=self.mask, replay=replay)[:, :-1]  # (B, T-1, V)
        return float(torch.nn.functional.cross_entropy(z.flatten(0, 1).float(), self.labels.flatten(),
                                                       ignore_index=-100))

    @torch.inference_mode()
    def _first_pass(self) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
        """Unablated loss, every block's output (B, T, d_model), and each layer's mean head outputs (H, d_head)
        over real tokens."""
        L, got = self.lm.n_layers, {}
        edits = {Site("resid_post", layer): store(got, ("h", layer)) for layer in range(L)}
        edits |= {Site("z", layer): store(got, ("z", layer)) for layer in range(L)}
        loss = self._loss(edits)
        m = self.mask[..., None, None].float()  # (B, T, 1, 1)
        means = [(got["z", layer] * m).sum((0, 1)) / m.sum() for layer in range(L)]  # (H, d_head) each
        return loss, [got["h", layer] for layer in range(L)], means

    @torch.inference_mode()
    def loss(self, layer: int, heads: Sequence[int], kind: str = "zero") -> float:
        """Loss with `heads` of `layer` ablated (`kind`: zero | mean); no heads: the unablated loss, recomputed."""
        if kind not in KINDS:
            raise ValueError(f"unknown ablation kind {kind!r}; kinds: {', '.join(KINDS)}")
        edits = {Site("z", layer, h): zero() if kind == "zero" else fill(self.means[layer][h]) for h in heads}
        replay = (layer, self.block_out[layer - 1]) if layer > 0 else None
        return self._loss(edits, replay)


def head_ablation(lm: LoadedModel, windows: list[list[int]], *, kinds: Sequence[str] = KINDS,
                  layers: Sequence[int] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """kind -> (L, H) change in mean next-token loss (nats) when each head alone is ablated (module docstring).
    `layers`: only these layers (the other rows are NaN). `on_progress(done, total)` after each ablated pass."""
    abl = HeadAblator(lm, windows)
    H = abl.n_heads
    todo = list(range(lm.n_layers)) if layers is None else list(layers)
    out = {k: np.full((lm.n_layers, H), np.nan) for k in kinds}
    total, done = len(kinds) * len(todo) * H, 0
    for layer in todo:
        for head in range(H):
            for kind in kinds:
                out[kind][layer, head] = abl.loss(layer, [head], kind) - abl.baseline
                done += 1
                if on_progress:
                    on_progress(done, total)
    return out
