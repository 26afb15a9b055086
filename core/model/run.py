"""Running token sequences through a model: one padding rule, one context-length rule, one early-stopping pass.

Batches are right-padded: with causal attention no real token can attend to a pad, so a real token's activations
are those of its sequence run alone, and no attention mask is needed (callers may pass `valid` as one). Every pass
that needs only the first blocks stops after the last one it needs (`forward_until`), never running the rest of the
model or the unembedding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

from core.errors import UserError
from core.model.device import module_device
from core.model.intervene import Edit, StopForward, intervene
from core.model.parts import text_config
from core.model.sites import Site


class ContextLengthError(UserError):
    """A sequence longer than the model's positions; one line."""


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T) int64 right-padded with `pad_id`, valid (B, T) bool: True on real tokens), T the longest."""
    if not seqs:
        raise ValueError("pad_batch needs at least one sequence")
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)  # (B, T)
    valid = torch.zeros(len(seqs), T, dtype=torch.bool)  # (B, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        valid[i, : len(s)] = True
    return ids, valid


def max_positions(model: torch.nn.Module) -> int | None:
    """The longest sequence the model takes: max_position_embeddings, or GPT-2's n_positions; None if unstated."""
    cfg = text_config(model)
    n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return int(n) if n else None


def check_length(model: torch.nn.Module, n: int, what: str = "the prompt") -> None:
    """ContextLengthError if `n` tokens do not fit the model's positions."""
    limit = max_positions(model)
    if limit and n > limit:
        raise ContextLengthError(f"{what} has {n} tokens, more than the model's {limit} positions")


def forward_until(lm, ids: torch.Tensor, last_layer: int | None = None, *,
                  edits: Mapping[Site | str, Edit | Sequence[Edit]] | None = None,
                  attention_mask: torch.Tensor | None = None, replay: tuple[int, object] | None = None) -> None:
    """Run the model without its unembedding over `ids` (B, T), stopping after block `last_layer` (None: every
    block and the final norm), with `edits` applied (core.model.intervene). Edits that store read the results.
    `ids` and the mask go to the model's device; edits see tensors there."""
    parts = getattr(lm, "parts", lm)
    ids, attention_mask = _to_model(parts, ids, attention_mask)
    with intervene(parts, edits, stop_after=last_layer, replay=replay):
        try:
            parts.base(input_ids=ids, attention_mask=attention_mask)
        except StopForward:
            pass


def logits(lm, ids: torch.Tensor, *, edits: Mapping[Site | str, Edit | Sequence[Edit]] | None = None,
           attention_mask: torch.Tensor | None = None, replay: tuple[int, object] | None = None) -> torch.Tensor:
    """(B, T, V) the model's output logits with `edits` applied (a full pass, unembedding included), on the
    model's device."""
    parts = getattr(lm, "parts", lm)
    ids, attention_mask = _to_model(parts, ids, attention_mask)
    with intervene(parts, edits, replay=replay):
        return parts.model(input_ids=ids, attention_mask=attention_mask).logits


def softcap(lm) -> float | None:
    """The model's final logit soft-capping c (logits -> c * tanh(logits / c), Gemma 2), None if it has none."""
    cap = getattr(text_config(lm.model), "final_logit_softcapping", None)
    return float(cap) if cap else None


def unembed(lm, h: torch.Tensor) -> torch.Tensor:
    """(..., d_model) residual stream -> (..., V) float32 logits: final norm, output embedding, soft-capping."""
    norm = lm.parts.final_norm
    x = norm(h) if norm is not None else h
    z = lm.model.get_output_embeddings()(x).float()  # (..., V)
    cap = softcap(lm)
    return cap * torch.tanh(z / cap) if cap else z


