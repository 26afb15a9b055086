"""Directions in the residual stream (block L's output, resid_post.L), each recording how it was made and how good it
is.

From a contrastive prompt set (core.data.prompt_sets: built-in or a `text,label[,group]` CSV) at block L, on the
prompts' last token (or their mean, `position="mean"`), the positive class being `positive` (default: the first label
in the file):
  diffmeans  mean(positive) − mean(negative) over the training prompts
  pca        the first principal component of the paired differences (positive − negative of each pair), uncentred
             (the top right singular vector of the difference matrix), its sign fixed so positives project higher
  probe      logistic-regression weights (scikit-learn, L2, C=1) on the training prompts
Pairs are the prompt set's groups holding one prompt of each class (matched pairs), else the i-th positive with the
i-th negative in file order. Held out: every 4th pair's prompts (prompts in no pair: every 4th), never used to make
the direction.

Quality (`DirectionQuality`):
  separation    on the held-out prompts, the AUC of the projection onto the direction (the chance a positive prompt
                projects higher than a negative one; 0.5 = none, 1 = perfect)
  pair_cosine   the mean cosine between the training pairs' individual differences (over all pairs of pairs): low
                means the pairs disagree on the direction, which predicts unreliable steering
Other sources (no quality): an SAE feature's decoder row as it lands in the stream (core.saes.features), a neuron's
output weights (its row of the down projection), a vector in a safetensors file.

    diffmeans:SET | pca:SET | probe:SET     SET a built-in name (truth, sentiment) or a CSV path
    feature:SAE_PATH:F  |  neuron:L:U  |  file:PATH.safetensors
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError

METHODS = ("diffmeans", "pca", "probe")


class DirectionError(UserError):
    """A direction that cannot be made or used as asked (one line)."""


@dataclass
class DirectionQuality:
    separation: float
    """Held-out AUC of the projection (positive above negative)."""
    pair_cosine: float
    """Mean cosine between the training pairs' differences."""
    held_out: int
    """Held-out prompts."""
    pairs: int
    """Training pairs."""


@dataclass
class Direction:
    vector: torch.Tensor  # (d_model,)
    layer: int
    """The block whose output (resid_post.L) it lives in."""
    made: dict = field(default_factory=dict)
    """How it was made: {"method", "set", "position", "positive", ...} or {"method": "feature"|"neuron"|"file", ...}."""
    quality: DirectionQuality | None = None

    def __post_init__(self) -> None:
        self.vector = torch.as_tensor(self.vector).detach().float().reshape(-1)
        if not torch.isfinite(self.vector).all() or float(self.vector.norm()) == 0:
            raise DirectionError("the direction is zero or holds NaN/Inf values")

    @property
    def unit(self) -> torch.Tensor:
        return self.vector / self.vector.norm()

    def describe(self) -> dict:
        return {"layer": self.layer, "norm": float(self.vector.norm()), "made": self.made,
                "quality": asdict(self.quality) if self.quality else None}


