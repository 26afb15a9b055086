"""Activations for SAEs, streamed from the model: a site's activation on corpus tokens, a bounded shuffling buffer,
and the held-out split.

Split: the corpus is cut into windows by the one windowing rule (core.data.corpus.document_windows); a window is held
out when a hash of (doc_id, start) falls in one of `HOLDOUT_EVERY` buckets (`held_out`: about 1 in 16, the same
windows whether the corpus is read here or during an extraction that caches activations; quality numbers are measured
there, never trained on), the rest are training windows, read again in a new order when a run asks for more tokens than the corpus has (an epoch). Special tokens
(BOS/EOS) feed the model as context but are never SAE inputs: their activations are outliers that no feature
should spend capacity on (SAEDashboard #46).
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def held_out(doc_id: int, start: int) -> bool:
    """Whether the window of document `doc_id` starting at token `start` is held out (about 1 in HOLDOUT_EVERY)."""
    return zlib.crc32(f"{doc_id}:{start}".encode()) % HOLDOUT_EVERY == 0


def split_corpus(corpus: str, tokenizer, *, context_len: int, max_tokens: int | None = None) -> Split:
    """The corpus's windows (the first `max_tokens` tokens, None: all), split by `held_out`."""
    c = Corpus(corpus)
    c.validate()
    wins = [w for *_, ws in document_windows(c.documents(), tokenizer, context_len=context_len,
                                             max_tokens=max_tokens) for w in ws]
    return Split([w for w in wins if not held_out(w.doc_id, w.start)], [w for w in wins if held_out(w.doc_id, w.start)])


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
        yield [flat(got[i]).float()[keep.to(got[i].device)] for i in range(len(sites))]


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


# ---- an activation cache written during an extraction pass (extract --capture) -------------------------------------
def cache_info(folder: str | Path) -> dict | None:
    """The cache's description ({model, site, corpus, context_len, d}) if the cache is complete, else None."""
    f = Path(folder) / "cache.json"
    if not f.exists() or not (Path(folder) / "complete").exists():
        return None
    return json.loads(f.read_text(encoding="utf-8"))


def load_cache(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows (n, d) float32, held-out rows (m, d) float32) of a complete cache."""
    from safetensors.torch import load_file

    xs, hs = [], []
    for f in sorted(Path(folder).glob("tok*.safetensors")):
        t = load_file(str(f))
        held = t["held"].bool()
        xs.append(t["x"][~held].float())
        hs.append(t["x"][held].float())
    return torch.cat(xs), torch.cat(hs)


def next_windows(windows: Iterator, n_tokens: int) -> list:
    """Windows drawn from an endless iterator until they hold at least `n_tokens` tokens (none left behind)."""
    out, n = [], 0
    while n < n_tokens:
        w = next(windows)
        out.append(w)
        n += len(w.ids)
    return out


def take_windows(windows: list, n_tokens: int) -> list:
    """The first windows holding at least `n_tokens` tokens in all (all of them if they hold fewer)."""
    out, n = [], 0
    for w in windows:
        if n >= n_tokens:
            break
        out.append(w)
        n += len(w.ids)
    return out
