"""Pure figure builders for feature pages (no streamlit): the feature map, the quality numbers, nearest features,
head attribution and features-on-my-text, as Plotly figures or escaped HTML."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go

from dashboard.render.svg import esc

QUALITY = (("fvu", "FVU", "{:.4f}", "Σ‖y−ŷ‖² / Σ‖y−μ‖², μ the held-out mean"),
           ("l0", "L0", "{:.1f}", "mean non-zero features per token"),
           ("dead_frac", "dead", "{:.1%}", "share of features that never fired on the held-out tokens"),
           ("ce_recovered", "CE recovered", "{:.3f}", "(CE_zero − CE_sae)/(CE_zero − CE_clean), zero ablation as the "
                                                      "baseline"),
           ("kl", "KL", "{:.4f}", "mean KL(clean ‖ spliced) per token, nats"))


def feature_map_figure(xy: np.ndarray, density: np.ndarray, labels: list[str], selected: int | None = None
                       ) -> go.Figure:
    """WebGL scatter of the features (UMAP of decoder directions), coloured by log10 density; hover shows each
    feature's top tokens; customdata carries the feature index (a click opens it)."""
    logd = np.log10(np.maximum(np.asarray(density, np.float64), 1e-7))
    tips = [f"feature {i}<br>{esc(t)}" for i, t in enumerate(labels)]
    fig = go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=np.arange(len(xy)),
                                 text=tips, hovertemplate="%{text}<extra></extra>",
                                 marker={"size": 4, "color": logd, "colorscale": "Viridis", "opacity": 0.8,
                                         "colorbar": {"title": "log10 density"}}))
    if selected is not None and 0 <= selected < len(xy):
        fig.add_trace(go.Scattergl(x=[xy[selected, 0]], y=[xy[selected, 1]], mode="markers", hoverinfo="skip",
                                   marker={"size": 14, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "red"}}))
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False,
                      xaxis={"visible": False}, yaxis={"visible": False}, dragmode="pan",
                      title="Feature map (UMAP of decoder directions); click a point to open it")
    return fig


def quality_html(q: dict | None) -> str:
    """The SAE's quality numbers as one table (or a line saying how to measure them)."""
    if not q:
        return ("<p>Quality not measured for this SAE: <code>neuroboard sae-eval --model M --sae PATH --json</code> "
                "prints FVU, L0, dead share, CE recovered and KL.</p>")
    cells = "".join(f'<td title="{esc(tip)}" style="padding:2px 14px 2px 0"><b>{esc(name)}</b><br>'
                    f'{esc(fmt.format(q[key]) if q.get(key) is not None else "–")}</td>'
                    for key, name, fmt, tip in QUALITY)
    note = (f"on {q.get('tokens', 0):,} held-out tokens; BOS/special tokens excluded (they keep their original "
            "activation in the spliced and ablated passes and count no loss)")
    return f'<table class="nb-table"><tr>{cells}</tr></table><p style="font-size:0.85em;color:#666">{esc(note)}</p>'


def links_table(rows: list[tuple[str, str, str]], head: tuple[str, str]) -> str:
    """(href, label, value) rows as an HTML table of links."""
    body = "".join(f'<tr><td><a href="{esc(h)}" target="_self">{esc(lab)}</a></td><td style="text-align:right">'
                   f'{esc(v)}</td></tr>' for h, lab, v in rows)
    return (f'<table class="nb-table"><tr><th style="text-align:left">{esc(head[0])}</th>'
            f'<th style="text-align:right">{esc(head[1])}</th></tr>{body}</table>')


def token_features_html(rows: list[dict], href: Callable[[int], str], top: int = 3) -> str:
    """Features on a text: each token with its strongest features as links (escaped)."""
    out = []
    for r in rows:
        feats = " ".join(f'<a href="{esc(href(f["feature"]))}" target="_self">{f["feature"]}</a>'
                         f'<span style="color:#888">·{f["activation"]:.2f}</span>' for f in r["features"][:top])
        out.append(f'<tr><td style="font-family:monospace;white-space:pre">{esc(repr(r["token"])[1:-1])}</td>'
                   f'<td>{feats or "<span style=color:#aaa>none</span>"}</td></tr>')
    return ('<table class="nb-table nb-featext"><tr><th style="text-align:left">token</th>'
            f'<th style="text-align:left">strongest features · activation</th></tr>{"".join(out)}</table>')
