"""Attention-head role scores: one number per (layer, head) from attention patterns on two probes, plus one from
the weights (the OV circuit's copying score).

A[t, s] is a head's attention weight from query position t to key position s (rows sum to 1, causal: s <= t),
averaged over the sequences of a probe. Position 0 is always the BOS token; the query at position 0 can only attend
to itself (A[0, 0] = 1 for every head), so it carries no information and every pattern role below averages over
the queries t = 1..T-1 only.

  prev_token       mean_{t>=1} A[t, t-1]
  current_token    mean_{t>=1} A[t, t]
  local_window     mean_{t>=1} sum_{s=max(0, t-w)}^{t} A[t, s], w = LOCAL_WINDOW = 3 (4 keys: t-3..t, BOS
                   included when it falls inside the window)
  sink             mean_{t>=1} A[t, 0] (attention to the first position, BOS); a head with sink > SINK_THRESHOLD
                   (0.3) is a sink head
  entropy          mean_{t>=1} H(A[t, :]) in nats, H(p) = -sum_s p_s ln p_s (0 ln 0 = 0), NOT normalised (a
                   uniform head scores mean_{t>=1} ln(t+1); the maximum depends on T)
  duplicate_token  repeated probe only: mean over queries t in the second copy of A[t, t-n] (the earlier
                   occurrence of the same token)
  induction        repeated probe only: mean over queries t in the second copy of A[t, t-n+1] (the token after
                   the earlier occurrence; for t = 2n that is the first token of the second copy)
  ov_copying       from weights: Re(sum_i l_i) / sum_i |l_i| over the eigenvalues l_i of the head's OV circuit
                   W_V^h W_O^h (d_model x d_model, row-vector convention x -> x W_V^h W_O^h), computed from the
                   equivalent (d_head x d_head) matrix W_O^h W_V^h, whose nonzero eigenvalues are the same. +1: the
                   head copies what it attends to, -1: it suppresses it. 0 for an all-zero circuit.

Probes (`head_scores`). The repeated probe is `probe_ids`: BOS, then n = half_len random tokens r_1..r_n, then the
same n tokens again (T = 1 + 2n); the second copy is positions n+1..2n. Random tokens are drawn without replacement
within a sequence (so each token occurs exactly once per copy) from the ids below min(config vocab, tokenizer size)
that are not special tokens. duplicate_token and induction come from this probe. The other five roles come from
natural text: the `demo` corpus (core.data.corpus), each document tokenized without special tokens and cut into
non-overlapping chunks of 2n tokens (a document's remainder is dropped), each chunk preceded by BOS, so that text
windows have the same length T as the repeated probe; ceil(text_tokens / 2n) windows. With text_tokens=0 the five
roles are measured on the repeated probe instead. BOS is the tokenizer's bos token, else the config's
bos_token_id, else the eos token (GPT-2's <|endoftext|>). Scores are means over all sequences of a probe (all have
the same length, so batch means weighted by batch size are exact).

Heads and weights. H = num_attention_heads (n_head), H_kv = num_key_value_heads (H when absent); with grouped-query
attention query head h reads KV head h // (H / H_kv). The value map is the attention module's `v_proj`, else a fused
`c_attn` / `qkv_proj` (q | k | v concatenated, GPT-2's Conv1D or nn.Linear), else a ValueError; the output map is
`o_proj` / `c_proj` / `out_proj` / `dense`, else the only linear child writing d_model from H*d_head. The OV score
uses those raw weights: biases are left out (attention rows sum to 1, so a value bias adds the same vector at
every position and is not part of the linear map), and so are norms around attention — the pre-attention norm's
gain, Gemma 2/3's post-attention norm — which are not folded into W_V or W_O. Gemma 3's attention normalises
queries and keys (q_norm, k_norm) but not values; a module with a `v_norm` (Gemma 3n) is scored without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from core.data.corpus import sample_windows
from core.heads.config import HeadsConfig
from core.model.intervene import Edit
from core.model.load import LoadedModel, set_attn
from core.model.parts import in_out, io_dims, text_config
from core.model.run import forward_until
from core.model.sites import Site

ROLES = ("prev_token", "duplicate_token", "induction", "sink", "current_token", "local_window", "entropy")
"""Roles measured on attention patterns (`ov_copying`, from the weights, is added by `head_scores`)."""
REPEAT_ROLES = ("duplicate_token", "induction")
TEXT_ROLES = tuple(r for r in ROLES if r not in REPEAT_ROLES)
ALL_ROLES = ROLES + ("ov_copying",)
SINK_THRESHOLD = 0.3
"""A head is a sink head when its sink score is above this."""
LOCAL_WINDOW = 3
"""w of local_window: keys t-w..t."""
FUSED_QKV_NAMES = ("c_attn", "qkv_proj")


# ----------------------------------------------------------------------------- scores from patterns
def pattern_scores(patterns: torch.Tensor | np.ndarray, n_repeat: int | None = None) -> dict[str, np.ndarray]:
    """Role scores (H,) float64 of attention patterns (B, H, T, T), averaged over the B sequences.

    `n_repeat`: the probe's repeat length n (the last 2n positions hold r_1..r_n twice); adds duplicate_token and
    induction. Formulas in the module docstring.
    """
    A = torch.as_tensor(np.array(patterns) if isinstance(patterns, np.ndarray) else patterns)  # (B, H, T, T)
    B, H, T, T2 = A.shape
    if T != T2 or T < 2:
        raise ValueError(f"patterns must be (B, H, T, T) with T >= 2, got {tuple(A.shape)}")

    def mean(x):  # (B, H, Q) -> (H,) float64 mean over sequences and queries
        return x.double().mean((0, 2))

    t = torch.arange(1, T)  # (T-1,) queries 1..T-1
    diags = [A.diagonal(-k, -2, -1) for k in range(min(LOCAL_WINDOW, T - 1) + 1)]  # (B, H, T-k): A[t, t-k]
    local = torch.zeros_like(A[..., 0]).double()  # (B, H, T)
    for k, d in enumerate(diags):
        local[..., k:] += d
    out = {
        "prev_token": mean(A[:, :, t, t - 1]),  # (H,)
        "current_token": mean(A[:, :, t, t]),
        "local_window": mean(local[..., 1:]),
        "sink": mean(A[:, :, 1:, 0]),
        "entropy": -mean(torch.special.xlogy(A, A).sum(-1, dtype=torch.float64)[..., 1:]),  # one (B, H, T, T) temp
    }
    if n_repeat is not None:
        n = int(n_repeat)
        if not (1 <= n and 2 * n <= T):
            raise ValueError(f"repeat length {n} does not fit {T} positions")
        q = torch.arange(T - n, T)  # (n,) queries in the second copy
        out["duplicate_token"] = mean(A[:, :, q, q - n])
        out["induction"] = mean(A[:, :, q, q - n + 1])
    return {k: v.numpy() for k, v in out.items()}


# ----------------------------------------------------------------------------- heads and OV weights
def head_counts(lm: LoadedModel) -> tuple[int, int, int]:
    """(H query heads, H_kv key/value heads, d_head) (core.model.parts.ModelParts.heads)."""
    return lm.parts.heads


def ov_weights(lm: LoadedModel, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W_V (H_kv, d_model, d_head) and W_O (H, d_head, d_model), float64, row-vector convention (x @ W)."""
    H, H_kv, dh = head_counts(lm)
    attn, d = lm.parts.attn[layer], lm.parts.d_model
    if getattr(attn, "v_proj", None) is not None:
        wv = in_out(attn.v_proj)  # (d_model, H_kv*dh)
    else:
        fused = next((getattr(attn, n) for n in FUSED_QKV_NAMES if getattr(attn, n, None) is not None), None)
        if fused is None or io_dims(fused) != (d, (H + 2 * H_kv) * dh):
            raise ValueError(f"cannot find the value projection of {type(attn).__name__}: expected v_proj or a "
                             f"fused q|k|v map ({', '.join(FUSED_QKV_NAMES)}) of width {(H + 2 * H_kv) * dh}")
        wv = in_out(fused)[:, (H + H_kv) * dh:]  # (d_model, H_kv*dh): the v block of q | k | v
    W_V = wv.detach().double().reshape(d, H_kv, dh).permute(1, 0, 2)  # (H_kv, d_model, dh)
    W_O = in_out(lm.parts.o_proj(layer)).detach().double().reshape(H, dh, d)  # (H, dh, d_model)
    return W_V, W_O


