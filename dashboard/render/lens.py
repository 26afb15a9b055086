"""Pure figure builders for the trajectories page: lens grids, per-layer lines aligned by relative depth, residual
geometry. Data in, `go.Figure` out; no streamlit. Token text goes through `render.tokens.label` (HTML-escaped: Plotly renders
a subset of HTML tags in labels and decodes entities, so escaping shows the text exactly)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.render.tokens import label as tok_text

if TYPE_CHECKING:  # data classes only: a figure builder needs no model
    from core.geometry.residual import ResidualGeometry
    from core.lens.logit import LensResult

COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756"]


def rel_depth(n_layers: int) -> np.ndarray:
    """(L,) relative depth of block l: (l + 1) / L, so the last block of every model sits at 1.0."""
    return (np.arange(n_layers) + 1) / n_layers


def lens_grid(res: LensResult, vocab: Callable[[int], str], title: str = "") -> go.Figure:
    """Layer x position heatmap of the top-1 token, coloured by its probability; hover: the top-5."""
    L, T, k = res.top_ids.shape
    text = np.empty((L, T), dtype=object)
    hover = np.empty((L, T), dtype=object)
    for layer in range(L):
        for t in range(T):
            ids, ps = res.top_ids[layer, t], res.top_probs[layer, t]
            text[layer, t] = tok_text(vocab(int(ids[0])))
            hover[layer, t] = "<br>".join(f"{tok_text(vocab(int(i)))}  {p:.3f}" for i, p in zip(ids, ps, strict=True))
    labels = [f"{p}: {tok_text(res.tokens[p])}" for p in res.positions]
    fig = go.Figure(go.Heatmap(
        z=res.top_probs[:, :, 0], x=list(res.positions), y=list(range(L)), text=text, customdata=hover,
        texttemplate="%{text}", textfont={"size": 9}, colorscale="Blues", zmin=0, zmax=1,
        colorbar={"title": "p(top-1)", "thickness": 12},
        hovertemplate="layer %{y}, position %{x}<br>%{customdata}<extra></extra>"))
    fig.update_xaxes(tickvals=list(res.positions), ticktext=labels, tickangle=-60, title="input token")
    fig.update_yaxes(title="layer (block output)", dtick=max(1, L // 15))
    fig.update_layout(title=title, height=max(320, 18 * L + 160), margin=dict(l=50, r=10, t=40, b=120))
    return fig


@dataclass
class Series:
    """One model's per-layer values for a line chart."""

    name: str
    values: np.ndarray  # (L,)
    color: int = 0
    """Index into COLORS: one colour per model."""
    dash: str = "solid"
    """Line style: one per variant of the same model (e.g. logit vs tuned lens)."""


def depth_lines(series: Sequence[Series], y_title: str, *, log_y: bool = False, title: str = "",
                highlight: dict[str, list[int]] | None = None) -> go.Figure:
    """Per-layer lines of one or more models against relative depth (l+1)/L; hover shows the block number.
    `highlight`: {series name: layers} drawn as red markers (e.g. quiet blocks)."""
    fig = go.Figure()
    for s in series:
        v = np.asarray(s.values, dtype=np.float64)
        x = rel_depth(v.size)
        fig.add_trace(go.Scatter(x=x, y=v, name=s.name, mode="lines+markers", customdata=np.arange(v.size),
                                 line={"color": COLORS[s.color % len(COLORS)], "dash": s.dash}, marker={"size": 5},
                                 hovertemplate=f"{html.escape(s.name)}<br>block %{{customdata}}: %{{y:.4g}}"
                                               "<extra></extra>"))
        marks = (highlight or {}).get(s.name) or []
        if marks:
            fig.add_trace(go.Scatter(x=x[marks], y=v[marks], mode="markers", name=f"{s.name}: quiet",
                                     marker={"color": "#d62728", "size": 11, "symbol": "circle-open"},
                                     hoverinfo="skip"))
    fig.update_xaxes(title="relative depth (block + 1) / L", range=[0, 1.02])
    fig.update_yaxes(title=y_title, type="log" if log_y else "linear")
    fig.update_layout(title=title, height=300, margin=dict(l=50, r=10, t=40, b=40),
                      legend={"orientation": "h", "y": -0.25})
    return fig


