"""Head ablation: how much the model's next-token loss grows when one attention head's output is removed.

For every (layer l, head h) and kind, effect = loss(ablated) - loss(unablated), where loss is the mean next-token
cross-entropy in nats over every real next token of the given windows (window b of length n_b contributes the
n_b - 1 predictions of its tokens 1..n_b-1; all predictions weigh the same).

The ablation acts on the head's output before the attention output projection (site z.l.h, core.model.sites).
  zero   head h's slice is set to 0 at every position.
  mean   head h's slice is replaced at every position by its mean over all real tokens of the same windows,
         measured in a first, unablated pass.
The windows run as one right-padded batch (causal attention never lets a real token see the padding; padded
positions carry no loss); the ablations of one layer run together, as stacked copies of that batch. Blocks before the ablated layer cannot change, so an ablated pass does not recompute them:
those blocks replay the unablated pass's output of block l-1 (core.model.intervene's `replay`) and only blocks
l..L-1 and the unembedding run. Cost: the work of 1 + len(kinds) * L * H passes over the windows, each about (L - l) / L of a
full pass, in about L * ceil(len(kinds) * H * tokens / 4096) batched passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from core.data.corpus import sample_windows
from core.model.intervene import fill, store, zero
from core.model.load import LoadedModel
from core.model.run import forward_until, pad_batch
from core.model.sites import Site

KINDS = ("zero", "mean")


def corpus_windows(lm: LoadedModel, n_tokens: int = 512, context_len: int = 64, corpus: str = "demo"
                   ) -> list[list[int]]:
    """The corpus's first `n_tokens` tokens as windows of at most `context_len` tokens (tokenizer defaults,
    core.data.corpus.sample_windows); windows of one token (no next-token prediction) are left out."""
    return sample_windows(corpus, lm.tokenizer, n_tokens=n_tokens, context_len=context_len, min_len=2)


class HeadAblator:
    """One padded batch of windows, its unablated pass (loss, block outputs, mean head outputs) and ablated losses.

    Keeps every block's unablated output, L x (B, T, d_model) (35 MB for smollm2-135m on 512 tokens). Losses come
    from the last block's output through the model's own final norm and unembedding (core.model.run.unembed), in
    chunks of rows, so no (rows, T, vocab) logits tensor is ever whole; several ablations of one layer run as one
    batch (each a copy of the windows with its own head ablated), replaying the unchanged blocks before it."""

    TOKENS_PER_PASS = 4096
    """Rows x positions per batched pass (how many ablations of a layer share one forward)."""

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

    def _losses(self, copies: int, edits=None, replay=None) -> list[float]:
        """Mean next-token loss of each of `copies` stacked copies of the windows (edits may treat them apart)."""
        from core.model.run import unembed

        B, L, got = self.ids.shape[0], self.lm.n_layers, {}
        ids, mask = self.ids.repeat(copies, 1), self.mask.repeat(copies, 1)  # (copies*B, T)
        edits = dict(edits or {}) | {Site("resid_post", L - 1): store(got, "h")}
        forward_until(self.lm, ids, L - 1, edits=edits, attention_mask=mask, replay=replay)
        h = got["h"][:, :-1]  # (copies*B, T-1, d_model): each position predicts the next token
        labels = self.labels.repeat(copies, 1)  # (copies*B, T-1)
        rows_per = max(1, (1 << 22) // (h.shape[1] * self.lm.model.get_output_embeddings().weight.shape[0]))
        nll = torch.zeros(copies * B, dtype=torch.float64)
        for a in range(0, h.shape[0], rows_per):  # (rows, T-1, V) logits at a time
            z = unembed(self.lm, h[a:a + rows_per])
            ce = torch.nn.functional.cross_entropy(z.flatten(0, 1), labels[a:a + rows_per].flatten(),
                                                   ignore_index=-100, reduction="none")
            nll[a:a + rows_per] = ce.view(z.shape[0], -1).sum(1).double()
        n = int((self.labels != -100).sum())
        return [float(nll[c * B:(c + 1) * B].sum()) / n for c in range(copies)]

    @torch.inference_mode()
    def _first_pass(self) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
        """Unablated loss, every block's output (B, T, d_model), and each layer's mean head outputs (H, d_head)
        over real tokens."""
        L, got = self.lm.n_layers, {}
        edits = {Site("resid_post", layer): store(got, ("h", layer)) for layer in range(L - 1)}
        edits |= {Site("z", layer): store(got, ("z", layer)) for layer in range(L)}
        (loss,) = self._losses(1, edits)
        m = self.mask[..., None, None].float()  # (B, T, 1, 1)
        means = [(got["z", layer] * m).sum((0, 1)) / m.sum() for layer in range(L)]  # (H, d_head) each
        return loss, [got["h", layer] for layer in range(L - 1)], means

    def _replay(self, layer: int, copies: int):
        return (layer, self.block_out[layer - 1].repeat(copies, 1, 1)) if layer > 0 else None

    @torch.inference_mode()
    def loss(self, layer: int, heads: Sequence[int], kind: str = "zero") -> float:
        """Loss with `heads` of `layer` ablated (`kind`: zero | mean); no heads: the unablated loss, recomputed."""
        if kind not in KINDS:
            raise ValueError(f"unknown ablation kind {kind!r}; kinds: {', '.join(KINDS)}")
        edits = {Site("z", layer, h): zero() if kind == "zero" else fill(self.means[layer][h]) for h in heads}
        return self._losses(1, edits, self._replay(layer, 1))[0]

    @torch.inference_mode()
    def layer_losses(self, layer: int, variants: Sequence[tuple[int, str]]) -> list[float]:
        """Loss with each (head, kind) of `variants` ablated alone at `layer`: the variants run as stacked copies of
        the windows in as few passes as TOKENS_PER_PASS allows, each copy with its own head ablated."""
        B, T = self.ids.shape
        per = max(1, self.TOKENS_PER_PASS // (B * T))
        out: list[float] = []
        for a in range(0, len(variants), per):
            group = variants[a:a + per]

            def ablate(z: torch.Tensor, group=group) -> torch.Tensor:  # (copies*B, T, H, d_head)
                y = z.clone()
                for c, (h, kind) in enumerate(group):
                    y[c * B:(c + 1) * B, :, h] = 0 if kind == "zero" else self.means[layer][h].to(y.dtype)
                return y

            out += self._losses(len(group), {Site("z", layer): ablate}, self._replay(layer, len(group)))
        return out


def head_ablation(lm: LoadedModel, windows: list[list[int]], *, kinds: Sequence[str] = KINDS,
                  layers: Sequence[int] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """kind -> (L, H) change in mean next-token loss (nats) when each head alone is ablated (module docstring).
    `layers`: only these layers (the other rows are NaN). `on_progress(done, total)` after each layer, counting
    ablations."""
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown ablation kind {k!r}; kinds: {', '.join(KINDS)}")
    abl = HeadAblator(lm, windows)
    H = abl.n_heads
    todo = list(range(lm.n_layers)) if layers is None else list(layers)
    out = {k: np.full((lm.n_layers, H), np.nan) for k in kinds}
    total, done = len(kinds) * len(todo) * H, 0
    for layer in todo:
        variants = [(head, kind) for head in range(H) for kind in kinds]
        for (head, kind), loss in zip(variants, abl.layer_losses(layer, variants), strict=True):
            out[kind][layer, head] = loss - abl.baseline
        done += len(variants)
        if on_progress:
            on_progress(done, total)
    return out
