"""Pure figure builders: data in, `go.Figure` out. No streamlit here."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def hist_edges(hist_exp: int, n_bins: int) -> np.ndarray:
    """(n_bins + 1,) edges of an index histogram: 2F bins of width 2^e/F over (-2^e, 2^e]."""
    F = n_bins // 2
    w = 2.0**hist_exp / F
    return -(2.0**hist_exp) + w * np.arange(n_bins + 1)


def activation_histogram(hist: list[int] | np.ndarray, hist_exp: int, positive_only: bool = False) -> go.Figure:
    """Bars of a unit's exact activation histogram; trims empty tails; optionally only the active (> 0) side."""
    counts = np.asarray(hist, dtype=np.int64)
    edges = hist_edges(hist_exp, counts.size)
    if positive_only:
        counts, edges = counts[counts.size // 2:], edges[counts.size // 2:]
    nz = np.nonzero(counts)[0]
    lo, hi = (nz[0], nz[-1] + 1) if nz.size else (0, counts.size)
    centers = (edges[lo:hi] + edges[lo + 1: hi + 1]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts[lo:hi], width=np.diff(edges[lo: hi + 1]), marker_color="#4c78a8",
                           hovertemplate="(%{customdata[0]:.4g}, %{customdata[1]:.4g}]: %{y} tokens<extra></extra>",
                           customdata=np.stack([edges[lo:hi], edges[lo + 1: hi + 1]], 1)))
    fig.update_layout(xaxis_title="activation", yaxis_title="tokens", bargap=0, height=260,
                      margin=dict(l=40, r=10, t=10, b=40))
    return fig


def logit_effect_histogram(values: np.ndarray, bins: int = 80) -> go.Figure:
    """Distribution over the vocabulary of a unit's direct effect on the logits."""
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#72b7b2",
                           hovertemplate="%{x:.3g}: %{y} tokens<extra></extra>"))
    fig.update_layout(xaxis_title="logit effect", yaxis_title="tokens", yaxis_type="log", bargap=0, height=220,
                      margin=dict(l=40, r=10, t=10, b=40))
    return fig


# ----------------------------------------------------------------------------- light versions (inline SVG / HTML)
def activation_histogram_svg(hist: list[int] | np.ndarray, hist_exp: int, title: str | None = None,
                             nonzero: bool = False) -> str:
    """The exact activation histogram as inline SVG (render.svg.bars), empty tails trimmed, hover per bin.
    `nonzero`: leave out the bin (-w, 0] that holds the zeros (an SAE feature's non-zero activations)."""
    from dashboard.render import svg

    counts = np.asarray(hist, dtype=np.int64).copy()
    if nonzero:
        counts[counts.size // 2 - 1] = 0
    edges = hist_edges(hist_exp, counts.size)
    nz = np.nonzero(counts)[0]
    lo, hi = (nz[0], nz[-1] + 1) if nz.size else (0, counts.size)
    return svg.bars(edges[lo: hi + 1], counts[lo:hi], xlabel="activation", ylabel="tokens", log_y=True, title=title)


def logit_effects_html(effects, vocab: list[str], k: int = 10) -> str:
    """The k most promoted and suppressed tokens side by side (HTML tables) and the effect's distribution over
    the vocabulary (inline SVG, log counts)."""
    from dashboard.render import svg

    vals = np.asarray(effects.values, np.float64)
    up = svg.table(["promoted", "effect"], [(repr(vocab[i])[1:-1], float(vals[i])) for i in effects.top_ids[:k]],
                   align=["left", "right"])
    down = svg.table(["suppressed", "effect"], [(repr(vocab[i])[1:-1], float(vals[i]))
                                                for i in effects.bottom_ids[:k]], align=["left", "right"])
    counts, edges = np.histogram(vals, bins=80)
    hist = svg.bars(edges, counts, xlabel="logit effect", ylabel="tokens", log_y=True, color="#72b7b2",
                    tip="{lo} to {hi}: {n} tokens", height=170)
    return (f'<div style="display:flex;gap:32px;flex-wrap:wrap"><div>{up}</div><div>{down}</div></div>{hist}')
