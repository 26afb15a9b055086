"""Trajectory figures: pure builders checked on their traces' data."""

import numpy as np
import plotly.graph_objects as go
import torch

from core.geometry.residual import residual_geometry
from core.lens.logit import LensResult, Stream
from dashboard.render import lens as lc


def fake_result(L=3, T=4, k=2) -> LensResult:
    rng = np.random.default_rng(0)
    probs = np.sort(rng.random((L, T, k)).astype(np.float32), -1)[..., ::-1].copy()
    return LensResult(ids=[1, 2, 3, 4][:T], tokens=["<b>", " a", "\n", " c"][:T], positions=list(range(T)),
                      top_ids=rng.integers(0, 5, (L, T, k)), top_probs=probs,
                      entropy=rng.random((L, T)).astype(np.float32), kl_final=rng.random((L, T)).astype(np.float32),
                      target_ids=np.arange(T), target_prob=rng.random((L, T)).astype(np.float32),
                      target_rank=rng.integers(0, 9, (L, T)))


VOCAB = ["<script>", " x", "y", "&", " z"]


def test_lens_grid_cells_and_escaping():
    res = fake_result()
    res.top_ids[0, 0, 0] = 0  # "<script>"
    fig = lc.lens_grid(res, VOCAB.__getitem__, "t")
    assert isinstance(fig, go.Figure)
    hm = fig.data[0]
    np.testing.assert_array_equal(np.asarray(hm.z), res.top_probs[:, :, 0])
    for layer in range(3):
        for t in range(4):
            assert hm.text[layer][t] == lc.tok_text(VOCAB[res.top_ids[layer, t, 0]])
            assert hm.customdata[layer][t].count("<br>") == 1  # top-2 here: two lines
    flat = "".join(hm.text.ravel()) + "".join(fig.layout.xaxis.ticktext)
    assert "<script>" not in flat and "&lt;script&gt;" in flat and "&lt;b&gt;" in flat and "↵" in flat


def test_depth_lines_align_by_relative_depth_and_mark_quiet():
    a, b = lc.Series("a", np.arange(4.0)), lc.Series("b", np.arange(8.0), color=1, dash="dash")
    fig = lc.depth_lines([a, b], "y", highlight={"b": [2, 5]})
    np.testing.assert_allclose(fig.data[0].x, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(fig.data[1].x, (np.arange(8) + 1) / 8)
    assert fig.data[1].line.dash == "dash" and fig.data[0].line.color != fig.data[1].line.color
    np.testing.assert_allclose(fig.data[2].x, [3 / 8, 6 / 8])
    np.testing.assert_allclose(fig.data[2].y, [2.0, 5.0])


def test_target_chart_and_norm_heatmap():
    res = fake_result()
    fig = lc.target_chart([("m", res, 2, " Paris")])
    np.testing.assert_allclose(fig.data[0].y, res.target_prob[:, 2])
    np.testing.assert_allclose(fig.data[1].y, res.target_rank[:, 2] + 1)
    T, d = 4, 8
    s = Stream(ids=[0] * T, embed=torch.ones(T, d), h=torch.ones(2, T, d) * torch.tensor([2.0, 4.0])[:, None, None],
               logits=torch.zeros(T, 3))
    geo = residual_geometry(s)
    hm = lc.norm_heatmap(geo, ["a", "b", "c", "<i>"]).data[0]
    np.testing.assert_allclose(np.asarray(hm.z), np.log10(geo.norms))
    assert list(hm.y) == [-1, 0, 1]


def test_scatter_one_trace_per_label():
    xy = np.arange(12.0).reshape(6, 2)
    fig = lc.scatter_2d(xy, ["t", "f", "t", "f", "t", "t"], ["<a>", "b", "c", "d", "e", "f"])
    assert [tr.name for tr in fig.data] == ["f", "t"]
    np.testing.assert_allclose(fig.data[1].x, [0, 4, 8, 10])
    assert fig.data[1].customdata[0] == "&lt;a&gt;"
