"""Per-layer geometry of labeled representations: at which layer, and how cleanly, a model separates the labels.

Every function takes points X (N, d) and labels y (N,) of any hashable type; classes are numbered by order of first
appearance (as scikit-learn's StratifiedKFold does). Metrics (Euclidean; each checked against scikit-learn):

  probe_accuracy     stratified k-fold accuracy of an L2 logistic regression on standardized features   [0, 1]
  silhouette         mean over points of (b - a) / max(a, b)                     [-1, 1], higher = separated
  davies_bouldin     mean over classes i of max_j (S_i + S_j) / |c_i - c_j|      >= 0, lower = separated
  calinski_harabasz  (between-class / (K - 1)) / (within-class / (N - K)) dispersion   higher = separated

plus class-centroid distances and 2-D views (PCA; UMAP when umap-learn is installed). NumPy throughout except the
probe's optimiser: torch L-BFGS on CPU, fitting every layer and fold at once as one (block-separable) problem.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import UserError


class GeometryError(UserError):
    """Bad input, or an optional package missing; the message is one line."""


def encode(y: Sequence[Hashable]) -> tuple[np.ndarray, list]:
    """(codes (N,) int64, classes): class k is the k-th distinct label in order of first appearance."""
    classes = list(dict.fromkeys(y))
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index[v] for v in y], np.int64), classes


def _points(X, y) -> tuple[np.ndarray, np.ndarray, int]:
    """X as float64 (N, d), codes (N,), class count K; GeometryError unless 2 <= K <= N - 1."""
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or len(y) != len(X):
        raise GeometryError(f"expected points (N, d) and N labels, got {X.shape} and {len(y)} labels")
    codes, classes = encode(y)
    if not 2 <= len(classes) <= len(X) - 1:
        raise GeometryError(f"need between 2 and N - 1 classes, got {len(classes)} for {len(X)} points")
    return X, codes, len(classes)


def stratified_folds(codes: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Test fold of every point (N,): scikit-learn's StratifiedKFold(folds, shuffle=True, random_state=seed)
    assignment, i.e. each class's fold slots dealt round-robin over the sorted labels, then shuffled."""
    K = int(codes.max()) + 1
    alloc = np.stack([np.bincount(np.sort(codes)[i::folds], minlength=K) for i in range(folds)])  # (F, K)
    rng = np.random.RandomState(seed)
    out = np.empty(len(codes), np.int64)
    for k in range(K):
        slots = np.arange(folds).repeat(alloc[:, k])
        rng.shuffle(slots)
        out[codes == k] = slots
    return out


