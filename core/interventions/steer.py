"""Steering: add α·ν_L·d̂ to the residual stream after block L (resid_post.L), an edit through core.model.intervene.

Convention for α: d̂ is the direction at unit norm and ν_L the typical norm of that stream, the median ‖resid_post.L‖
over the first `NORM_TOKENS` tokens of the demo corpus (special tokens left out); α = 1 adds a vector as long as a
typical token's whole stream at that layer, α = 0 changes nothing, negative α steers away. That norm includes the
few massive dimensions some models carry (smollm2's is ~170, mostly one dimension), so useful strengths are below 1:
on smollm2 with the sentiment direction, α = 0.25-0.5 steers while the continuation stays fluent, α >= 1 breaks it.

Positions: every position (`start=None`), or the prompt's positions from `start` on; generated tokens are always
steered. Default and steered run side by side in one batch with a KV cache (core.model.run.decode), so they share
every other setting: greedy continuations, and sampled ones (temperature 1, no truncation, each row with its own
generator seeded `seed`, so both see the same random stream). The next-token shift compares the two distributions after the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.errors import UserError
from core.model.intervene import store
from core.model.run import check_length, decode, forward_until
from core.model.tokens import token_texts, tokenize

NORM_TOKENS = 512


class SteerError(UserError):
    """Unusable steering input (one line)."""


_NORMS: dict[tuple[str, int], tuple[float, ...]] = {}


def _norms(lm) -> tuple[float, ...]:
    key = (lm.name, id(lm.model))
    if key not in _NORMS:
        _NORMS[key] = _measure_norms(lm)
    return _NORMS[key]


def _measure_norms(lm) -> tuple[float, ...]:
    from core.data.corpus import Corpus

    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    ids: list[int] = []
    for text in Corpus("demo").documents():
        ids += tokenize(lm.tokenizer, text)[:128]
        if len(ids) >= NORM_TOKENS:
            break
    x = torch.tensor([ids[:NORM_TOKENS]]).reshape(-1, 128) if len(ids) >= NORM_TOKENS else torch.tensor([ids])
    keep = torch.tensor([[t not in special for t in row] for row in x.tolist()])
    got: dict = {}
    with torch.inference_mode():
        forward_until(lm, x, edits={f"resid_post.{L}": store(got, L) for L in range(lm.n_layers)})
    return tuple(float(got[L].float().norm(dim=-1)[keep].median()) for L in range(lm.n_layers))


def stream_norm(lm, layer: int) -> float:
    """ν_L: the median norm of block `layer`'s output over NORM_TOKENS demo-corpus tokens (cached per model)."""
    return _norms(lm)[layer]


def steer_edit(vector: torch.Tensor, rows: torch.Tensor, start: int | None, prompt_len: int):
    """Edit at resid_post.L: add `vector` to the given rows, on prompt positions >= start and every generated one
    (its first call sees the prompt; with a KV cache later calls hold new tokens only)."""
    calls = [0]

    def fn(x: torch.Tensor) -> torch.Tensor:  # (B, T, d)
        y = x.clone()
        first = (start or 0) if calls[0] == 0 and x.shape[1] == prompt_len else 0
        calls[0] += 1
        y[rows, first:] += vector.to(x.device, x.dtype)
        return y
    return fn


@dataclass
class SteerResult:
    prompt: str
    layer: int
    alpha: float
    norm: float  # ν_L
    greedy: tuple[str, str]  # (default, steered) continuations
    sampled: tuple[str, str]
    greedy_tokens: tuple[list[str], list[str]]
    diverge: int  # first generated token where the greedy continuations differ (-1: never)
    gained: list[tuple[str, float, float]]  # (token, p_default, p_steered) most raised
    lost: list[tuple[str, float, float]]
    kl: float  # KL(default ‖ steered) of the next-token distribution, nats

    def as_dict(self) -> dict:
        return {"prompt": self.prompt, "layer": self.layer, "alpha": self.alpha, "stream_norm": self.norm,
                "default": self.greedy[0], "steered": self.greedy[1], "default_tokens": self.greedy_tokens[0],
                "steered_tokens": self.greedy_tokens[1], "sampled_default": self.sampled[0],
                "sampled_steered": self.sampled[1], "diverge": self.diverge, "next_token_kl": self.kl,
                "gained": [list(g) for g in self.gained], "lost": [list(g) for g in self.lost]}