@torch.inference_mode()
def last_logits(lm, seqs: Sequence[Sequence[int]], rows: int = 32) -> torch.Tensor:
    """(N, V) float32 the model's next-token logits after each sequence (unpadded, of any lengths), in batches of
    `rows`: the tokens all sequences begin with run once, their KV cache is repeated over the batch, and the rest
    run right-padded (causal attention: a token never sees the padding after it), each row read at its last real
    token and unembedded only there (soft-capped as the model caps). For many prompts that differ only at their
    end, e.g. a judge's question over many excerpts."""
    parts = getattr(lm, "parts", lm)
    seqs = [list(x) for x in seqs]
    if not seqs:
        return torch.empty(0, 0)
    n = min(len(x) for x in seqs) - 1  # every row keeps at least one token after the shared prefix
    p = 0
    while p < n and all(x[p] == seqs[0][p] for x in seqs):
        p += 1
    base, head, cap = parts.base, lm.model.get_output_embeddings(), softcap(lm)
    key = _cache_arg(base)
    out = []
    for i in range(0, len(seqs), rows):
        suf = [x[p:] for x in seqs[i:i + rows]]
        B, L = len(suf), max(len(s) for s in suf)
        cache = None
        if p:
            pre, _ = _to_model(parts, torch.tensor([seqs[0][:p]]), None)
            res = base(input_ids=pre, use_cache=True)
            cache = getattr(res, "cache", None) or getattr(res, "past_key_values", None)
            cache.batch_repeat_interleave(B)
        x, _ = _to_model(parts, torch.tensor([s + [0] * (L - len(s)) for s in suf]), None)
        pos = torch.arange(p, p + L, device=x.device)[None].expand(B, L)
        h = base(input_ids=x, position_ids=pos, use_cache=cache is not None, **({key: cache} if cache else {}))
        lg = head(h.last_hidden_state[torch.arange(B), torch.tensor([len(s) - 1 for s in suf])]).float()
        out.append((cap * torch.tanh(lg / cap) if cap else lg).cpu())
    return torch.cat(out)


def _to_model(parts, ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ids and mask on the model's device (no copy on the CPU)."""
    dev = module_device(parts.model)
    if ids.device == dev:
        return ids, mask
    return ids.to(dev), (mask.to(dev) if mask is not None else None)


def _cache_arg(model: torch.nn.Module) -> str:
    """The name a model's forward takes its KV cache under (`cache` from transformers 5.x on, `past_key_values`
    before)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def decode(lm, ids: torch.Tensor, tokens: int, *, edits: Mapping[Site | str, Edit | Sequence[Edit]] | None = None,
           sample: Sequence[bool] = (), seed: int = 0, stop: Iterable[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Continue every row of `ids` (B, T), unpadded, by `tokens` tokens with `edits` applied, with a KV cache (after
    the prompt, each step runs the new token only). Row b is greedy (argmax), or with `sample[b]` drawn from the
    model's own distribution (temperature 1, no truncation) with a generator of its own seeded `seed`, so rows
    sampled alike see the same random stream. Nothing is suppressed or penalised: the logits are the model's.
    With `stop` token ids it ends early, once every row has chosen one of them (what a row chooses after its stop
    is cut by callers that read up to the stop, so the rows they read are the same as without `stop`).
    Returns (first (B, V) the next-token logits after the prompt, out (B, n) the chosen ids, n ≤ tokens)."""
    parts = getattr(lm, "parts", lm)
    B = ids.shape[0]
    gens = [torch.Generator().manual_seed(seed) if (b < len(sample) and sample[b]) else None for b in range(B)]
    key = _cache_arg(parts.model)
    out = torch.empty(B, tokens, dtype=torch.long)
    stops, stopped = torch.tensor(sorted(set(stop)), dtype=torch.long), torch.zeros(B, dtype=torch.bool)
    ids, _ = _to_model(parts, ids, None)
    with intervene(parts, edits):
        res = parts.model(input_ids=ids, use_cache=True)
        first = res.logits[:, -1].float().cpu()
        last = first
        for i in range(tokens):
            nxt = torch.empty(B, dtype=torch.long)
            for b, g in enumerate(gens):
                nxt[b] = (torch.multinomial(last[b].softmax(-1), 1, generator=g)[0] if g is not None
                          else last[b].argmax())
            out[:, i] = nxt
            if stops.numel():
                stopped |= torch.isin(nxt, stops)
                if bool(stopped.all()):
                    return first, out[:, :i + 1]
            if i + 1 < tokens:
                cache = getattr(res, "cache", None) or getattr(res, "past_key_values", None)
                res = parts.model(input_ids=nxt[:, None].to(ids.device), use_cache=True, **{key: cache})
                last = res.logits[:, -1].float().cpu()
    return first, out