def ov_copying(lm: LoadedModel) -> np.ndarray:
    """(L, H) copying score Re(sum l) / sum |l| of each head's OV circuit (module docstring)."""
    H, H_kv, _ = head_counts(lm)
    kv = torch.arange(H) // (H // H_kv)  # (H,) the KV head each query head reads
    out = np.zeros((lm.n_layers, H))
    for layer in range(lm.n_layers):
        W_V, W_O = ov_weights(lm, layer)
        M = W_O @ W_V[kv]  # (H, dh, dh) = W_O^h W_V^h
        lam = torch.linalg.eigvals(M)  # (H, dh) complex
        den = lam.abs().sum(-1)  # (H,)
        out[layer] = torch.where(den > 0, lam.sum(-1).real / den.clamp(min=1e-300), 0.0).numpy()
    return out


# ----------------------------------------------------------------------------- probes
def probe_ids(vocab_size: int, n_seqs: int, half_len: int, seed: int, bos_id: int,
              exclude: Sequence[int] = ()) -> torch.Tensor:
    """(n_seqs, 1 + 2*half_len) int64: BOS, r_1..r_n, r_1..r_n; r drawn without replacement from
    [0, vocab_size) minus `exclude` (special ids), reproducibly from `seed`."""
    cands = np.setdiff1d(np.arange(vocab_size), np.asarray(list(exclude), dtype=np.int64))  # (V',)
    if len(cands) < half_len:
        raise ValueError(f"only {len(cands)} usable token ids for a repeat of {half_len}")
    rng = np.random.default_rng(seed)
    r = np.stack([rng.choice(cands, size=half_len, replace=False) for _ in range(n_seqs)])  # (B, n)
    bos = np.full((n_seqs, 1), bos_id)  # (B, 1)
    return torch.from_numpy(np.concatenate([bos, r, r], axis=1).astype(np.int64))  # (B, 1 + 2n)