def _pairs(ps, pos_label: str) -> list[tuple[int, int]]:
    """(positive index, negative index) pairs: one-of-each groups, else the i-th of each class in file order."""
    if ps.groups is not None:
        by: dict[str, list[int]] = {}
        for i, g in enumerate(ps.groups):
            by.setdefault(g, []).append(i)
        out = []
        for idx in by.values():
            p = [i for i in idx if ps.labels[i] == pos_label]
            n = [i for i in idx if ps.labels[i] != pos_label]
            if len(p) == 1 and len(n) == 1:
                out.append((p[0], n[0]))
        if out:
            return out
    p = [i for i, lab in enumerate(ps.labels) if lab == pos_label]
    n = [i for i, lab in enumerate(ps.labels) if lab != pos_label]
    return list(zip(p, n, strict=False))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney)."""
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def from_prompt_set(lm, spec: str, layer: int, method: str = "diffmeans", position: str = "last",
                    positive: str | None = None, reps: np.ndarray | None = None, ps=None) -> Direction:
    """The direction `method` makes from prompt set `spec` at block `layer` (module docstring). `reps`: the set's
    (L, N, d) layer representations when already computed; `ps`: the PromptSet itself when it is not a file or a
    built-in (an upload; `spec` then only names it)."""
    from core.data.prompt_sets import PromptSetError, layer_representations, load_prompt_set

    if method not in METHODS:
        raise DirectionError(f"unknown direction method {method!r}; methods: {', '.join(METHODS)}")
    check_layer(lm, layer)
    try:
        ps = ps if ps is not None else load_prompt_set(spec)
    except PromptSetError as e:
        raise DirectionError(str(e)) from None
    labels = list(dict.fromkeys(ps.labels))
    pos_label = positive if positive is not None else labels[0]
    if pos_label not in labels:
        raise DirectionError(f"label {pos_label!r} is not in prompt set {ps.name} (labels: {', '.join(labels)})")
    X = (reps if reps is not None else layer_representations(lm, ps.texts, pool=position))[layer].astype(np.float64)
    y = np.array([lab == pos_label for lab in ps.labels])
    pairs = _pairs(ps, pos_label)
    held = {i for k, pr in enumerate(pairs) if k % 4 == 3 for i in pr}
    paired = {i for pr in pairs for i in pr}
    held |= {i for k, i in enumerate(sorted(set(range(len(y))) - paired)) if k % 4 == 3}
    train = np.array([i not in held for i in range(len(y))])
    train_pairs = [pr for pr in pairs if pr[0] not in held]
    if train[y].sum() < 1 or train[~y].sum() < 1:
        raise DirectionError(f"prompt set {ps.name} has too few prompts of a class to make a direction")
    D = np.stack([X[p] - X[n] for p, n in train_pairs]) if train_pairs else np.zeros((0, X.shape[1]))
    if method == "diffmeans":
        v = X[train & y].mean(0) - X[train & ~y].mean(0)
    elif method == "pca":
        if len(D) < 1:
            raise DirectionError(f"prompt set {ps.name} has no training pairs for pca")
        v = np.linalg.svd(D, full_matrices=False)[2][0]
        if (D @ v).mean() < 0:
            v = -v
    else:
        from sklearn.linear_model import LogisticRegression

        v = LogisticRegression(C=1.0, max_iter=2000).fit(X[train], y[train]).coef_[0]
    proj = X[~train] @ v
    Dn = D / np.linalg.norm(D, axis=1, keepdims=True).clip(1e-12)
    cos = Dn @ Dn.T
    k = len(D)
    pair_cos = float((cos.sum() - k) / (k * (k - 1))) if k > 1 else float("nan")
    q = DirectionQuality(_auc(proj[y[~train]], proj[~y[~train]]), pair_cos, int((~train).sum()), k)
    return Direction(torch.from_numpy(v.astype(np.float32)), layer,
                     {"method": method, "set": ps.name, "position": position, "positive": pos_label}, q)


def check_layer(lm, layer: int) -> None:
    if not 0 <= layer < lm.n_layers:
        raise DirectionError(f"layer {layer} is out of range for {lm.name} (layers 0-{lm.n_layers - 1})")


def from_spec(lm, spec: str, layer: int | None = None, positive: str | None = None) -> Direction:
    """A direction from a spec string (module docstring); `layer` is where a prompt-set or file direction lives
    (a feature's or neuron's layer comes from it)."""
    kind, _, rest = spec.partition(":")
    if kind in METHODS:
        if layer is None:
            raise DirectionError(f"a {kind} direction needs --layer")
        position = "last"
        if rest.endswith((":last", ":mean")):
            rest, position = rest.rsplit(":", 1)
        return from_prompt_set(lm, rest, layer, kind, position, positive)
    if kind == "neuron":
        try:
            L, u = (int(x) for x in rest.split(":"))
        except ValueError:
            raise DirectionError(f"neuron direction {spec!r}: expected neuron:LAYER:UNIT") from None
        check_layer(lm, L)
        if not 0 <= u < lm.parts.d_mlp:
            raise DirectionError(f"neuron {u} is out of range (0-{lm.parts.d_mlp - 1})")
        from core.units.logit_effects import output_direction

        return Direction(output_direction(lm, L, u), L, {"method": "neuron", "layer": L, "unit": u})
    if kind == "feature":
        return _from_feature(lm, rest)
    if kind == "file":
        return _from_file(lm, rest, layer)
    raise DirectionError(f"unknown direction {spec!r}: use diffmeans:SET, pca:SET, probe:SET, feature:SAE:F, "
                         "neuron:L:U or file:PATH.safetensors")


def _from_feature(lm, rest: str) -> Direction:
    from core.model.sites import Site
    from core.saes.features import residual_direction, sae_at
    from core.saes.sae import SAEError, check_for_model

    path, _, f = rest.rpartition(":")
    try:
        f_i = int(f)
    except ValueError:
        raise DirectionError(f"feature direction {rest!r}: expected feature:SAE_PATH:FEATURE") from None
    try:
        sae = sae_at(path)
        _, out = check_for_model(sae, lm)
    except SAEError as e:
        raise DirectionError(str(e)) from None
    if not 0 <= f_i < sae.d_sae:
        raise DirectionError(f"feature {f_i} is out of range (0-{sae.d_sae - 1})")
    site = Site.parse(str(out))
    layer = site.layer - 1 if site.kind == "resid_pre" else site.layer
    if layer < 0:
        raise DirectionError("a feature of the embeddings (resid_pre.0) has no block to steer after")
    return Direction(residual_direction(lm, site, sae.W_dec[f_i]), layer,
                     {"method": "feature", "sae": path, "feature": f_i, "site": str(site)})


def _from_file(lm, path: str, layer: int | None) -> Direction:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if p.suffix != ".safetensors":
        raise DirectionError(f"{path}: directions are read from .safetensors files only (never unpickled)")
    if layer is None:
        raise DirectionError("a direction from a file needs --layer")
    check_layer(lm, layer)
    try:
        t = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise DirectionError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:100]})") from None
    v = t.get("direction", next(iter(t.values())) if len(t) == 1 else None)
    if v is None:
        raise DirectionError(f"{path}: expected one tensor, or one named 'direction' (got {', '.join(t)})")
    return from_vector(lm, v, layer, {"method": "file", "path": path})


def from_vector(lm, v: torch.Tensor, layer: int, made: dict) -> Direction:
    """A given vector as a direction in block `layer`'s output; DirectionError for a wrong width (or, from
    Direction itself, a zero or non-finite vector)."""
    check_layer(lm, layer)
    where = made.get("path") or made.get("upload") or "the vector"
    if v.numel() != lm.parts.d_model:
        raise DirectionError(f"{where}: the direction is {v.numel()} wide but {lm.name}'s stream is "
                             f"{lm.parts.d_model}")
    return Direction(v, layer, made)
