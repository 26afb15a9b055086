"""Layer similarity across models: centred kernel alignment (CKA, Kornblith et al. 2019) between every block of model
A and every block of model B, on per-prompt representations of the same prompts (each block's output at the
prompt's last token, or its mean over the prompt's tokens: core.data.prompt_sets.layer_representations), so models
with different tokenizers compare.

With X (n × p) and Y (n × q) the representations of n prompts and K = X Xᵀ, L = Y Yᵀ their linear kernels:

  linear    CKA = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L)),  HSIC(K, L) = ⟨HKH, HLH⟩_F  (H = I − 11ᵀ/n, centring).
            Equivalently ‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F) with column-centred Xᶜ, Yᶜ.
  debiased  the same ratio with the unbiased HSIC estimator (Song et al. 2012; Kornblith et al.'s "unbiased CKA"):
            with K̃, L̃ the kernels with their diagonals set to 0,
            HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3)).

Default: debiased. Linear CKA is biased upwards when the width is not small against the number of prompts (here
576–640 dimensions against a few hundred prompts): two sets of independent random vectors score well above 0. The
debiased estimate is near 0 for them and still 1 for identical representations (it can dip slightly below 0).
Both are invariant to orthogonal transforms and isotropic scaling of either side.

Every pair comes from one product: each layer's kernel is computed once, flattened, and all L_A × L_B pairs are one
matrix product of those rows (float64 throughout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.errors import UserError

KINDS = ("debiased", "linear")


class CKAError(UserError):
    """Representations that cannot be compared (one line)."""


def _stats(R: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer of R (L, n, d): (V (L, n²) the kernels to take inner products of, s (L,) their sums, r (L, n) their
    row sums) — centred kernels for linear CKA (s, r unused), zero-diagonal ones for the unbiased estimator."""
    R = np.asarray(R, np.float64)
    L, n, _ = R.shape
    if kind == "linear":
        Rc = R - R.mean(1, keepdims=True)
        K = Rc @ Rc.transpose(0, 2, 1)  # (L, n, n) = H K H for the linear kernel
        return K.reshape(L, -1), np.zeros(L), np.zeros((L, n))
    K = R @ R.transpose(0, 2, 1)
    idx = np.arange(n)
    K[:, idx, idx] = 0.0
    r = K.sum(2)
    return K.reshape(L, -1), r.sum(1), r


def _hsic(a, b, kind: str, n: int) -> np.ndarray:
    """(La, Lb) HSIC of every pair, from _stats of each side."""
    Va, sa, ra = a
    Vb, sb, rb = b
    if kind == "linear":
        return Va @ Vb.T
    return (Va @ Vb.T + np.outer(sa, sb) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ra @ rb.T)) / (n * (n - 3))


def _self_hsic(st, kind: str, n: int) -> np.ndarray:
    """(L,) HSIC of each layer with itself (the diagonal of _hsic(st, st))."""
    V, s, r = st
    if kind == "linear":
        return (V * V).sum(1)
    return ((V * V).sum(1) + s * s / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (r * r).sum(1)) / (n * (n - 3))


def cka_matrix(A: np.ndarray, B: np.ndarray, kind: str = "debiased") -> np.ndarray:
    """(L_A, L_B) CKA of every layer of A (L_A, n, d_A) against every layer of B (L_B, n, d_B), rows the same n
    prompts in the same order."""
    if kind not in KINDS:
        raise CKAError(f"unknown CKA kind {kind!r}; kinds: {', '.join(KINDS)}")
    A, B = np.asarray(A), np.asarray(B)
    if A.ndim == 2:
        A = A[None]
    if B.ndim == 2:
        B = B[None]
    if A.shape[1] != B.shape[1]:
        raise CKAError(f"CKA compares the same prompts: {A.shape[1]} representations against {B.shape[1]}")
    n = A.shape[1]
    if n < (5 if kind == "debiased" else 2):
        raise CKAError(f"{n} prompts are too few for {kind} CKA (at least {5 if kind == 'debiased' else 2})")
    sa, sb = _stats(A, kind), _stats(B, kind)
    cross = _hsic(sa, sb, kind, n)
    denom = np.sqrt(np.clip(np.outer(_self_hsic(sa, kind, n), _self_hsic(sb, kind, n)), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, cross / np.where(denom > 0, denom, 1.0), np.nan)
    return out


@dataclass
class CKAQuery:
    model: list[str]
    """The two models to compare (give --model twice; the same model twice compares it with itself)."""
    set: str = "sentiment"
    """Prompts both models read: a built-in prompt set (truth, sentiment) or a text,label CSV (labels unused)."""
    kind: Literal["debiased", "linear"] = "debiased"
    """CKA estimator: debiased (the unbiased HSIC estimator; default, near 0 for unrelated representations) or
    linear (biased upwards when the width is not small against the number of prompts)."""
    rep: Literal["last", "mean"] = "last"
    """Per-prompt representation: each block's output at the last token, or its mean over the prompt's tokens."""
    max_prompts: int = 256
    """Use at most this many prompts of the set (its first ones)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


@dataclass
class CKAResult:
    a: str
    b: str
    kind: str
    rep: str
    set: str
    prompts: int
    cka: np.ndarray  # (L_A, L_B)

    @property
    def best(self) -> list[int]:
        """For each block of A, the block of B most similar to it."""
        return [int(i) for i in np.nanargmax(np.nan_to_num(self.cka, nan=-np.inf), axis=1)]

    def as_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "kind": self.kind, "rep": self.rep, "set": self.set,
                "prompts": self.prompts, "cka": self.cka.tolist(), "best": self.best}


def compare_layers(lm_a, lm_b, texts: list[str], kind: str = "debiased", rep: str = "last",
                   reps: tuple[np.ndarray, np.ndarray] | None = None, set_name: str = "") -> CKAResult:
    """CKA of every block output of lm_a against every block output of lm_b on `texts` (module docstring); `reps`:
    the two (L, N, d) representations when already computed."""
    from core.data.prompt_sets import layer_representations

    if rep not in ("last", "mean"):
        raise CKAError(f"unknown representation {rep!r}; use last or mean")
    if kind not in KINDS:
        raise CKAError(f"unknown CKA kind {kind!r}; kinds: {', '.join(KINDS)}")
    A, B = reps if reps is not None else (layer_representations(lm_a, texts, pool=rep),
                                          layer_representations(lm_b, texts, pool=rep))
    return CKAResult(lm_a.name, lm_b.name, kind, rep, set_name, len(texts), cka_matrix(A, B, kind))


def cka_json(q: CKAQuery) -> dict:
    """`neuroboard cka`: load both models and the set, compare."""
    from core.data.prompt_sets import PromptSetError, load_prompt_set
    from core.model.load import load_model

    if len(q.model) != 2:
        raise CKAError(f"cka compares two models: give --model twice (got {len(q.model)})")
    if q.max_prompts < 5:
        raise CKAError("--max-prompts must be at least 5")
    try:
        texts = load_prompt_set(q.set).texts[: q.max_prompts]
    except PromptSetError as e:
        raise CKAError(str(e)) from None
    a = load_model(q.model[0], trust_remote_code=q.trust_remote_code)
    b = a if q.model[1] == q.model[0] else load_model(q.model[1], trust_remote_code=q.trust_remote_code)
    return compare_layers(a, b, texts, q.kind, q.rep, set_name=q.set).as_dict()
