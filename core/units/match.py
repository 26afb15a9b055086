"""Matching units across two unit sets: which neuron or SAE feature of B corresponds to each of A.

Two routes:
  corr    Pearson correlation of the two units' activations on the same tokens (the two sets read the same token
          ids: the same tokenizer; BOS and other special tokens left out, their outsized activations would decide
          every correlation). Accumulated in float64 over token batches (Σa, Σb, Σa², Σb², Σaᵀb), so memory
          is bounded by the m × k table, not by the number of tokens. A unit constant over the tokens (dead)
          correlates with nothing (0).
  cosine  cosine between decoder directions (two SAEs of the same model and site: their W_dec rows).
From the m × k score table:
  best        many-to-one: for each unit of A, the unit of B with the highest score (several may pick the same one)
  one_to_one  a one-to-one assignment maximising the total score (Hungarian method, scipy's linear_sum_assignment)
and the distribution of the best scores (how many of A's units have a close counterpart at all).

Unit sets: `neurons.L` (block L's MLP neurons) or `sae:PATH` (an SAE's features, on its own site), each on a loaded
model; core.saes.features computes SAE activations from the site the SAE reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from core.errors import UserError


class MatchError(UserError):
    """Unit sets that cannot be matched (one line)."""


class CorrAccumulator:
    """Streaming Pearson correlation between the columns of A (N, m) and B (N, k) given in row batches."""

    def __init__(self, m: int, k: int) -> None:
        self.n = 0
        self.sa, self.sb = np.zeros(m), np.zeros(k)
        self.qa, self.qb = np.zeros(m), np.zeros(k)
        self.ab = np.zeros((m, k))

    def add(self, A: np.ndarray | torch.Tensor, B: np.ndarray | torch.Tensor) -> None:
        A = torch.as_tensor(A).double()
        B = torch.as_tensor(B).double()
        if A.shape[0] != B.shape[0]:
            raise MatchError(f"the two unit sets were read on {A.shape[0]} and {B.shape[0]} tokens")
        self.n += A.shape[0]
        self.sa += A.sum(0).numpy()
        self.sb += B.sum(0).numpy()
        self.qa += (A * A).sum(0).numpy()
        self.qb += (B * B).sum(0).numpy()
        self.ab += (A.T @ B).numpy()

    def corr(self) -> np.ndarray:
        """(m, k) correlations; 0 where a unit is constant."""
        n = max(self.n, 1)
        cov = self.ab / n - np.outer(self.sa / n, self.sb / n)
        va = np.clip(self.qa / n - (self.sa / n) ** 2, 0, None)
        vb = np.clip(self.qb / n - (self.sb / n) ** 2, 0, None)
        den = np.sqrt(np.outer(va, vb))
        tiny = 1e-12 * max(float(den.max(initial=0.0)), 1e-300)
        return np.where(den > tiny, cov / np.where(den > tiny, den, 1.0), 0.0)


def cosine_table(Wa: torch.Tensor, Wb: torch.Tensor) -> np.ndarray:
    """(m, k) cosine between rows of Wa (m, d) and Wb (k, d)."""
    if Wa.shape[-1] != Wb.shape[-1]:
        raise MatchError(f"decoder directions of width {Wa.shape[-1]} and {Wb.shape[-1]} cannot be compared "
                         "(cosine matching needs the same model and site)")
    a = Wa.double() / Wa.double().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = Wb.double() / Wb.double().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (a @ b.T).numpy()


@dataclass
class Matching:
    by: str
    best: np.ndarray  # (m,) index into B
    best_score: np.ndarray  # (m,)
    pairs: np.ndarray  # (p, 2) one-to-one (a, b)
    pair_score: np.ndarray  # (p,)
    meta: dict = field(default_factory=dict)

    def histogram(self, bins: int = 20) -> tuple[list[float], list[int]]:
        """(edges, counts) of the best scores over [-1, 1]."""
        counts, edges = np.histogram(self.best_score, bins=bins, range=(-1.0, 1.0))
        return edges.tolist(), counts.tolist()

    def as_dict(self) -> dict:
        edges, counts = self.histogram()
        return self.meta | {"by": self.by, "best": self.best.tolist(), "best_score": self.best_score.tolist(),
                            "one_to_one": [[int(a), int(b), float(s)] for (a, b), s in
                                           zip(self.pairs, self.pair_score, strict=True)],
                            "hist_edges": edges, "hist_counts": counts,
                            "median_best": float(np.median(self.best_score)) if len(self.best_score) else None}


def match_table(score: np.ndarray, by: str, one_to_one: bool = True) -> Matching:
    """Many-to-one best matches and (when asked) the one-to-one assignment maximising the total score."""
    score = np.asarray(score, np.float64)
    best = score.argmax(1)
    best_score = score[np.arange(len(score)), best]
    if one_to_one:
        from scipy.optimize import linear_sum_assignment

        r, c = linear_sum_assignment(score, maximize=True)
        pairs, pair_score = np.stack([r, c], 1), score[r, c]
    else:
        pairs, pair_score = np.zeros((0, 2), int), np.zeros(0)
    return Matching(by, best, best_score, pairs, pair_score)


def _unit_reader(lm, spec: str):
    """(site, n_units, fn(site activation (B, T, d)) -> (B, T, n_units)) for a unit-set spec."""
    from core.model.sites import Site, SiteError

    if spec.startswith("sae:"):
        from core.saes.features import sae_at
        from core.saes.sae import SAEError, check_for_model

        try:
            sae = sae_at(spec.removeprefix("sae:"))
            site, _ = check_for_model(sae, lm)
        except SAEError as e:
            raise MatchError(str(e)) from None
        return str(site), sae.d_sae, lambda x: sae.encode(x.float())
    try:
        site = Site.parse(spec)
    except SiteError as e:
        raise MatchError(str(e)) from None
    if site.kind != "neurons":
        raise MatchError(f"unit set {spec!r}: use neurons.L or sae:PATH")
    if not 0 <= site.layer < lm.n_layers:
        raise MatchError(f"unit set {spec!r}: layer {site.layer} is out of range (layers 0-{lm.n_layers - 1})")
    return str(site), lm.parts.d_mlp, lambda x: x.float()


@torch.inference_mode()
def unit_activations(lm, specs: list[str], ids: torch.Tensor) -> list[torch.Tensor]:
    """[(B·T, n_units) per spec] the unit sets' activations on token batch ids (B, T), one pass."""
    from core.model.intervene import store
    from core.model.run import forward_until

    readers = [_unit_reader(lm, s) for s in specs]
    got: dict = {}
    last = max(int(site.split(".")[1]) for site, _, _ in readers)
    forward_until(lm, ids, last, edits={site: store(got, site) for site, _, _ in readers})
    return [fn(got[site]).reshape(-1, n) for site, n, fn in readers]


