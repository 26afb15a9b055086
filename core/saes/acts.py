"""Activations for SAEs, streamed from the model: a site's activation on corpus tokens, a bounded shuffling buffer,
and the held-out split.

Split: the corpus is cut into windows by the one windowing rule (core.data.corpus.document_windows); every
`HOLDOUT_EVERY`-th window is held out (quality numbers are measured there, never trained on), the rest are training
windows, read again in a new order when a run asks for more tokens than the corpus has (an epoch). Special tokens
(BOS/EOS) feed the model as context but are never SAE inputs: their activations are outliers that no feature
should spend capacity on (SAEDashboard #46).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.data.corpus import Corpus, Window, batches, document_windows
from core.model.intervene import store
from core.model.run import forward_until, pad_batch
from core.model.sites import Site

HOLDOUT_EVERY = 16


@dataclass
class Split:
    train: list[Window]
    held_out: list[Window]

    def train_tokens(self) -> int:
        return sum(len(w.ids) for w in self.train)

    def held_out_tokens(self) -> int:
        return sum(len(w.ids) for w in self.held_out)


def split_corpus(corpus: str, tokenizer, *, context_len: int, max_tokens: int | None = None) -> Split:
    """The corpus's windows (the first `max_tokens` tokens, None: all), every HOLDOUT_EVERY-th held out."""
    c = Corpus(corpus)
    c.validate()
    wins = [w for *_, ws in document_windows(c.documents(), tokenizer, context_len=context_len,
                                             max_tokens=max_tokens) for w in ws]
    return Split([w for i, w in enumerate(wins) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1],
                 [w for i, w in enumerate(wins) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1])


def flat(x: torch.Tensor) -> torch.Tensor:
    """A site's activation (B, T, ...) -> (B, T, width): z's heads side by side."""
    return x.reshape(*x.shape[:2], -1)


def counted_mask(ids: torch.Tensor, valid: torch.Tensor, special: set[int]) -> torch.Tensor:
    """(B, T) real tokens that are not special."""
    if not special:
        return valid
    return valid & ~torch.isin(ids, torch.tensor(sorted(special)))


@torch.inference_mode()
def site_batches(lm, windows: list[Window], sites: list[Site], *, batch_tokens: int = 4096
                 ) -> Iterator[list[torch.Tensor]]:
    """For each model batch of `windows`: [activation at each site, (n, width) float32] over its counted tokens."""
    special = set(lm.tokenizer.all_special_ids)
    last = max(s.layer for s in sites)
    for batch in batches(windows, batch_tokens):
        ids, valid = pad_batch([w.ids for w in batch])
        got: dict = {}
        forward_until(lm, ids, last, edits={s: store(got, i) for i, s in enumerate(sites)}, attention_mask=valid)
        keep = counted_mask(ids, valid, special)
        yield [flat(got[i]).float()[keep] for i in range(len(sites))]


def epochs(windows: list[Window], seed: int) -> Iterator[Window]:
    """The windows again and again, each epoch in a new seeded order."""
    rng = random.Random(seed)
    while True:
        order = list(windows)
        rng.shuffle(order)
        yield from order


class ShuffleBuffer:
    """A bounded shuffling buffer of (input, target) rows: filled to `capacity` rows, its rows are given out in
    random order in batches until half remain, then it is filled again. Memory: capacity × (d_in + d_out) floats."""

    def __init__(self, capacity: int, d_in: int, d_out: int, seed: int = 0) -> None:
        self.x = torch.empty(capacity, d_in)  # (capacity, d_in)
        self.y = torch.empty(capacity, d_out) if d_out else None  # (capacity, d_out) for a transcoder
        self.n, self.capacity = 0, capacity
        self.gen = torch.Generator().manual_seed(seed)

    def add(self, x: torch.Tensor, y: torch.Tensor | None = None) -> int:
        """Rows that did not fit (the caller adds them after the next `drain`)."""
        take = min(len(x), self.capacity - self.n)
        self.x[self.n: self.n + take] = x[:take]
        if self.y is not None:
            self.y[self.n: self.n + take] = y[:take]
        self.n += take
        return take

    @property
    def full(self) -> bool:
        return self.n >= self.capacity

    def drain(self, batch: int, keep_half: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Random batches of `batch` rows until about half the buffer is left (keep_half), or every row (the last
        batch may be smaller)."""
        perm = torch.randperm(self.n, generator=self.gen)
        n_out = (self.n - self.n // 2) // batch * batch if keep_half else self.n
        for i in range(0, n_out, batch):
            idx = perm[i: min(i + batch, n_out)]
            yield self.x[idx], None if self.y is None else self.y[idx]
        rest = perm[n_out:]
        self.x[: len(rest)] = self.x[rest].clone()
        if self.y is not None:
            self.y[: len(rest)] = self.y[rest].clone()
        self.n = len(rest)
