"""Logit lens (and the tuned lens through translators): what the model would predict from each block's output.

For block output h_l (l = 0..L-1) at every position: p_l = softmax(cap(unembed(final_norm(T_l(h_l))))), where T_l is
the identity (logit lens) or a learned affine translator (tuned lens, core.lens.tuned), `final_norm` is the model's
own final norm applied to that layer's stream, `unembed` the model's output embedding (with its bias if any) and
`cap` the model's final logit soft-capping if it has one (Gemma 2: c * tanh(x / c)). At l = L-1 with the identity
this is exactly the model's own output distribution (tested).

Per layer and position the result keeps the top-k tokens and probabilities, the entropy, the KL divergence from the
final distribution KL(p_final || p_l) (as the tuned-lens paper measures it), and the rank and probability of a
target token (default: the model's own final prediction at that position). Nats throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.model.intervene import store
from core.model.load import LoadedModel
from core.model.run import logits as run_logits
from core.model.run import unembed
from core.model.sites import Site
from core.model.tokens import token_texts


@dataclass
class LensResult:
    ids: list[int]
    tokens: list[str]
    """Display string of each prompt token."""
    positions: list[int]
    """The prompt positions the arrays below hold, in order (all T of them unless a subset was asked for)."""
    top_ids: np.ndarray  # (L, T, k) int64
    top_probs: np.ndarray  # (L, T, k) float32
    entropy: np.ndarray  # (L, T) float32, nats
    kl_final: np.ndarray  # (L, T) float32, KL(p_final || p_l) in nats
    target_ids: np.ndarray  # (T,) int64: the target token at each position
    target_prob: np.ndarray  # (L, T) float32
    target_rank: np.ndarray  # (L, T) int64, 0 = the top token

    def __post_init__(self) -> None:
        L, T = self.entropy.shape
        assert self.top_ids.shape[:2] == (L, T) and self.target_ids.shape == (T,) and len(self.positions) == T


ROWS = 256
"""Positions per unembedding product in `lens_of` (bounds the (rows, vocab) temporaries)."""


@dataclass
class Stream:
    """One forward pass over one sequence: what every lens and geometry view reads."""

    ids: list[int]
    embed: torch.Tensor  # (T, d_model) the stream entering block 0 (embeddings, scaled as the model scales them)
    h: torch.Tensor  # (L, T, d_model) every block's output
    logits: torch.Tensor  # (T, V) float32, the model's own output

    def __post_init__(self) -> None:
        L, T, d = self.h.shape
        assert self.embed.shape == (T, d) and self.logits.shape[0] == T == len(self.ids)


@torch.inference_mode()
def stream(lm: LoadedModel, ids: list[int]) -> Stream:
    """Embedding stream, every block's output and the model's own logits for one sequence (one forward pass)."""
    L, got = lm.n_layers, {}
    edits = {Site("resid_post", i): store(got, i) for i in range(L)} | {Site("resid_pre", 0): store(got, "embed")}
    z = run_logits(lm, torch.tensor([ids]), edits=edits)  # (1, T, V)
    h = torch.stack([got[i][0] for i in range(L)]).float()  # (L, T, d_model)
    return Stream(ids=list(ids), embed=got["embed"][0].float(), h=h, logits=z[0].float())


@torch.inference_mode()
def lens(lm: LoadedModel, ids: list[int], *, target: int | None = None, k: int = 5,
         translator: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
         positions: list[int] | None = None) -> LensResult:
    """The lens over every block and position of `ids`. `target`: one token id for every position (default: the
    model's final top-1 at each position). `translator(layer, h)`: the tuned lens's map, identity if None.
    `positions`: only these positions (the unembedding of every block at every position dominates the cost)."""
    return lens_of(lm, stream(lm, ids), target=target, k=k, translator=translator, positions=positions)


@torch.inference_mode()
def lens_of(lm: LoadedModel, s: Stream, *, target: int | None = None, k: int = 5,
            translator: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
            positions: list[int] | None = None) -> LensResult:
    """`lens` over an already computed forward pass (the page runs one pass for every view of a prompt)."""
    n = len(s.ids)
    pos = list(range(n)) if positions is None else sorted({p % n for p in positions if -n <= p < n})
    if not pos:
        raise ValueError(f"positions {positions} out of range for a {n}-token prompt")
    h, final_logits, ids = s.h[:, pos], s.logits[pos], s.ids  # (L, T, d), (T, V) over the chosen positions
    L, T = h.shape[:2]
    final_lp = torch.log_softmax(final_logits, -1)  # (T, V)
    final_p = final_lp.exp()  # (T, V)
    final_neg_ent = torch.linalg.vecdot(final_p, final_lp)  # (T,) sum_v p_f log p_f
    tgt = final_logits.argmax(-1) if target is None else torch.full((T,), int(target), dtype=torch.long)  # (T,)
    # every (layer, position) row in one matrix: the unembedding weights are read once per ROWS rows, not per layer
    x = torch.cat([h[layer] if translator is None else translator(layer, h[layer]) for layer in range(L)])  # (L*T, d)
    N = L * T
    top_ids, top_probs = np.zeros((N, k), np.int64), np.zeros((N, k), np.float32)
    ent, kl, tprob = (np.zeros(N, np.float32) for _ in range(3))
    trank = np.zeros(N, np.int64)
    for a in range(0, N, ROWS):  # bounded (ROWS, V) temporaries
        b = min(N, a + ROWS)
        t = torch.arange(a, b) % T  # (n,) position of each row
        z = unembed(lm, x[a:b])  # (n, V) logits
        lse = torch.logsumexp(z, -1)  # (n,)
        v, i = torch.topk(z, k, dim=-1)  # (n, k)
        top_ids[a:b], top_probs[a:b] = i.numpy(), (v - lse[:, None]).exp().numpy()
        zt = z.gather(1, tgt[t, None])  # (n, 1)
        trank[a:b] = (z > zt).sum(-1).numpy()
        tprob[a:b] = (zt[:, 0] - lse).exp().numpy()
        lp = z.sub_(lse[:, None])  # (n, V) log p_l, in place
        ent[a:b] = -torch.linalg.vecdot(lp.exp(), lp).numpy()
        # KL(p_f || p_l) = sum_v p_f log p_f - sum_v p_f log p_l
        kl[a:b] = (final_neg_ent[t] - torch.linalg.vecdot(final_p[t], lp)).clamp(min=0).numpy()
    top_ids, top_probs = top_ids.reshape(L, T, k), top_probs.reshape(L, T, k)
    ent, kl, tprob, trank = (arr.reshape(L, T) for arr in (ent, kl, tprob, trank))
    return LensResult(ids=list(ids), tokens=token_texts(lm.tokenizer, ids), positions=pos, top_ids=top_ids,
                      top_probs=top_probs, entropy=ent, kl_final=kl, target_ids=tgt.numpy(), target_prob=tprob,
                      target_rank=trank)


def trajectory(res: LensResult, position: int, vocab: Callable[[int], str]) -> dict:
    """The CLI's JSON for one position: the target and, per block, the top token and the target's prob and rank."""
    T = len(res.ids)
    if not -T <= position < T or position % T not in res.positions:
        raise ValueError(f"position {position} out of range for a {T}-token prompt")
    pos = position % T
    j = res.positions.index(pos)
    return {"position": pos, "token": res.tokens[pos], "target": vocab(int(res.target_ids[j])),
            "target_id": int(res.target_ids[j]),
            "layers": [{"layer": layer, "top_token": vocab(int(res.top_ids[layer, j, 0])),
                        "top_prob": float(res.top_probs[layer, j, 0]),
                        "target_prob": float(res.target_prob[layer, j]),
                        "target_rank": int(res.target_rank[layer, j]),
                        "entropy": float(res.entropy[layer, j]), "kl_final": float(res.kl_final[layer, j])}
                       for layer in range(res.entropy.shape[0])]}