def group_folds(codes: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Test fold of every point (N,) keeping each group (e.g. a matched true/false pair) inside one fold: groups
    in a seeded random order, each to the fold whose fullest class share (of that class's total) stays lowest
    with it, then the smallest fold, then the lowest. Without it, near-identical twins with opposite labels land
    on both sides of a split and push the probe below chance."""
    K, G = int(codes.max()) + 1, int(groups.max()) + 1
    hist = np.zeros((G, K))
    np.add.at(hist, (groups, codes), 1)  # (G, K): labels in each group
    total = hist.sum(0)  # (K,)
    fill = np.zeros((folds, K))  # (F, K)
    fold_of = np.empty(G, np.int64)
    for g in np.random.RandomState(seed).permutation(G):
        score = ((fill + hist[g]) / total).max(1)  # (F,)
        best = np.flatnonzero(score <= score.min() + 1e-12)
        f = int(best[np.argmin(fill[best].sum(1))])
        fill[f] += hist[g]
        fold_of[g] = f
    return fold_of[groups]


def _probe_fit(X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, K: int, C: float) -> torch.Tensor:
    """Held-out predictions (L, F, N) of L x F logistic regressions, fold f trained on rows train[f] of X[l].

    X (L, N, d) float64, y (N,) int64, train (F, N) 0/1. Each fit minimises mean train cross-entropy +
    |W|^2 / (2 C n_train) (scikit-learn's objective divided by C n_train; the intercept is not penalised), on
    features standardized with the train rows' mean and population std (std 0 -> 1). Binary: one logit (sigmoid).
    The products with X run in float32 (they dominate the time); the loss and the optimiser in float64.
    """
    L, N, d = X.shape
    F, Kp = train.shape[0], 1 if K == 2 else K
    n = train.sum(1)  # (F,)
    X = X - X.mean(1, keepdim=True)  # no effect on the fits; keeps E[x^2] - E[x]^2 below accurate
    mu = torch.einsum("fn,lnd->lfd", train, X) / n[:, None]  # (L, F, d)
    var = torch.einsum("fn,lnd->lfd", train, X.pow(2)) / n[:, None] - mu.pow(2)  # (L, F, d)
    sd = var.clamp(min=0).sqrt()
    sd = torch.where(sd < 1e-12, torch.ones_like(sd), sd)
    XT = X.float().transpose(1, 2)  # (L, d, N)
    W = torch.zeros(L, F, Kp, d, dtype=X.dtype, requires_grad=True)
    b = torch.zeros(L, F, Kp, dtype=X.dtype, requires_grad=True)

    def margins() -> torch.Tensor:  # (L, F, N, Kp): logits of every point under every fold's fit
        V = W / sd[:, :, None]  # (L, F, Kp, d): weights on the raw features
        Z = (V.reshape(L, F * Kp, d).float() @ XT).double().reshape(L, F, Kp, N)  # wide output: fast skinny GEMM
        Z = Z - torch.einsum("lfd,lfkd->lfk", mu, V)[..., None] + b[..., None]
        return Z.transpose(2, 3)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        Z = margins()
        if Kp == 1:
            ce = torch.nn.functional.binary_cross_entropy_with_logits(
                Z[..., 0], y.to(X.dtype).expand(L, F, N), reduction="none")  # (L, F, N)
        else:
            ce = torch.nn.functional.cross_entropy(Z.reshape(-1, K), y.repeat(L * F), reduction="none")
            ce = ce.reshape(L, F, N)
        loss = ((ce * train).sum(-1) / n).sum() + (W.pow(2).sum((2, 3)) / (2 * C * n)).sum()
        loss.backward()
        return loss

    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=200, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")
    opt.step(closure)
    with torch.no_grad():
        Z = margins()  # (L, F, N, Kp)
        return (Z[..., 0] > 0).long() if Kp == 1 else Z.argmax(-1)


def probe_accuracies(reps: np.ndarray, y: Sequence[Hashable], folds: int = 5, seed: int = 0, C: float = 1.0, *,
                     groups: Sequence[Hashable] | None = None) -> np.ndarray:
    """probe_accuracy of every layer of reps (L, N, d), all fitted together: (L,) float64.

    Uses min(folds, smallest class size) folds (so every training fold holds every class), and with `groups`
    (N,) at most one fold per group (group_folds); at least 2.
    """
    reps = np.asarray(reps, np.float64)
    if reps.ndim != 3:
        raise GeometryError(f"expected representations (L, N, d), got shape {reps.shape}")
    _, codes, K = _points(reps[0], y)
    k = min(folds, int(np.bincount(codes).min()))
    if groups is not None:
        if len(groups) != len(codes):
            raise GeometryError(f"got {len(groups)} groups for {len(codes)} points")
        gcodes = encode(groups)[0]
        k = min(k, int(gcodes.max()) + 1)
    if k < 2:
        raise GeometryError("every label needs at least 2 points (and 2 groups) for a cross-validated probe")
    test = stratified_folds(codes, k, seed) if groups is None else group_folds(codes, gcodes, k, seed)  # (N,)
    held = test[None, :] == np.arange(k)[:, None]  # (F, N)
    with torch.inference_mode(False), torch.enable_grad():  # callers may sit in inference mode
        train = torch.as_tensor(~held, dtype=torch.float64)  # (F, N)
        pred = _probe_fit(torch.as_tensor(reps), torch.as_tensor(codes), train, K, C).numpy()  # (L, F, N)
    correct = pred == codes  # (L, F, N)
    return ((correct * held).sum(-1) / held.sum(-1)).mean(-1)  # (L,): mean of the per-fold accuracies


def probe_accuracy(X: np.ndarray, y: Sequence[Hashable], folds: int = 5, seed: int = 0, C: float = 1.0, *,
                   groups: Sequence[Hashable] | None = None) -> float:
    """Mean over stratified folds (scikit-learn's StratifiedKFold(folds, shuffle=True, random_state=seed); with
    `groups`, group_folds) of the held-out accuracy of an L2-regularised logistic regression (inverse strength C,
    multinomial for > 2 classes) fitted on features standardized on the training fold."""
    return float(probe_accuracies(np.asarray(X)[None], y, folds, seed, C, groups=groups)[0])


def _distances(X: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix (N, N) of the rows of X, through the Gram matrix of the centered points."""
    Xc = X - X.mean(0)
    sq = (Xc**2).sum(1)  # (N,)
    D2 = sq[:, None] + sq[None, :] - 2 * Xc @ Xc.T  # (N, N)
    np.fill_diagonal(D2, 0)
    return np.sqrt(np.maximum(D2, 0))


def silhouette(X: np.ndarray, y: Sequence[Hashable]) -> float:
    """Mean silhouette coefficient: a = mean distance to the rest of the own class, b = smallest mean distance to
    another class, s = (b - a) / max(a, b), s = 0 for a point alone in its class."""
    X, codes, K = _points(X, y)
    N = len(X)
    onehot = np.eye(K)[codes]  # (N, K)
    sums = _distances(X) @ onehot  # (N, K): summed distance from each point to each class
    counts = onehot.sum(0)  # (K,)
    own = counts[codes]  # (N,)
    a = sums[np.arange(N), codes] / np.maximum(own - 1, 1)
    other = sums / counts
    other[np.arange(N), codes] = np.inf
    b = other.min(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.nan_to_num((b - a) / np.maximum(a, b))
    return float(np.where(own > 1, s, 0.0).mean())


def _centroids(X: np.ndarray, codes: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class centroids (K, d), mean distance of each class's points to its centroid (K,), counts (K,)."""
    counts = np.bincount(codes, minlength=K)
    cent = np.stack([X[codes == k].mean(0) for k in range(K)])  # (K, d)
    within = np.bincount(codes, np.linalg.norm(X - cent[codes], axis=1), minlength=K) / counts
    return cent, within, counts


def davies_bouldin(X: np.ndarray, y: Sequence[Hashable]) -> float:
    """Mean over classes i of max_{j != i} (S_i + S_j) / M_ij, S_i = mean distance of class i's points to its
    centroid, M_ij = distance between centroids (0 when all S or all M are ~0, as in scikit-learn)."""
    X, codes, K = _points(X, y)
    cent, S, _ = _centroids(X, codes, K)
    M = np.linalg.norm(cent[:, None] - cent[None], axis=-1)  # (K, K)
    if np.allclose(S, 0) or np.allclose(M, 0):
        return 0.0
    M[M == 0] = np.inf
    return float(((S[:, None] + S[None]) / M).max(1).mean())


def calinski_harabasz(X: np.ndarray, y: Sequence[Hashable]) -> float:
    """(sum_k n_k |c_k - c|^2 / (K - 1)) / (sum_i |x_i - c_{y_i}|^2 / (N - K)); 1 when the within term is 0."""
    X, codes, K = _points(X, y)
    cent, _, counts = _centroids(X, codes, K)
    between = float((counts * ((cent - X.mean(0)) ** 2).sum(1)).sum())
    within = float(((X - cent[codes]) ** 2).sum())
    return 1.0 if within == 0 else between * (len(X) - K) / (within * (K - 1))


def centroid_distances(X: np.ndarray, y: Sequence[Hashable]) -> dict:
    """Class-centroid geometry. Returns a dict:

    classes: the K labels (order of first appearance); counts: (K,) points per class;
    between: (K, K) Euclidean distance between class centroids (0 on the diagonal);
    within: (K,) mean distance of each class's points to its own centroid;
    mean_between: mean of `between` over class pairs i < j (the distance itself for 2 classes);
    mean_within: unweighted mean of `within` over classes.
    """
    X, codes, K = _points(X, y)
    cent, within, counts = _centroids(X, codes, K)
    between = np.linalg.norm(cent[:, None] - cent[None], axis=-1)  # (K, K)
    return {"classes": encode(y)[1], "counts": counts, "between": between, "within": within,
            "mean_between": float(between[np.triu_indices(K, 1)].mean()), "mean_within": float(within.mean())}


def pca_2d(X: np.ndarray) -> np.ndarray:
    """Coordinates (N, 2) on the first two principal axes of the centered points (SVD). Sign: each axis's largest
    absolute loading is positive (scikit-learn's convention). Zero columns when there are fewer than 2 axes."""
    X = np.asarray(X, np.float64)
    Xc = X - X.mean(0)
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)  # (N, r), (r,), (r, d)
    r = min(2, len(S))
    signs = np.sign(Vt[np.arange(r), np.abs(Vt[:r]).argmax(1)])  # (r,)
    out = np.zeros((len(X), 2))
    out[:, :r] = U[:, :r] * S[:r] * signs
    return out


def umap_2d(X: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP embedding (N, 2) with the optional package umap-learn; GeometryError if it is not installed."""
    try:
        import umap
    except ImportError as e:
        raise GeometryError("UMAP needs the optional package umap-learn: pip install umap-learn") from e
    X = np.asarray(X, np.float32)
    model = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, len(X) - 1)), random_state=seed)
    return np.asarray(model.fit_transform(X), np.float64)


@dataclass
class SetGeometry:
    """Separation metrics of one labeled prompt set at every layer."""

    labels: list
    """Label of every prompt (N,), in prompt order."""
    probe_acc: np.ndarray  # (L,) cross-validated probe accuracy in [0, 1]
    silhouette: np.ndarray  # (L,) in [-1, 1]
    davies_bouldin: np.ndarray  # (L,) >= 0
    calinski_harabasz: np.ndarray  # (L,) >= 0
    centroid_dist: np.ndarray  # (L,) centroid_distances()["mean_between"]
    within_dist: np.ndarray  # (L,) centroid_distances()["mean_within"]
    folds: int = 5
    """Folds asked for the probe (fewer when a class is smaller)."""
    seed: int = 0
    """Seed of the probe's fold shuffle."""
    grouped: bool = False
    """Whether the probe's folds kept groups (matched pairs) together."""

    def __post_init__(self) -> None:
        L = len(self.probe_acc)
        for name in ("silhouette", "davies_bouldin", "calinski_harabasz", "centroid_dist", "within_dist"):
            if np.shape(getattr(self, name)) != (L,):
                raise GeometryError(f"{name} has shape {np.shape(getattr(self, name))}, expected ({L},)")

    @property
    def n_layers(self) -> int:
        return len(self.probe_acc)

    @property
    def classes(self) -> list:
        return encode(self.labels)[1]

    @property
    def chance(self) -> float:
        """Accuracy of always answering the most common label."""
        return float(np.bincount(encode(self.labels)[0]).max() / len(self.labels))

    def separation_layer(self, tol: float = 0.02) -> int:
        """The first layer whose probe accuracy is within `tol` of the best layer's: where the labels become
        (about as) linearly separable as they will get. Compare probe_acc.max() with `chance` before reading much
        into it: with a best accuracy near chance the labels are separated nowhere."""
        return int(np.argmax(self.probe_acc >= self.probe_acc.max() - tol))


def set_geometry(reps: np.ndarray, labels: Sequence[Hashable], folds: int = 5, seed: int = 0, *,
                 groups: Sequence[Hashable] | None = None) -> SetGeometry:
    """Every metric at every layer of reps (L, N, d) (e.g. core.data.prompt_sets.layer_representations). `groups`:
    prompts that must share a probe fold (matched pairs), see group_folds."""
    reps = np.asarray(reps, np.float64)
    if reps.ndim != 3:
        raise GeometryError(f"expected representations (L, N, d), got shape {reps.shape}")
    labels = list(labels)
    cd = [centroid_distances(x, labels) for x in reps]
    return SetGeometry(
        labels=labels, probe_acc=probe_accuracies(reps, labels, folds, seed, groups=groups),
        silhouette=np.array([silhouette(x, labels) for x in reps]),
        davies_bouldin=np.array([davies_bouldin(x, labels) for x in reps]),
        calinski_harabasz=np.array([calinski_harabasz(x, labels) for x in reps]),
        centroid_dist=np.array([c["mean_between"] for c in cd]), within_dist=np.array([c["mean_within"] for c in cd]),
        folds=folds, seed=seed, grouped=groups is not None)