def target_chart(series: Sequence[tuple[str, LensResult, int, str]]) -> go.Figure:
    """Target probability and rank across depth at one position: (model name, result, position, target text)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("p(target)", "rank of target (0 = top)"))
    for i, (name, res, pos, target) in enumerate(series):
        L = res.target_prob.shape[0]
        x, c = rel_depth(L), COLORS[i % len(COLORS)]
        label = f"{html.escape(name)}: {tok_text(target)}"
        for col, y, fmt in ((1, res.target_prob[:, pos], ".4f"), (2, res.target_rank[:, pos] + 1, "d")):
            fig.add_trace(go.Scatter(x=x, y=y, name=label, legendgroup=name, showlegend=col == 1,
                                     mode="lines+markers", line={"color": c}, marker={"size": 5},
                                     customdata=np.arange(L),
                                     hovertemplate=f"{label}<br>block %{{customdata}}: %{{y:{fmt}}}<extra></extra>"),
                          row=1, col=col)
    fig.update_yaxes(type="log", title="rank + 1", row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_xaxes(title="relative depth", range=[0, 1.02])
    fig.update_layout(height=300, margin=dict(l=50, r=10, t=40, b=40), legend={"orientation": "h", "y": -0.3})
    return fig


def norm_heatmap(geo: ResidualGeometry, tokens: list[str], title: str = "") -> go.Figure:
    """log10 of the stream's L2 norm per (stream, position); row 0 is the embedding stream."""
    L1, T = geo.norms.shape
    labels = [f"{t}: {tok_text(s)}" for t, s in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(z=np.log10(np.maximum(geo.norms, 1e-12)), x=list(range(T)), y=list(range(-1, L1 - 1)),
                               customdata=geo.norms, colorscale="Viridis", colorbar={"title": "log10 ‖h‖"},
                               hovertemplate="block %{y}, position %{x}: ‖h‖ = %{customdata:.4g}<extra></extra>"))
    fig.update_xaxes(tickvals=list(range(T)), ticktext=labels, tickangle=-60)
    fig.update_yaxes(title="block (-1 = embeddings)")
    fig.update_layout(title=title, height=max(300, 12 * L1 + 150), margin=dict(l=50, r=10, t=40, b=110))
    return fig


def scatter_2d(xy: np.ndarray, labels: Sequence[str], texts: Sequence[str], title: str = "") -> go.Figure:
    """A 2-D projection of labelled prompts, one colour per label; hover shows the prompt."""
    fig = go.Figure()
    for i, lab in enumerate(sorted(set(labels))):
        m = np.array([x == lab for x in labels])
        fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=html.escape(str(lab)),
                                   marker={"color": COLORS[i % len(COLORS)], "size": 6, "opacity": 0.8},
                                   customdata=[html.escape(t) for t, k in zip(texts, m, strict=True) if k],
                                   hovertemplate="%{customdata}<extra>" + html.escape(str(lab)) + "</extra>"))
    fig.update_layout(title=title, height=380, margin=dict(l=40, r=10, t=40, b=40), xaxis_title="component 1",
                      yaxis_title="component 2")
    return fig


