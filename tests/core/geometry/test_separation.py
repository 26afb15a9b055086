"""Geometry metrics against scikit-learn (a test-only dependency) on Gaussian blobs, separable and overlapping,
with 2 and 3 classes; the probe against scikit-learn's own cross-validated pipeline on the same folds."""

import sys

import numpy as np
import pytest
import torch
from sklearn import metrics
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.geometry.separation import (
    GeometryError,
    SetGeometry,
    calinski_harabasz,
    centroid_distances,
    davies_bouldin,
    encode,
    group_folds,
    pca_2d,
    probe_accuracies,
    probe_accuracy,
    set_geometry,
    silhouette,
    stratified_folds,
    umap_2d,
)


def blobs(seed, k=2, sep=4.0, n=60, d=10):
    """k Gaussian blobs of n points in d dims, centers `sep` apart on average; labels as strings."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * sep / np.sqrt(2 * d)
    codes = np.arange(k * n) % k
    X = centers[codes] + rng.normal(size=(k * n, d))
    return X, np.array([f"class{c}" for c in codes])


CASES = [(seed, k, sep) for seed in (0, 1, 2) for k in (2, 3) for sep in (8.0, 0.5)]


@pytest.mark.parametrize(("seed", "k", "sep"), CASES)
def test_cluster_metrics_equal_sklearn(seed, k, sep):
    X, y = blobs(seed, k, sep)
    assert silhouette(X, y) == pytest.approx(metrics.silhouette_score(X, y), rel=1e-6)
    assert davies_bouldin(X, y) == pytest.approx(metrics.davies_bouldin_score(X, y), rel=1e-6)
    assert calinski_harabasz(X, y) == pytest.approx(metrics.calinski_harabasz_score(X, y), rel=1e-6)


def test_metrics_with_uneven_classes_and_a_singleton():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(31, 4)) * 3
    y = [0] * 20 + [1] * 10 + [2]
    assert silhouette(X, y) == pytest.approx(metrics.silhouette_score(X, y), rel=1e-6)
    assert davies_bouldin(X, y) == pytest.approx(metrics.davies_bouldin_score(X, y), rel=1e-6)
    assert calinski_harabasz(X, y) == pytest.approx(metrics.calinski_harabasz_score(X, y), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 3])
def test_folds_equal_sklearn(seed, k):
    _, y = blobs(seed, k, n=23)
    codes = np.unique(y, return_inverse=True)[1]
    want = np.empty(len(y), np.int64)
    for f, (_, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(y, y)):
        want[test] = f
    assert (stratified_folds(codes, 5, seed) == want).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 3])
def test_probe_separable(seed, k):
    X, y = blobs(seed, k, sep=12.0, d=40)
    assert probe_accuracy(X, y, seed=seed) >= 0.98


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_probe_chance_on_shuffled_noise(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 50))
    y = rng.permutation(np.repeat(["a", "b"], 100))
    assert 0.35 <= probe_accuracy(X, y, seed=seed) <= 0.65


@pytest.mark.parametrize(("seed", "k", "sep", "C"), [(*case, 1.0) for case in CASES] + [(0, 2, 0.5, 0.05),
                                                                                    (0, 3, 8.0, 0.05)])
def test_probe_equals_sklearn(seed, k, sep, C):
    X, y = blobs(seed, k, sep, n=50, d=30)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, tol=1e-8))
    want = cross_val_score(pipe, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed)).mean()
    assert abs(probe_accuracy(X, y, folds=5, seed=seed, C=C) - want) <= 0.05


def test_probe_layers_fitted_together_and_in_inference_mode():
    Xs, ys = zip(*(blobs(s, 2, sep, n=40, d=20) for s, sep in [(0, 0.3), (1, 2.0), (2, 8.0)]), strict=True)
    reps = np.stack(Xs)  # (3, 80, 20): same labels in every layer
    with torch.inference_mode():
        acc = probe_accuracies(reps, ys[0], seed=0)
    assert acc.shape == (3,)
    for layer in range(3):
        assert acc[layer] == pytest.approx(probe_accuracy(reps[layer], ys[0], seed=0), abs=0.03)


def matched_pairs(seed, n_pairs=100, d=20):
    """Twins with opposite labels and no label signal: each pair is one random point plus tiny noise."""
    rng = np.random.default_rng(seed)
    X = np.repeat(rng.normal(size=(n_pairs, d)), 2, axis=0) + 0.05 * rng.normal(size=(2 * n_pairs, d))
    return X, ["true", "false"] * n_pairs, np.arange(2 * n_pairs) // 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matched_pairs_leak_across_folds_unless_grouped(seed):
    X, y, pair = matched_pairs(seed)
    assert probe_accuracy(X, y, seed=seed) < 0.4  # the twin in the training fold votes for the wrong label
    assert 0.4 <= probe_accuracy(X, y, seed=seed, groups=pair) <= 0.6


@pytest.mark.parametrize("seed", [0, 1])
def test_group_folds_keep_groups_whole_and_balanced(seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, size=150)
    groups = rng.integers(0, 40, size=150)
    fold = group_folds(codes, groups, 5, seed)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1
    per_class = np.stack([np.bincount(fold[codes == k], minlength=5) for k in range(3)])  # (K, F)
    assert (per_class.max(1) - per_class.min(1) <= per_class.sum(1) / 5).all()
    pair = np.arange(40) // 2
    fold = group_folds(encode(["t", "f"] * 20)[0], pair, 5, seed)
    assert set(np.bincount(fold)) == {8}


def test_centroid_distances_by_hand():
    X = np.array([[0.0, 0], [2, 0], [10, 0], [10, 4], [10, 8]])
    cd = centroid_distances(X, ["a", "a", "b", "b", "b"])
    assert cd["classes"] == ["a", "b"] and list(cd["counts"]) == [2, 3]
    np.testing.assert_allclose(cd["between"], [[0, np.hypot(9, 4)], [np.hypot(9, 4), 0]])
    np.testing.assert_allclose(cd["within"], [1.0, 8 / 3])
    assert cd["mean_between"] == pytest.approx(np.hypot(9, 4)) and cd["mean_within"] == pytest.approx(11 / 6)


@pytest.mark.parametrize(("n", "d"), [(120, 10), (40, 200)])
def test_pca_equals_sklearn_up_to_sign(n, d):
    X, _ = blobs(0, 2, 3.0, n=n // 2, d=d)
    ours = pca_2d(X)
    want = PCA(n_components=2, svd_solver="full").fit_transform(X)
    for j in range(2):
        sign = np.sign(ours[:, j] @ want[:, j])
        np.testing.assert_allclose(ours[:, j], sign * want[:, j], rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(pca_2d(X), ours)  # deterministic
    flipped = pca_2d(X * np.array([-1] + [1] * (d - 1)))  # sign is fixed by the loadings, not by chance
    assert np.allclose(np.abs(flipped), np.abs(ours))
    assert pca_2d(X[:, :1]).shape == (n, 2) and (pca_2d(X[:, :1])[:, 1] == 0).all()


def test_umap_needs_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap raises ImportError
    with pytest.raises(GeometryError, match="pip install umap-learn") as e:
        umap_2d(np.zeros((10, 3)))
    assert "\n" not in str(e.value)


def test_set_geometry_finds_the_separating_layer():
    rng = np.random.default_rng(0)
    L, n, d = 6, 60, 16
    codes = np.arange(2 * n) % 2
    direction = rng.normal(size=d)
    shift = np.array([0, 0, 0, 6, 6, 6])[:, None, None]  # layers 3.. separate the labels
    reps = rng.normal(size=(L, 2 * n, d)) + shift * codes[None, :, None] * direction / np.linalg.norm(direction)
    labels = ["neg", "pos"] * n
    g = set_geometry(reps, labels)
    assert isinstance(g, SetGeometry) and g.n_layers == L and g.classes == ["neg", "pos"] and g.chance == 0.5
    for arr in (g.probe_acc, g.silhouette, g.davies_bouldin, g.calinski_harabasz, g.centroid_dist, g.within_dist):
        assert arr.shape == (L,)
    assert not g.grouped and set_geometry(reps[:1], labels, groups=np.arange(2 * n) // 2).grouped
    assert g.separation_layer() == 3 and g.probe_acc[3:].min() >= 0.95 and g.probe_acc[:3].max() <= 0.75
    assert g.silhouette[3] > g.silhouette[0] and g.davies_bouldin[3] < g.davies_bouldin[0]
    assert g.silhouette[4] == pytest.approx(metrics.silhouette_score(reps[4], labels), rel=1e-6)
    with pytest.raises(GeometryError, match="silhouette"):
        SetGeometry(labels, g.probe_acc, g.silhouette[:2], g.davies_bouldin, g.calinski_harabasz, g.centroid_dist,
                    g.within_dist)


def test_bad_input():
    X = np.zeros((4, 2))
    with pytest.raises(GeometryError, match="between 2 and N - 1 classes"):
        silhouette(X, ["a"] * 4)
    with pytest.raises(GeometryError, match="N labels"):
        davies_bouldin(X, ["a", "b"])
    with pytest.raises(GeometryError, match="at least 2 points"):
        probe_accuracy(X, ["a", "b", "b", "b"])
    with pytest.raises(GeometryError, match="2 groups"):
        probe_accuracy(X, ["a", "b", "a", "b"], groups=[0, 0, 0, 0])
    with pytest.raises(GeometryError, match="3 groups for 4 points"):
        probe_accuracy(X, ["a", "b", "a", "b"], groups=[0, 1, 2])
    with pytest.raises(GeometryError, match=r"\(L, N, d\)"):
        set_geometry(X, ["a", "b", "a", "b"])
