"""Figure builders checked on their data."""

import numpy as np
import plotly.graph_objects as go

from dashboard.render.units import activation_histogram, hist_edges, logit_effect_histogram


def test_activation_histogram_bins_and_trim():
    F = 8
    hist = np.zeros(2 * F, int)
    hist[F - 1], hist[F], hist[F + 2] = 5, 7, 1  # (-w, 0], (0, w], (2w, 3w]
    fig = activation_histogram(hist, hist_exp=1)
    assert isinstance(fig, go.Figure)
    bar = fig.data[0]
    w = 2.0 / F
    np.testing.assert_allclose(bar.x, [-w / 2, w / 2, 3 * w / 2, 5 * w / 2])  # trimmed to the non-empty span
    assert list(bar.y) == [5, 7, 0, 1]
    pos = activation_histogram(hist, hist_exp=1, positive_only=True).data[0]
    assert list(pos.y) == [7, 0, 1] and pos.x[0] > 0
    np.testing.assert_allclose(hist_edges(1, 2 * F)[[0, F, -1]], [-2, 0, 2])


def test_logit_effect_histogram_counts_every_token():
    vals = np.random.default_rng(0).normal(size=5000)
    fig = logit_effect_histogram(vals, bins=50)
    assert isinstance(fig, go.Figure)
    assert sum(fig.data[0].y) == 5000 and len(fig.data[0].x) == 50