# ----------------------------------------------------------------------------- light versions (HTML tables / SVG)
def lens_grid_html(res: LensResult, vocab: Callable[[int], str], title: str = "", max_positions: int = 32) -> str:
    """The lens grid as an HTML table: a row per block (the last on top), a column per position (at most the last
    `max_positions`), each cell the top-1 token coloured by its probability; hover shows the top-5."""
    from dashboard.render import svg

    L, T, _ = res.top_ids.shape
    cols = list(range(max(0, T - max_positions), T))
    rows = list(range(L - 1, -1, -1))
    text = np.empty((len(rows), len(cols)), dtype=object)
    tips = np.empty((len(rows), len(cols)), dtype=object)
    for a, layer in enumerate(rows):
        for b, t in enumerate(cols):
            ids, ps = res.top_ids[layer, t], res.top_probs[layer, t]
            text[a, b] = svg.visible_short(vocab(int(ids[0])))
            tips[a, b] = f"block {layer}, position {res.positions[t]}: " + ", ".join(
                f"{vocab(int(i))!r} {p:.3f}" for i, p in zip(ids, ps, strict=True))
    note = f" (the last {len(cols)} of {T} positions)" if len(cols) < T else ""
    return svg.grid(res.top_probs[rows][:, cols, 0], row_labels=[str(r) for r in rows],
                    col_labels=[svg.visible_short(res.tokens[res.positions[t]]) for t in cols], tips=tips, text=text,
                    vmin=0.0, vmax=1.0, title=(title + note) or None, cell=34)


def depth_lines_svg(series: Sequence[Series], y_title: str, *, log_y: bool = False, title: str = "",
                    highlight: dict[str, list[int]] | None = None) -> str:
    """`depth_lines` as inline SVG: each series against relative depth; hover shows the block and value."""
    from dashboard.render import svg

    lines = [(s.name, rel_depth(len(s.values)), np.asarray(s.values, np.float64)) for s in series]
    tips = [[f"{s.name}: block {i}: {svg.fmt(float(v))}" for i, v in enumerate(s.values)] for s in series]
    return svg.lines(lines, xlabel="relative depth (block + 1) / L", ylabel=y_title, log_y=log_y, title=title or None,
                     marks=highlight, point_tips=tips)


def target_chart_svg(series: Sequence[tuple[str, LensResult, int, str]]) -> str:
    """`target_chart` as two inline SVG charts side by side: p(target) and rank + 1 across depth."""

    prob = [Series(f"{n}: {t!r}", r.target_prob[:, p], i) for i, (n, r, p, t) in enumerate(series)]
    rank = [Series(f"{n}: {t!r}", r.target_rank[:, p] + 1.0, i) for i, (n, r, p, t) in enumerate(series)]
    return ('<div style="display:flex;gap:16px;flex-wrap:wrap">'
            f'<div style="flex:1;min-width:320px">{depth_lines_svg(prob, "p(target)", title="p(target)")}</div>'
            f'<div style="flex:1;min-width:320px">{depth_lines_svg(rank, "rank + 1", log_y=True, title="rank of target (0 = top)")}</div>'
            "</div>")


def norm_grid_html(geo: ResidualGeometry, tokens: list[str], title: str = "", max_positions: int = 32) -> str:
    """The stream's L2 norm per (stream, position) as an HTML table coloured by log10 norm (the last block on top;
    -1: the embedding stream); at most the last `max_positions` positions."""
    from dashboard.render import svg

    L1, T = geo.norms.shape
    cols = list(range(max(0, T - max_positions), T))
    rows = list(range(L1 - 1, -1, -1))
    z = np.log10(np.maximum(geo.norms[rows][:, cols], 1e-12))
    tips = np.array([[f"block {r - 1}, position {t}: |h| = {geo.norms[r, t]:.4g}" for t in cols] for r in rows],
                    dtype=object)
    note = f" (the last {len(cols)} of {T} positions)" if len(cols) < T else ""
    return svg.grid(z, row_labels=[str(r - 1) for r in rows], col_labels=[svg.visible_short(tokens[t]) for t in cols],
                    tips=tips, title=(title + note) or None, cell=20)


def scatter_svg(xy: np.ndarray, labels: Sequence[str], texts: Sequence[str], title: str = "") -> str:
    """`scatter_2d` as inline SVG: one colour per label; hover shows the prompt."""
    from dashboard.render import svg

    return svg.scatter(xy, [str(x) for x in labels], [f"{lab}: {t}" for lab, t in zip(labels, texts, strict=True)],
                       title=title or None)