@dataclass
class MatchQuery:
    a: str
    """Unit set A: neurons.L or sae:PATH (an SAE folder or params.npz)."""
    b: str
    """Unit set B: neurons.L or sae:PATH."""
    model: list[str]
    """The model both unit sets live in, or two models (give --model twice: A's, then B's; they must share a
    tokenizer for correlation matching)."""
    by: str = "corr"
    """corr (activation correlation on the same tokens) or cosine (decoder directions of two SAEs of the same model
    and site)."""
    corpus: str = "demo"
    """Corpus the activations are read on (corr): demo, a text file or folder, or a dataset name."""
    tokens: int = 16384
    """Tokens to correlate over."""
    context_len: int = 128
    """Tokens per window."""
    one_to_one: bool = True
    """Also compute the one-to-one assignment (Hungarian; m × k table)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


def _models(q: MatchQuery, load=None):
    if load is None:
        from core.model.load import load_model

        def load(name):
            return load_model(name, trust_remote_code=q.trust_remote_code)
    if len(q.model) not in (1, 2):
        raise MatchError(f"give --model once (both sets in one model) or twice (got {len(q.model)})")
    names = q.model if len(q.model) == 2 else q.model * 2
    lm_a = load(names[0])
    lm_b = lm_a if names[1] == names[0] else load(names[1])
    return names, lm_a, lm_b


def _paired(q: MatchQuery, lm_a, lm_b, on_tokens=None):
    """(A (n, m), B (n, k)) activation batches of the two unit sets on the same corpus tokens, special tokens left
    out."""
    from core.data.corpus import CorpusError, sample_windows

    if q.tokens < 2 or q.context_len < 1:
        raise MatchError("--tokens must be at least 2 and --context-len positive")
    _unit_reader(lm_a, q.a), _unit_reader(lm_b, q.b)  # bad specs: one line before any pass
    try:
        wins = sample_windows(q.corpus, lm_a.tokenizer, n_tokens=q.tokens, context_len=q.context_len)
    except CorpusError as e:
        raise MatchError(str(e)) from None
    if lm_b is not lm_a:
        check_same_tokens(lm_a, lm_b)
    special = set(getattr(lm_a.tokenizer, "all_special_ids", []) or [])
    done = 0
    for w in wins:
        x = torch.tensor([w])
        keep = torch.tensor([t not in special for t in w])  # BOS and other special tokens left out
        if lm_b is lm_a:
            A, B = unit_activations(lm_a, [q.a, q.b], x)
        else:
            A, B = unit_activations(lm_a, [q.a], x)[0], unit_activations(lm_b, [q.b], x)[0]
        done += len(w)
        if on_tokens:
            on_tokens(done, q.tokens)
        yield A[keep], B[keep]


def match_units(q: MatchQuery, on_tokens=None, load=None) -> dict:
    """`neuroboard match`: load the model(s), read both unit sets, score, match; Matching.as_dict() plus settings."""
    if q.by not in ("corr", "cosine"):
        raise MatchError(f"--by {q.by!r}: use corr or cosine")
    if q.tokens < 2 or q.context_len < 1:  # before loading any model (_paired checks again, for best_matches)
        raise MatchError("--tokens must be at least 2 and --context-len positive")
    names, lm_a, lm_b = _models(q, load)
    meta = {"a": q.a, "b": q.b, "model_a": lm_a.name, "model_b": lm_b.name}
    if q.by == "cosine":
        if not (q.a.startswith("sae:") and q.b.startswith("sae:")):
            raise MatchError("cosine matching compares SAE decoder directions: give two sae:PATH sets (or --by corr)")
        from core.saes.features import sae_at

        sa, sb = (_unit_reader(lm, s) for lm, s in ((lm_a, q.a), (lm_b, q.b)))
        if names[0] != names[1] or sa[0] != sb[0]:
            raise MatchError(f"cosine matching needs the same model and site (got {sa[0]} and {sb[0]})")
        table = cosine_table(sae_at(q.a.removeprefix("sae:")).W_dec, sae_at(q.b.removeprefix("sae:")).W_dec)
        return match_table(table, "cosine", q.one_to_one).as_dict() | meta
    acc = None
    for A, B in _paired(q, lm_a, lm_b, on_tokens):
        if acc is None:
            acc = CorrAccumulator(A.shape[1], B.shape[1])
        acc.add(A, B)
    if acc is None or acc.n < 2:
        raise MatchError(f"corpus {q.corpus!r} gave fewer than 2 tokens")
    return match_table(acc.corr(), "corr", q.one_to_one).as_dict() | meta | {"tokens": acc.n}


def best_matches(q: MatchQuery, unit: int, k: int = 5, load=None) -> list[tuple[int, float]]:
    """The k units of B whose activations correlate most with unit `unit` of A on the same tokens: [(b, corr)]."""
    names, lm_a, lm_b = _models(q, load)
    acc = None
    for A, B in _paired(q, lm_a, lm_b):
        if not 0 <= unit < A.shape[1]:
            raise MatchError(f"unit {unit} is out of range (0-{A.shape[1] - 1})")
        if acc is None:
            acc = CorrAccumulator(1, B.shape[1])
        acc.add(A[:, unit: unit + 1], B)
    if acc is None or acc.n < 2:
        raise MatchError(f"corpus {q.corpus!r} gave fewer than 2 tokens")
    c = acc.corr()[0]
    order = np.argsort(-c)[:k]
    return [(int(j), float(c[j])) for j in order]


def check_same_tokens(lm_a, lm_b) -> None:
    """MatchError unless the two models' tokenizers have the same vocabulary (the same token ids mean the same
    strings)."""
    if lm_a.tokenizer.get_vocab() != lm_b.tokenizer.get_vocab():
        raise MatchError(f"{lm_a.name} and {lm_b.name} tokenize differently: correlation matching needs the same "
                         "tokens (compare layers across tokenizers with `neuroboard cka`)")
