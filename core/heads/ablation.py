"""Head ablation: how much the model's next-token loss grows when one attention head's output is removed.

For every (layer l, head h) and kind, effect = loss(ablated) - loss(unablated), where loss is the mean next-token
cross-entropy in nats over every real next token of the given windows (window b of length n_b contributes the
n_b - 1 predictions of its tokens 1..n_b-1; all predictions weigh the same).

The ablation acts on the input of the attention output projection (o_proj / c_proj), which is the heads' outputs
concatenated, (B, T, H*d_head): head h owns columns [h*d_head, (h+1)*d_head).
  zero   head h's slice is set to 0 at every position.
  mean   head h's slice is replaced at every position by its mean over all real tokens of the same windows,
         measured in a first, unablated pass.
The windows run as one right-padded batch (causal attention never lets a real token see the padding; padded
positions carry no loss). Blocks before the ablated layer cannot change, so an ablated pass does not recompute them:
those blocks return the unablated pass's output of block l-1 (kept from the first pass) and only blocks l..L-1 and
the unembedding run. Cost: 1 + len(kinds) * L * H passes over the windows, each about (L - l) / L of a full pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from core.data.corpus import Corpus, tokenize, windows_of
from core.heads.roles import head_counts, o_map
from core.model.load import LoadedModel

KINDS = ("zero", "mean")


def corpus_windows(lm: LoadedModel, n_tokens: int = 512, context_len: int = 64) -> list[list[int]]:
    """Windows of the demo corpus: documents in order, tokenized with the tokenizer's defaults, each cut into
    contiguous windows of at most `context_len` tokens (core.data.corpus.windows_of), until `n_tokens` tokens (the last
    window cut short). Windows of one token (no next-token prediction) are skipped."""
    out, total = [], 0
    for doc_id, text in enumerate(Corpus("demo").documents()):
        for w in windows_of(doc_id, tokenize(lm.tokenizer, text), context_len, 0):
            ids = w.ids[: n_tokens - total]
            if len(ids) >= 2:
                out.append(ids)
                total += len(ids)
            if total >= n_tokens:
                return out
    return out


class HeadAblator:
    """One padded batch of windows, its unablated pass (loss, block outputs, mean head outputs) and ablated losses.

    Keeps every block's unablated output, L x (B, T, d_model) (35 MB for smollm2-135m on 512 tokens)."""

    def __init__(self, lm: LoadedModel, windows: list[list[int]]):
        if not windows or any(len(w) < 2 for w in windows):
            raise ValueError("head ablation needs windows of at least 2 tokens")
        self.lm = lm
        self.n_heads, _, self.d_head = head_counts(lm)
        T = max(len(w) for w in windows)
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        self.ids = torch.full((len(windows), T), pad, dtype=torch.long)  # (B, T)
        self.mask = torch.zeros((len(windows), T), dtype=torch.long)  # (B, T) 1 on real tokens
        for b, w in enumerate(windows):
            self.ids[b, : len(w)], self.mask[b, : len(w)] = torch.tensor(w), 1
        self.labels = torch.where(self.mask.bool(), self.ids, -100)[:, 1:]  # (B, T-1) next token or -100
        self.baseline, self.block_out, self.means = self._first_pass()

    def _loss(self) -> float:
        logits = self.lm.model(input_ids=self.ids, attention_mask=self.mask).logits[:, :-1]  # (B, T-1, V)
        return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), self.labels.flatten(),
                                                       ignore_index=-100))

    @torch.inference_mode()
    def _first_pass(self) -> tuple[float, list, list[torch.Tensor]]:
        """Unablated loss, every block's output object, and each layer's mean o-map input (H*d_head,)."""
        L, m = self.lm.n_layers, self.mask[..., None].float()  # (B, T, 1)
        outs, means, handles = [None] * L, [None] * L, []

        def keep_out(layer):
            def hook(_m, _inp, out):
                outs[layer] = out
            return hook

        def keep_mean(layer):
            def hook(_m, inp):
                means[layer] = (inp[0] * m).sum((0, 1)) / m.sum()  # (H*d_head,) over real tokens
            return hook

        try:
            for layer in range(L):
                handles.append(self.lm.points.layers[layer].register_forward_hook(keep_out(layer)))
                handles.append(o_map(self.lm, layer).register_forward_pre_hook(keep_mean(layer)))
            loss = self._loss()
        finally:
            for h in handles:
                h.remove()
        return loss, outs, means

    @contextmanager
    def _skip_before(self, layer: int):
        """Blocks 0..layer-1 return the unablated output of block layer-1 without computing anything."""
        if layer == 0:
            yield
            return
        cached = self.block_out[layer - 1]
        blocks = self.lm.points.layers[:layer]

        def replay(*_args, **_kwargs):
            return cached.clone() if isinstance(cached, torch.Tensor) else cached

        try:
            for b in blocks:
                b.forward = replay  # instance attribute shadows the class's forward; hooks still run
            yield
        finally:
            for b in blocks:
                b.__dict__.pop("forward", None)

    @torch.inference_mode()
    def loss(self, layer: int, heads: Sequence[int], kind: str = "zero") -> float:
        """Loss with `heads` of `layer` ablated (`kind`: zero | mean); no heads: the unablated loss, recomputed."""
        if kind not in KINDS:
            raise ValueError(f"unknown ablation kind {kind!r}; kinds: {', '.join(KINDS)}")
        dh = self.d_head
        cols = [c for h in heads for c in range(h * dh, (h + 1) * dh)]
        fill = torch.zeros(len(cols)) if kind == "zero" else self.means[layer][cols]  # (len(cols),)

        def replace(_m, inp):
            x = inp[0].clone()  # (B, T, H*d_head)
            x[..., cols] = fill.to(x.dtype)
            return (x, *inp[1:])

        handle = o_map(self.lm, layer).register_forward_pre_hook(replace)
        try:
            with self._skip_before(layer):
                return self._loss()
        finally:
            handle.remove()


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
