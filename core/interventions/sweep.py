"""A steering sweep: a direction added after each of several blocks at each of several strengths α (both signs),
over held-out prompts; every cell measured three ways, all with the unsteered model as the judge.

  score    behaviour: the unsteered model reads prompt + steered continuation; the mean over the continuation's
           tokens of its block-L_d output projected on d̂, divided by ν_{L_d} (L_d: the layer the direction was made
           at, ν: that stream's typical norm, core.interventions.steer). It rises when the continuation expresses
           the direction's positive class, as the direction's own probe reads it.
  kl       side effects: KL(unsteered ‖ steered) of the next-token distribution, per token, averaged over
           `neutral_tokens` tokens of the demo corpus (Python's documentation), steered at every position.
  ppl      fluency: the perplexity of the steered continuation under the unsteered model.
Continuations are greedy, `tokens` long, generated for all prompts at once (left-padded). Per layer and prompt, the
steerability slope is the least-squares slope of score against α; a prompt is anti-steerable at a layer when its
slope is negative (Tan et al.). Cells run in layer order, α in the given order; one progress step per cell. The
α = 0 cells, the same unsteered run at every layer, are computed once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from core.errors import UserError
from core.model.intervene import intervene, store
from core.model.run import logits
from core.model.tokens import tokenize


class SweepError(UserError):
    """Unusable sweep settings (one line)."""


@dataclass
class SweepConfig:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    direction: str
    """diffmeans:SET | pca:SET | probe:SET | feature:SAE:F | neuron:L:U | file:PATH.safetensors."""
    layer: int | None = None
    """The layer a prompt-set or file direction is made at / lives in (L_d: the score reads it there; default:
    the middle block)."""
    db: str = ""
    """Index to store the sweep in (the steering page reads it); '' : print only."""
    layers: str = "all"
    """Blocks to steer after: 'all', '3,6,9', '0-10', or 'every:K' (every K-th block, the direction's among them)."""
    alphas: str = "-1,-0.5,-0.25,0,0.25,0.5,1"
    """Strengths, in units of the stream's typical norm at each layer, comma-separated (with a leading negative
    strength write --alphas=-0.5,0.5). On smollm2, |α| >= 1 already breaks fluency (perplexity in the hundreds);
    0.25-0.5 steers while staying fluent."""
    prompts: str = ""
    """Prompts to continue: a prompt set (its texts; default: the direction's own set, else 'sentiment')."""
    n_prompts: int = 32
    """How many of them (the set's last ones, away from what most directions were made from)."""
    tokens: int = 12
    """Tokens generated per continuation."""
    neutral_tokens: int = 256
    """Demo-corpus tokens for the side-effect KL."""
    positive: str | None = None
    """The positive label of a prompt-set direction (default: its first label)."""
    name: str = ""
    """A name for the stored sweep (default: the direction spec)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


def parse_alphas(spec: str) -> list[float]:
    try:
        out = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SweepError(f"--alphas {spec!r}: expected numbers separated by commas") from None
    if not out or not all(math.isfinite(a) for a in out):
        raise SweepError(f"--alphas {spec!r}: expected finite numbers")
    return out


def _left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.tensor([[pad] * (T - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask  # (B, T) each


def _add_all(vec: torch.Tensor):
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x + vec.to(x.dtype)
    return fn


@torch.inference_mode()
def _generate(lm, ids, mask, tokens: int, edits) -> torch.Tensor:
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
    with intervene(lm, edits):
        out = lm.model.generate(ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                                do_sample=False, pad_token_id=pad)
    return out[:, ids.shape[1]:]  # (B, tokens)


@torch.inference_mode()
def _judge(lm, ids, mask, cont, L_d: int, u: torch.Tensor, nu: float) -> tuple[np.ndarray, np.ndarray]:
    """(score (B,), perplexity (B,)) of continuations `cont` (B, n) after left-padded prompts, unsteered."""
    full = torch.cat([ids, cont], 1)
    fmask = torch.cat([mask, torch.ones_like(cont)], 1)
    got: dict = {}
    out = logits(lm, full, edits={f"resid_post.{L_d}": store(got, 0)}, attention_mask=fmask).float()
    n, T = cont.shape[1], ids.shape[1]
    h = got[0][:, T:].float()  # (B, n, d) the continuation's stream at L_d
    score = (h @ u).mean(1) / nu
    lp = out[:, T - 1: T - 1 + n].log_softmax(-1).gather(-1, cont[..., None])[..., 0]  # (B, n)
    return score.numpy(), torch.exp(-lp.mean(1)).numpy()


def _neutral(lm, n_tokens: int) -> torch.Tensor:
    from core.data.corpus import Corpus

    ids: list[int] = []
    for text in Corpus("demo").documents():
        ids += tokenize(lm.tokenizer, text)[:64]
        if len(ids) >= n_tokens:
            break
    ids = ids[: max(64, n_tokens // 64 * 64)]
    return torch.tensor(ids).reshape(-1, 64)  # (B, 64)


def sweep(lm, direction, prompts: list[str], layers: list[int], alphas: list[float], *, tokens: int = 12,
          neutral_tokens: int = 256, on_cell: Callable[[int, int], None] | None = None) -> dict:
    """The grids (module docstring) as plain lists: score/kl/ppl [layer][alpha], per-prompt scores, slopes."""
    from core.interventions.steer import stream_norm

    if not prompts or any(not p.strip() for p in prompts):
        raise SweepError("the sweep needs non-empty prompts")
    u = direction.unit
    L_d = direction.layer
    nu_d = stream_norm(lm, L_d)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids, mask = _left_pad([tokenize(lm.tokenizer, p) for p in prompts], pad)
    neutral = _neutral(lm, neutral_tokens)
    with torch.inference_mode():
        base_lp = logits(lm, neutral).float().log_softmax(-1)  # (B, 64, V)
    A, P = len(alphas), len(prompts)
    score, kl, ppl = (np.zeros((len(layers), A)) for _ in range(3))
    per_prompt = np.zeros((len(layers), A, P))
    t0, cells, unsteered = time.monotonic(), 0, None
    for i, L in enumerate(layers):
        nu = stream_norm(lm, L)
        for j, a in enumerate(alphas):
            if a == 0 and unsteered is not None:  # α = 0 is the same unsteered run at every layer: run it once
                s, p, kl[i, j] = unsteered
            else:
                edits = {f"resid_post.{L}": _add_all(a * nu * u)} if a else None
                cont = _generate(lm, ids, mask, tokens, edits)
                s, p = _judge(lm, ids, mask, cont, L_d, u, nu_d)
                with torch.inference_mode():
                    lp = logits(lm, neutral, edits=edits).float().log_softmax(-1)
                kl[i, j] = float((base_lp.exp() * (base_lp - lp)).sum(-1).mean())
                if a == 0:
                    unsteered = (s, p, kl[i, j])
            per_prompt[i, j], score[i, j], ppl[i, j] = s, s.mean(), float(np.exp(np.log(p).mean()))
            cells += 1
            if on_cell:
                on_cell(cells, len(layers) * A)
    x = np.array(alphas) - np.mean(alphas)
    slopes = (per_prompt - per_prompt.mean(1, keepdims=True)).transpose(0, 2, 1) @ x / max(float(x @ x), 1e-12)
    return {"layers": layers, "alphas": alphas, "direction_layer": L_d, "score": score.tolist(), "kl": kl.tolist(),
            "ppl": ppl.tolist(), "per_prompt": per_prompt.tolist(), "slopes": slopes.tolist(),
            "anti_steerable": (slopes < 0).mean(1).tolist(), "prompts": prompts, "tokens": tokens,
            "seconds": round(time.monotonic() - t0, 1)}


def run_sweep(cfg: SweepConfig, lm=None, on_cell=None) -> dict:
    """`neuroboard sweep`: make the direction, sweep, store it in --db when given; the result (with its id)."""
    from core.data.prompt_sets import PromptSetError, load_prompt_set
    from core.interventions.directions import from_spec
    from core.model.load import load_model
    from core.units.config import ExtractError, parse_layers

    alphas = parse_alphas(cfg.alphas)
    if cfg.tokens < 1 or cfg.n_prompts < 1:
        raise SweepError("--tokens and --n-prompts must be positive")
    if cfg.db:
        from core.index.db import connect

        connect(cfg.db).close()  # usable (not locked, not too new) before any model work
    lm = lm or load_model(cfg.model, trust_remote_code=cfg.trust_remote_code)
    layer = lm.n_layers // 2 if cfg.layer is None else cfg.layer
    try:
        if cfg.layers.startswith("every:"):
            k = int(cfg.layers.removeprefix("every:"))
            if k < 1:
                raise ValueError
            layers = list(range(layer % k, lm.n_layers, k))
        else:
            layers = parse_layers(cfg.layers, lm.n_layers)
    except ExtractError as e:
        raise SweepError(str(e)) from None
    except ValueError:
        raise SweepError(f"--layers {cfg.layers!r}: 'every:K' needs a positive integer K") from None
    d = from_spec(lm, cfg.direction, layer, cfg.positive)
    spec = cfg.prompts or (d.made.get("set") if d.made.get("method") in ("diffmeans", "pca", "probe") else "sentiment")
    try:
        texts = load_prompt_set(spec).texts[-cfg.n_prompts:]
    except PromptSetError as e:
        raise SweepError(str(e)) from None
    result = sweep(lm, d, texts, layers, alphas, tokens=cfg.tokens, neutral_tokens=cfg.neutral_tokens,
                   on_cell=on_cell) | {"direction": d.describe(), "prompt_set": spec}
    if cfg.db:
        from core.index import writer
        from core.index.db import connect
        from core.index.sweeps import add_sweep
        from core.model.tokens import vocab_strings

        con = connect(cfg.db)
        try:
            model_id = writer.ensure_model(con, lm.info(), vocab_strings(lm.tokenizer))
            result["sweep_id"] = add_sweep(con, model_id, cfg.name or cfg.direction, asdict(cfg), result)
        finally:
            con.close()
    return result