def bos_id(lm: LoadedModel) -> int:
    tok, cfg = lm.tokenizer, text_config(lm.model)
    for i in (getattr(tok, "bos_token_id", None), getattr(cfg, "bos_token_id", None),
              getattr(tok, "eos_token_id", None)):
        if isinstance(i, int):
            return i
    raise ValueError("the model has no BOS or EOS token to start probe sequences with")


def vocab_size(lm: LoadedModel) -> int:
    return min(int(text_config(lm.model).vocab_size), len(lm.tokenizer))


def text_probe_ids(lm: LoadedModel, n_tokens: int, chunk: int, bos: int, corpus: str = "demo") -> torch.Tensor:
    """(ceil(n_tokens / chunk), 1 + chunk) int64: BOS + `chunk` consecutive tokens of a corpus document (windows
    of exactly `chunk` tokens without special tokens, core.data.corpus.sample_windows)."""
    wins = sample_windows(corpus, lm.tokenizer, n_tokens=n_tokens, context_len=chunk, special=False, full_only=True)
    return torch.tensor([[bos] + w for w in wins], dtype=torch.long)  # (B, 1 + chunk)


# ----------------------------------------------------------------------------- running the probes
@dataclass
class HeadScores:
    model: str
    """The model's name as loaded (LoadedModel.name)."""
    n_layers: int
    n_heads: int
    """Query heads per layer (H)."""
    n_kv_heads: int
    """Key/value heads per layer (H_kv; H without grouped-query attention)."""
    scores: dict[str, np.ndarray] = field(repr=False)
    """Role -> (L, H) float64 scores (roles: ALL_ROLES)."""
    n_seqs: int
    """Sequences of the repeated probe."""
    half_len: int
    """Repeat length n; every probe sequence has 1 + 2n tokens."""
    seed: int
    """Seed of the repeated probe's random tokens."""
    text_windows: int
    """Natural-text windows (BOS + 2n demo-corpus tokens each); 0: text roles measured on the repeated probe."""

    def __post_init__(self) -> None:
        for role, v in self.scores.items():
            assert v.shape == (self.n_layers, self.n_heads), (role, v.shape)

    def rows(self) -> list[dict]:
        """One dict per head: {"layer", "head", role: score, ...}, 0-based, layer-major."""
        return [{"layer": layer, "head": head, **{r: float(v[layer, head]) for r, v in self.scores.items()}}
                for layer in range(self.n_layers) for head in range(self.n_heads)]

    def top(self, role: str, k: int = 5) -> list[tuple[int, int, float]]:
        """The k highest-scoring heads for `role` as (layer, head, score), best first (ties: lower layer, head)."""
        v = self.scores[role]  # (L, H)
        order = np.argsort(-v, axis=None, kind="stable")[:k]
        return [(int(i // self.n_heads), int(i % self.n_heads), float(v.flat[i])) for i in order]

    def above(self, role: str, threshold: float) -> list[tuple[int, int, float]]:
        """Heads scoring above `threshold` for `role`, best first (e.g. sinks: above("sink", SINK_THRESHOLD))."""
        return [x for x in self.top(role, self.scores[role].size) if x[2] > threshold]


def _probe_means(lm: LoadedModel, ids: torch.Tensor, n_repeat: int | None, batch_size: int,
                 tick: Callable[[], None]) -> dict[str, np.ndarray]:
    """Role -> (L, H) means over the sequences of `ids` (B, T), patterns reduced per layer inside the hooks."""
    H = head_counts(lm)[0]
    roles = TEXT_ROLES + (REPEAT_ROLES if n_repeat is not None else ())
    sums = {r: np.zeros((lm.n_layers, H)) for r in roles}

    def reduce(layer: int) -> Edit:  # pattern (B, H, T, T) -> role sums, not kept
        def fn(A: torch.Tensor) -> None:
            for role, v in pattern_scores(A, n_repeat).items():
                sums[role][layer] += v * A.shape[0]
        return fn

    edits = {Site("pattern", layer): reduce(layer) for layer in range(lm.n_layers)}
    for a in range(0, len(ids), batch_size):
        forward_until(lm, ids[a:a + batch_size], lm.n_layers - 1, edits=edits)
        tick()
    return {r: v / len(ids) for r, v in sums.items()}


@torch.inference_mode()
def head_scores(lm: LoadedModel, *, n_seqs: int = HeadsConfig.seqs, half_len: int = HeadsConfig.half_len,
                seed: int = 0, text_tokens: int = HeadsConfig.text_tokens, corpus: str = HeadsConfig.corpus,
                batch_size: int = 8, on_progress: Callable[[int, int], None] | None = None
                ) -> HeadScores:
    """Every role score of every head (module docstring). The model runs with eager attention for the call (its
    previous implementation is restored afterwards). Probes run in batches of `batch_size` sequences; each layer's
    pattern (batch_size, H, T, T) is reduced to (H,) scores inside its hook, so memory holds one layer's pattern at
    a time. `on_progress(done, total)` after each batch."""
    H, H_kv, _ = head_counts(lm)
    bos = bos_id(lm)
    rep = probe_ids(vocab_size(lm), n_seqs, half_len, seed, bos, exclude=lm.tokenizer.all_special_ids)
    text = text_probe_ids(lm, text_tokens, 2 * half_len, bos, corpus) if text_tokens > 0 else rep[:0]
    total = math.ceil(len(rep) / batch_size) + math.ceil(len(text) / batch_size)
    done = [0]

    def tick():
        done[0] += 1
        if on_progress:
            on_progress(done[0], total)

    prev = lm.model.config._attn_implementation
    set_attn(lm.model, "eager")
    try:
        scores = _probe_means(lm, rep, half_len, batch_size, tick)
        if len(text):
            scores.update(_probe_means(lm, text, None, batch_size, tick))
    finally:
        set_attn(lm.model, prev)
    scores["ov_copying"] = ov_copying(lm)
    return HeadScores(model=lm.name, n_layers=lm.n_layers, n_heads=H, n_kv_heads=H_kv,
                      scores={r: scores[r] for r in ALL_ROLES}, n_seqs=n_seqs, half_len=half_len, seed=seed,
                      text_windows=len(text))
