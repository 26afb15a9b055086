"""Pure builders for the heads page: layer x head role maps (clickable), attention-pattern heatmaps and the
hover-a-token view. Data in, figures or HTML out; no streamlit. All token text is HTML-escaped."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go

from dashboard.render.tokens import label as tok_text

ROLE_TITLES = {  # the page's order
    "induction": "induction", "prev_token": "previous token", "duplicate_token": "duplicate token",
    "sink": "attention sink", "current_token": "current token", "local_window": "local window",
    "entropy": "attention entropy (nats)", "ov_copying": "OV copying", "ablation_zero": "zero-ablation Δloss",
    "ablation_mean": "mean-ablation Δloss",
}


def role_map(values: np.ndarray, role: str, selected: tuple[int, int] | None = None) -> go.Figure:
    """A layer x head map of one role's scores as square markers (Plotly heatmaps cannot be clicked, markers can:
    a click selects the point, whose x is the head and y the layer). `selected` is ringed."""
    L, H = values.shape
    layer, head = np.meshgrid(np.arange(L), np.arange(H), indexing="ij")
    v = np.asarray(values, dtype=np.float64).ravel()
    scale = "RdBu" if role.startswith(("ablation", "ov_")) else "Viridis"
    lim = float(np.nanmax(np.abs(v))) if v.size and np.isfinite(v).any() else 1.0
    rng = dict(cmin=-lim, cmax=lim) if scale == "RdBu" else {}
    fig = go.Figure(go.Scatter(
        x=head.ravel(), y=layer.ravel(), mode="markers", customdata=v,
        marker=dict(symbol="square", size=max(6, min(22, 300 // max(H, L))), color=v, colorscale=scale,
                    colorbar={"thickness": 10}, line={"width": 0}, **rng),
        hovertemplate="layer %{y}, head %{x}: %{customdata:.3f}<extra></extra>"))
    if selected is not None:
        fig.add_trace(go.Scatter(x=[selected[1]], y=[selected[0]], mode="markers", hoverinfo="skip",
                                 marker={"symbol": "square-open", "size": 24, "color": "#d62728",
                                         "line": {"width": 2}}))
    fig.update_layout(title=ROLE_TITLES.get(role, role), height=max(260, 14 * L + 90), showlegend=False,
                      margin=dict(l=40, r=10, t=36, b=30), clickmode="event+select", dragmode=False)
    fig.update_xaxes(title="head", dtick=1 if H <= 16 else None, range=[-0.6, H - 0.4])
    fig.update_yaxes(title="layer", range=[L - 0.4, -0.6])
    return fig


def pattern_heatmap(pattern: np.ndarray, tokens: list[str], title: str = "") -> go.Figure:
    """(T, T) attention weights, queries as rows, keys as columns, labelled by token."""
    T = pattern.shape[0]
    labels = [f"{t}: {tok_text(s)}" for t, s in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(z=pattern, x=list(range(T)), y=list(range(T)), colorscale="Blues", zmin=0,
                               zmax=float(max(1e-9, np.nanmax(pattern))),
                               customdata=np.array([[f"{labels[q]} → {labels[k]}" for k in range(T)]
                                                    for q in range(T)], dtype=object),
                               hovertemplate="%{customdata}: %{z:.3f}<extra></extra>"))
    fig.update_xaxes(tickvals=list(range(T)), ticktext=labels, tickangle=-60, title="key")
    fig.update_yaxes(tickvals=list(range(T)), ticktext=labels, autorange="reversed", title="query")
    side = min(900, max(320, 16 * T + 160))
    fig.update_layout(title=title, height=side, margin=dict(l=90, r=10, t=40, b=90))
    return fig


TOKEN_VIEW = """<div id="nb-tv" style="font-family:monospace;line-height:1.9;white-space:pre-wrap"></div>
<div id="nb-tv-note" style="font:12px sans-serif;color:#888;margin-top:4px">hover a token: the others are shaded
by how much it attends to them</div>
<script>
const toks = __TOKENS__, att = __ATT__;
const root = document.getElementById("nb-tv");
const spans = toks.map((t, i) => {
  const s = document.createElement("span");
  s.textContent = t;  // text, never markup
  s.style.padding = "1px 0";
  s.onmouseenter = () => spans.forEach((o, k) => {
    const a = k <= i ? att[i][k] : 0;
    o.style.background = "rgba(31,119,180," + a.toFixed(3) + ")";
    o.title = k <= i ? (a * 100).toFixed(1) + "% of " + JSON.stringify(toks[i]) : "";
    o.style.outline = k === i ? "2px solid #d62728" : "";
  });
  root.appendChild(s);
  return s;
});
</script>"""


def token_view_html(tokens: list[str], pattern: np.ndarray) -> str:
    """A self-contained HTML page (for an iframe component): hovering a query token shades every key token by its
    attention weight. Tokens travel as JSON and are set with textContent, so no token text is ever parsed as HTML;
    '<' is also escaped inside the JSON so a token cannot close the script element."""
    shown = [t.replace("\n", "↵\n") for t in tokens]
    data = json.dumps(shown).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    att = json.dumps(np.round(np.asarray(pattern, dtype=np.float64), 4).tolist())
    return TOKEN_VIEW.replace("__TOKENS__", data).replace("__ATT__", att)


def top_heads_table(arrays: dict[str, np.ndarray], k: int = 5) -> list[dict]:
    """The k strongest heads of each role (largest score; for entropy the lowest, i.e. the most focused)."""
    out = []
    for role, a in arrays.items():
        flat = np.nan_to_num(np.asarray(a, np.float64), nan=-np.inf if role != "entropy" else np.inf).ravel()
        order = np.argsort(flat if role == "entropy" else -flat, kind="stable")[:k]
        H = a.shape[1]
        out += [{"role": ROLE_TITLES.get(role, role), "rank": r + 1, "layer": int(i // H), "head": int(i % H),
                 "score": float(flat[i])} for r, i in enumerate(order)]
    return out


# ----------------------------------------------------------------------------- light versions (HTML tables / SVG)
def role_map_html(values: np.ndarray, role: str, selected: tuple[int, int] | None, link) -> str:
    """A layer x head map of one role as an HTML table; every cell a link (`link(layer, head)` -> URL) that opens
    that head; signed roles (ablation, OV copying) on a red-white-blue scale around 0."""
    from dashboard.render import svg

    L, H = values.shape
    tips = np.array([[f"layer {i}, head {j}: {values[i, j]:.3f}" for j in range(H)] for i in range(L)], dtype=object)
    links = np.array([[link(i, j) for j in range(H)] for i in range(L)], dtype=object)
    return svg.grid(values, row_labels=[str(i) for i in range(L)], col_labels=[str(j) for j in range(H)], tips=tips,
                    links=links, title=ROLE_TITLES.get(role, role), selected=selected, cell=16,
                    diverging=role.startswith(("ablation", "ov_")))


def pattern_svg(pattern: np.ndarray, tokens: list[str], title: str = "") -> str:
    """(T, T) attention weights as inline SVG, queries as rows, keys as columns."""
    from dashboard.render import svg

    labels = [f"{t}: {svg.visible_short(s, 10)}" for t, s in enumerate(tokens)]
    return svg.matrix(pattern, labels=labels, title=title or None)


def top_heads_html(arrays: dict[str, np.ndarray], k: int = 5) -> str:
    from dashboard.render import svg

    rows = top_heads_table(arrays, k)
    return svg.table(["role", "rank", "layer", "head", "score"],
                     [[r["role"], r["rank"], r["layer"], r["head"], r["score"]] for r in rows],
                     align=["left", "right", "right", "right", "right"])
