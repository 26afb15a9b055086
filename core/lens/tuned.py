"""Tuned lens (Belrose et al. 2023): one learned affine translator per block, trained so that the lens
through it matches the model's own output distribution.

For block output h_l (l = 0..L-2) the translator is h' = h + A_l h + b_l, with A_l and b_l initialised to zero
(so an untrained lens is exactly the logit lens); the last block needs none, since final_norm(h_{L-1}) already
gives the model's logits. All translators train jointly with the model frozen, on the loss

    sum over l of  mean over tokens of  KL(p_final || p_l),   p_l = softmax(unembed(h_l + A_l h_l + b_l))

where p_final is the model's output distribution at the same position and `unembed` is core.model.run.unembed
(final norm, output embedding, soft-capping).

Optimizer: the paper uses SGD with Nesterov momentum (lr 1.0, 250 steps of 2^18 tokens). A CPU affords tens of
steps of a few hundred tokens, where Adam converges much faster, so AdamW (lr 1e-3) is the default and the
paper's SGD is `optimizer="sgd"`. Both clip the gradient norm to 1 (as the reference code) and use a linear
warmup over the first 10% of steps, then a linear decay.

Memory is bounded by one batch's residual streams (L, n, d_model) plus one sub-batch of logits (about
LOGIT_ELEMENTS floats), whatever the vocabulary. Time: two (n, d_model) x (d_model, V) products per block and
step dominate, so training costs ~ tokens x L x d_model x V (the model's own forward is ~10% of it).

The lens store (`store_dir`, `save_tuned_lens`, `load_tuned_lens`) is core.lens.store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from core.data.corpus import Corpus, Window, batches, iter_chunks
from core.errors import UserError
from core.model.intervene import store
from core.model.load import LoadedModel
from core.model.run import forward_until, pad_batch, unembed
from core.model.sites import Site

LOGIT_ELEMENTS = 1 << 23
"""Logits (tokens x vocab) computed at once per block: 32 MB of float32 (a few times that with gradients)."""


class TunedLensError(UserError):
    """Bad tuned-lens input (config, corpus too small, a stored lens for another model); one line."""


class TunedLens(nn.Module):
    """Affine translators for blocks 0..L-2; `lens(layer, h)` maps a block output (..., d_model) to the same
    shape (the identity at the last block), so it serves as core.lens.logit.lens(..., translator=lens)."""

    def __init__(self, n_layers: int, d_model: int, model: str = "") -> None:
        super().__init__()
        self.n_layers, self.d_model, self.model = n_layers, d_model, model
        self.translators = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers - 1))
        for t in self.translators:
            nn.init.zeros_(t.weight)  # (d_model, d_model)
            nn.init.zeros_(t.bias)  # (d_model,)

    @classmethod
    def for_model(cls, lm: LoadedModel) -> TunedLens:
        return cls(lm.n_layers, lm.parts.d_model, lm.name)

    def forward(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range for a {self.n_layers}-layer lens")
        if layer == self.n_layers - 1:
            return h
        x = h.float()  # (..., d_model)
        return (x + self.translators[layer](x)).to(h.dtype)  # (..., d_model)

    def metadata(self) -> dict:
        return {"model": self.model, "n_layers": self.n_layers, "d_model": self.d_model}


@dataclass
class TunedLensConfig:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    corpus: str = "demo"
    """'demo', a .txt/.jsonl/.csv/.parquet file, or a Hugging Face dataset name (as core.data.corpus.Corpus)."""
    max_tokens: int = 8192
    """Training tokens, read after the held-out ones (the last document is cut). smollm2-135m on 2 CPU cores
    trains at roughly 1-3 minutes per 1,000 tokens (per pass)."""
    context_len: int = 128
    """Window length T: documents are cut into contiguous slices of at most T tokens."""
    batch_tokens: int = 512
    """Padded tokens per training step (one forward pass)."""
    steps: int | None = None
    """Optimizer steps; None: one pass over the training tokens. Batches repeat in a new order each pass."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """'adam' (AdamW: converges in the tens of steps a CPU affords) or 'sgd' (the paper's, Nesterov 0.9)."""
    lr: float | None = None
    """Peak learning rate; None: 1e-3 for Adam, the paper's 1.0 for SGD."""
    weight_decay: float = 1e-3
    """Weight decay on A_l and b_l (the paper's 1e-3): L2 for SGD, decoupled for AdamW."""
    heldout_tokens: int = 512
    """The corpus's first windows, this many tokens, are kept out of training and measure both lenses."""
    seed: int = 0
    """Seed of the batch order."""
    threads: int | None = None
    """torch threads (default: torch's choice)."""
    device: str = "cpu"
    """Where the model runs and the lens trains: cpu, cuda, cuda:N or mps."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The model's weights (the lens's own maps stay float32)."""
    out: str | None = None
    """Store folder; None: core.lens.store.store_dir(model)."""

    def validate(self) -> None:
        for name in ("max_tokens", "context_len", "batch_tokens", "heldout_tokens"):
            if getattr(self, name) <= 0:
                raise TunedLensError(f"--{name.replace('_', '-')} must be positive, "
                                     f"got {getattr(self, name)}")
        for name in ("steps", "threads"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise TunedLensError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise TunedLensError(f"--lr must be positive, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise TunedLensError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in ("sgd", "adam"):
            raise TunedLensError(f"--optimizer must be sgd or adam, got {self.optimizer!r}")


@dataclass
class TunedLensReport:
    """Held-out KL(p_final || p_l) per block (nats, mean over held-out tokens) of both lenses, and the run."""

    model: str
    n_layers: int
    d_model: int
    logit_kl: list[float]
    """(L,) the logit lens (identity); the last block is the model's output, 0 by definition."""
    tuned_kl: list[float]
    """(L,) the tuned lens."""
    tokens_trained: int
    """Tokens seen by the optimizer, counting repeats (sum over steps)."""
    train_tokens: int
    """Distinct training tokens."""
    heldout_tokens: int
    steps: int
    seconds: float
    first_loss: float
    """Training loss (mean KL over blocks 0..L-2) of the first and the last step."""
    last_loss: float
    config: dict

    def __post_init__(self) -> None:
        assert len(self.logit_kl) == len(self.tuned_kl) == self.n_layers

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- data
def split_windows(lm: LoadedModel, cfg: TunedLensConfig) -> tuple[list[Window], list[Window]]:
    """(held-out, training) windows: the corpus's first windows, at least `heldout_tokens` tokens, then
    `max_tokens` more (a document may straddle the split; its windows never overlap)."""
    corpus = Corpus(cfg.corpus)
    corpus.validate()
    total = cfg.heldout_tokens + cfg.max_tokens
    wins = [w for ch in iter_chunks(corpus.documents(), lm.tokenizer, max_tokens=total,
                                    context_len=cfg.context_len, chunk_tokens=total) for w in ch.windows]
    k, n = 0, 0
    while k < len(wins) and n < cfg.heldout_tokens:
        n, k = n + len(wins[k].ids), k + 1
    if k == len(wins):
        raise TunedLensError(f"corpus {cfg.corpus!r} has only {n} tokens, all held out "
                             f"(--heldout-tokens {cfg.heldout_tokens}); use a larger corpus or hold out less")
    return wins[:k], wins[k:]


def streams(lm: LoadedModel, batch: list[Window]) -> torch.Tensor:
    """(L, n, d_model): every block's output at the batch's n real tokens, from one forward pass that stops
    after the last block (no unembedding)."""
    L, got = lm.n_layers, {}
    ids, valid = pad_batch([w.ids for w in batch])  # (B, T) right padding: no real token attends to a pad
    with torch.no_grad():
        forward_until(lm, ids, L - 1, edits={Site("resid_post", layer): store(got, layer) for layer in range(L)})
    keep = valid.to(got[0].device)
    return torch.stack([got[layer][keep] for layer in range(L)])  # (L, n, d_model)


# ----------------------------------------------------------------------------- loss
def layer_kl(lm: LoadedModel, h: torch.Tensor, translator: Callable | None, *, backward_scale: float = 0.0
             ) -> torch.Tensor:
    """(L-1,) float64: KL(p_final || p_l) summed over the n tokens of h (L, n, d) for blocks 0..L-2, with
    p_final from h[L-1]. KL(p || softmax(z)) = sum p log p + logsumexp(z) - p.z, so no (r, V) temporary
    beyond the logits.

    With backward_scale > 0, back-propagates backward_scale * (sum over blocks) into the translator as it
    goes, so that only one sub-batch of logits is alive at a time.
    """
    L, n = h.shape[:2]
    rows = max(1, LOGIT_ELEMENTS // lm.model.get_output_embeddings().weight.shape[0])
    sums = torch.zeros(L - 1, dtype=torch.float64)
    for s in range(0, n, rows):
        with torch.no_grad():
            target_lp = torch.log_softmax(unembed(lm, h[L - 1, s: s + rows]), -1)  # (r, V)
            p = target_lp.exp()  # (r, V)
            neg_entropy = torch.linalg.vecdot(p, target_lp)  # (r,)
        for layer in range(L - 1):
            with torch.set_grad_enabled(backward_scale > 0):
                x = h[layer, s: s + rows]  # (r, d_model)
                z = unembed(lm, x if translator is None else translator(layer, x))  # (r, V)
                kl = (neg_entropy + torch.logsumexp(z, -1) - torch.linalg.vecdot(p, z)).sum()
                if backward_scale > 0:
                    (kl * backward_scale).backward()
            sums[layer] += float(kl.detach())
    return sums


def evaluate(lm: LoadedModel, lens: TunedLens, windows: list[Window], batch_tokens: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Mean KL(p_final || p_l) per block (L,) over the windows' tokens: (logit lens, tuned lens)."""
    L = lm.n_layers
    logit, tuned, n = torch.zeros(L - 1, dtype=torch.float64), torch.zeros(L - 1, dtype=torch.float64), 0
    for batch in batches(windows, batch_tokens):
        h = streams(lm, batch)  # (L, n, d)
        with torch.no_grad():
            logit += layer_kl(lm, h, None)
            tuned += layer_kl(lm, h, lens)
        n += h.shape[1]
    pad = np.zeros(1)  # the last block is the model's output under both lenses
    return np.concatenate([logit.numpy() / n, pad]), np.concatenate([tuned.numpy() / n, pad])


# ----------------------------------------------------------------------------- training
def _optimizer(lens: TunedLens, cfg: TunedLensConfig, steps: int):
    """The optimizer and its schedule: linear warmup over the first 10% of steps, then linear decay."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(lens.parameters(), lr=cfg.lr or 1.0, momentum=0.9, nesterov=True,
                              weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(lens.parameters(), lr=cfg.lr or 1e-3, weight_decay=cfg.weight_decay)
    warm = max(1, steps // 10)
    decay = steps - warm + 1
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, (steps - s) / decay))


def train_tuned_lens(lm: LoadedModel, cfg: TunedLensConfig,
                     on_progress: Callable[[int, int, float], None] | None = None
                     ) -> tuple[TunedLens, TunedLensReport]:
    """Train a TunedLens for `lm` (frozen) on cfg.corpus; returns it and its held-out report.
    `on_progress(step, steps, loss)` after each step, loss = the step's mean KL over blocks 0..L-2.
    cfg.threads applies during training only (the previous torch thread count is restored)."""
    cfg.validate()
    prev = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(lm, cfg, on_progress)
    finally:
        torch.set_num_threads(prev)


def _train(lm: LoadedModel, cfg: TunedLensConfig, on_progress) -> tuple[TunedLens, TunedLensReport]:
    t0 = time.perf_counter()
    if lm.n_layers < 2:
        raise TunedLensError(f"{lm.name} has {lm.n_layers} block; a tuned lens needs at least 2")
    held, train = split_windows(lm, cfg)
    plan = batches(train, cfg.batch_tokens)
    steps = cfg.steps or len(plan)
    lens = TunedLens.for_model(lm).to(lm.device)
    opt, sched = _optimizer(lens, cfg, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    tokens, losses = 0, []
    for step in range(steps):
        if not order:  # a new pass over the training batches, in a new order
            order = torch.randperm(len(plan), generator=gen).tolist()
        h = streams(lm, plan[order.pop()])  # (L, n, d_model)
        n = h.shape[1]
        opt.zero_grad(set_to_none=True)
        sums = layer_kl(lm, h, lens, backward_scale=1.0 / n)  # loss: sum over blocks of the mean over tokens
        nn.utils.clip_grad_norm_(lens.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens += n
        losses.append(float(sums.mean()) / n)
        if on_progress:
            on_progress(step + 1, steps, losses[-1])
    lens.eval().requires_grad_(False)
    logit_kl, tuned_kl = evaluate(lm, lens, held, cfg.batch_tokens)
    report = TunedLensReport(model=lm.name, n_layers=lm.n_layers, d_model=lm.parts.d_model,
                             logit_kl=logit_kl.tolist(), tuned_kl=tuned_kl.tolist(), tokens_trained=tokens,
                             train_tokens=sum(len(w.ids) for w in train),
                             heldout_tokens=sum(len(w.ids) for w in held), steps=steps,
                             seconds=time.perf_counter() - t0, first_loss=losses[0], last_loss=losses[-1],
                             config=asdict(cfg))
    return lens, report