def _check(lm, prompt: str, direction: torch.Tensor, tokens: int) -> torch.Tensor:
    if not prompt.strip():
        raise SteerError("the prompt must not be empty")
    if direction.numel() != lm.parts.d_model:
        raise SteerError(f"the direction is {direction.numel()} wide but {lm.name}'s stream is {lm.parts.d_model}")
    if tokens < 1:
        raise SteerError("--tokens must be positive")
    ids = torch.tensor([tokenize(lm.tokenizer, prompt)])
    check_length(lm.model, ids.shape[1] + tokens)
    return ids


@torch.inference_mode()
def steer(lm, prompt: str, layer: int, direction: torch.Tensor, alpha: float, tokens: int = 32,
          start: int | None = None, seed: int = 0, k: int = 8) -> SteerResult:
    """Default and steered continuations of `prompt` and the next-token shift (module docstring)."""
    if not 0 <= layer < lm.n_layers:
        raise SteerError(f"layer {layer} is out of range for {lm.name} (layers 0-{lm.n_layers - 1})")
    if not np.isfinite(alpha):
        raise SteerError(f"alpha must be a finite number, got {alpha}")
    ids = _check(lm, prompt, direction, tokens)
    nu = stream_norm(lm, layer)
    vec = alpha * nu * direction.float() / direction.float().norm()
    T = ids.shape[1]
    return _side_by_side(lm, prompt, ids, lambda rows: {f"resid_post.{layer}": steer_edit(vec, rows, start, T)},
                         tokens, seed, k, (layer, float(alpha), nu))


@torch.inference_mode()
def ablate(lm, prompt: str, direction: torch.Tensor, tokens: int = 32, seed: int = 0, k: int = 8) -> SteerResult:
    """Default and directionally ablated continuations (core.interventions.ablate, activation form: the direction
    removed from every write into the stream, at every layer and position) and the next-token shift."""
    from core.interventions.ablate import ablation_edits

    ids = _check(lm, prompt, direction, tokens)
    base = ablation_edits(lm, direction)
    return _side_by_side(lm, prompt, ids, lambda rows: {s: only_rows(fn, rows) for s, fn in base.items()}, tokens,
                         seed, k, (-1, 0.0, 0.0))


def only_rows(fn, rows: torch.Tensor):
    """An edit applied to the given batch rows only."""
    def g(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[rows] = fn(x[rows])
        return y
    return g


def _side_by_side(lm, prompt: str, ids: torch.Tensor, make_edits, tokens: int, seed: int, k: int,
                  where: tuple[int, float, float]) -> SteerResult:
    """Row 0 as is, row 1 edited (make_edits(rows) -> {site: edit} for those rows): next-token shift, greedy
    continuations and sampled ones (each sampled row with its own generator seeded alike) in one batch of four rows
    (core.model.run.decode)."""
    rows = ids.expand(4, -1)  # greedy default, greedy edited, sampled default, sampled edited: one batch
    first, cont = decode(lm, rows, tokens, edits=make_edits(torch.tensor([1, 3])), sample=(False, False, True, True),
                         seed=seed)
    last, greedy, sampled = first[:2], cont[:2], cont[2:]
    p = last.softmax(-1)
    logp = last.log_softmax(-1)
    kl = float((p[0] * (logp[0] - logp[1])).sum())
    d = (p[1] - p[0]).numpy()
    order = np.argsort(d)
    voc = token_texts(lm.tokenizer, [int(i) for i in np.concatenate([order[::-1][:k], order[:k]])])

    def rows(idx, names):
        return [(nm, float(p[0, i]), float(p[1, i])) for i, nm in zip(idx, names, strict=True)]
    g0, g1 = greedy[0].tolist(), greedy[1].tolist()
    diverge = next((i for i, (a, b) in enumerate(zip(g0, g1, strict=True)) if a != b), -1)
    dec = lm.tokenizer.decode
    return SteerResult(prompt, where[0], where[1], where[2], (dec(g0), dec(g1)), (dec(sampled[0]), dec(sampled[1])),
                       (token_texts(lm.tokenizer, g0), token_texts(lm.tokenizer, g1)), diverge,
                       rows(order[::-1][:k], voc[:k]), rows(order[:k], voc[k:]), kl)
