"""Scoring an explanation: a judge reads it and labels windows (detection: does the unit fire somewhere here?
fuzzing: are the marked tokens the right ones?); the labels are compared with the truth.

  balanced accuracy  (TPR + TNR) / 2: 0.5 for a judge that always says yes (or always no), 1 for a perfect one
  F1                 2·precision·recall / (precision + recall) of the positive class
  AUC                the chance a positive window gets a higher judge score than a negative one (ties count half),
                     when the judge gives scores (log-probabilities), else None
  embedding AUC      embedding scoring: the AUC of the cosine similarity between the explanation's sentence embedding
                     and each window's (all-MiniLM-L6-v2); needs no judge model, so it still reads when the judge is
                     too small to (the built-in 135M judge is at chance even with hand-written explanations)
Control: each unit is scored again with another unit's explanation (control_pairs: a derangement, no unit with its
own), so a score can be read against what an unrelated explanation gets on the same windows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def confusion(truth: Sequence[int], pred: Sequence[int]) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn)."""
    tp = sum(1 for t, p in zip(truth, pred, strict=True) if t and p)
    fp = sum(1 for t, p in zip(truth, pred, strict=True) if not t and p)
    tn = sum(1 for t, p in zip(truth, pred, strict=True) if not t and not p)
    fn = sum(1 for t, p in zip(truth, pred, strict=True) if t and not p)
    return tp, fp, tn, fn


def balanced_accuracy(truth: Sequence[int], pred: Sequence[int]) -> float | None:
    tp, fp, tn, fn = confusion(truth, pred)
    if not (tp + fn) or not (tn + fp):
        return None
    return (tp / (tp + fn) + tn / (tn + fp)) / 2


def f1(truth: Sequence[int], pred: Sequence[int]) -> float | None:
    tp, fp, _, fn = confusion(truth, pred)
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None


def auc(truth: Sequence[int], scores: Sequence[float]) -> float | None:
    pos = [s for t, s in zip(truth, scores, strict=True) if t]
    neg = [s for t, s in zip(truth, scores, strict=True) if not t]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def metrics(truth: Sequence[int], pred: Sequence[int | None], scores: Sequence[float] | None = None) -> dict:
    """Balanced accuracy, F1 and AUC over the windows the judge answered (None: unparsed, left out, counted)."""
    keep = [i for i, p in enumerate(pred) if p is not None]
    t, p = [truth[i] for i in keep], [pred[i] for i in keep]
    return {"bacc": balanced_accuracy(t, p), "f1": f1(t, p),
            "auc": auc(t, [scores[i] for i in keep]) if scores is not None else None,
            "n": len(keep), "unparsed": len(pred) - len(keep)}


def control_pairs(units: Sequence, seed: int = 0) -> dict:
    """{unit: another unit} whose explanation is the unit's control: a random derangement (never itself); a single
    unit has no control."""
    units = list(units)
    if len(units) < 2:
        return {}
    rng = random.Random(seed)
    order = units[:]
    rng.shuffle(order)
    return {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}


def embedding_auc(explanation: str, pos: Sequence[str], neg: Sequence[str], embed) -> float | None:
    """Embedding scoring (after delphi's embedding scorer): the AUC of the cosine similarity between the
    explanation's sentence embedding and each window's, activating windows against non-activating ones. `embed`
    maps texts to unit-norm rows (core.autointerp.search.embed). Cheap, and independent of the explainer model."""
    return embedding_aucs([explanation], pos, neg, embed)[0]


def embedding_aucs(explanations: Sequence[str], pos: Sequence[str], neg: Sequence[str], embed) -> list[float | None]:
    """embedding_auc of each explanation on the same windows, which are embedded once."""
    if not pos or not neg:
        return [None] * len(explanations)
    W, Q = embed([*pos, *neg]), embed(list(explanations))
    truth = [1] * len(pos) + [0] * len(neg)
    return [auc(truth, [float(x) for x in W @ q]) for q in Q]



def free_runs(docs: Sequence[tuple[int, int]], blocked: dict[int, set[int]], min_len: int) -> list[tuple[int, int, int]]:
    """[(doc_id, lo, hi)), hi exclusive: the maximal stretches of each document (doc_id, n_tokens) holding no blocked
    position, at least `min_len` tokens long."""
    out = []
    for d, n in docs:
        lo = 0
        for p in sorted(q for q in blocked.get(d, ()) if 0 <= q < n) + [n]:
            if p - lo >= min_len:
                out.append((d, lo, p))
            lo = max(lo, p + 1)
    return out


def negative_spans(runs: list[tuple[int, int, int]], lengths: Sequence[int], min_len: int, rng: random.Random
                   ) -> list[tuple[int, int, int]]:
    """One window per wanted length, [(doc_id, lo, hi)] with hi inclusive, drawn from the free stretches `runs`
    (free_runs): a stretch at random, the window as long as wanted or as the stretch, at a random place in it; the
    stretch's rest stays free when `min_len` tokens or more, so no two windows overlap. Fewer windows when the
    stretches run out."""
    runs, out = list(runs), []
    for want in lengths:
        if not runs:
            break
        d, a, b = runs.pop(rng.randrange(len(runs)))
        n = min(want, b - a)
        lo = rng.randrange(a, b - n + 1)
        out.append((d, lo, lo + n - 1))
        runs += [(d, x, y) for x, y in ((a, lo), (lo + n, b)) if y - x >= min_len]
    return out
