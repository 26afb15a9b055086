"""Pure builders for the steering and patching pages: data -> escaped HTML (dashboard.render.svg's grids and
tables). No streamlit here; every token text is escaped by svg.grid / svg.table / esc."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dashboard.render import svg
from dashboard.render.tokens import visible

PATCH_TITLES = {"resid": "Residual stream (block input) · layer × position",
                "attn": "Attention output · layer × position", "mlp": "MLP output · layer × position",
                "heads": "Each head's output (all positions) · layer × head"}


def patch_grids_html(res: dict) -> dict[str, str]:
    """{grid name: HTML heatmap} of a patching result (core.interventions.patching.PatchResult.as_dict): rows are
    layers, columns positions (token shown) or heads; red-white-blue around 0, 1 = the clean behaviour restored."""
    toks = [svg.visible_short(t) for t in res["tokens"]]
    out = {}
    for name, title in PATCH_TITLES.items():
        v = np.asarray(res[name], np.float64)
        cols = toks if name != "heads" else [str(h) for h in range(v.shape[1])]
        rows = [str(L) for L in range(v.shape[0])]
        tips = np.array([[f"layer {r}, {'head' if name == 'heads' else 'position'} {c}"
                          + (f" ({res['tokens'][c]!r})" if name != "heads" else "") + f": {v[r, c]:.3f}"
                          for c in range(v.shape[1])] for r in range(v.shape[0])], dtype=object)
        text = np.vectorize(lambda x: f"{x:.1f}" if abs(x) >= 0.05 else "")(v)
        out[name] = svg.grid(v, row_labels=rows, col_labels=cols, tips=tips, text=text, diverging=True, title=title,
                             cell=24)
    return out


def backpatch_html(bp: dict) -> str:
    """Source (row) × target (column) grid of the answer's probability after back-patching, rank in each cell."""
    p, r = np.asarray(bp["prob"]), np.asarray(bp["rank"])
    n = p.shape[0]
    tips = np.array([[f"block {s}'s output written over block {t}'s: p={p[s, t]:.3f}, rank {r[s, t]}"
                      for t in range(n)] for s in range(n)], dtype=object)
    text = np.vectorize(lambda x: str(x) if x < 100 else "")(r)
    return svg.grid(p, row_labels=[str(s) for s in range(n)], col_labels=[str(t) for t in range(n)], tips=tips,
                    text=text, vmin=0.0, title=f"P({bp['answer']!r}) · source block (row) → target block (column); "
                    f"cell text: rank (unpatched p={bp['base_prob']:.3f}, rank {bp['base_rank']})", cell=20)


def continuation_html(prompt: str, default: Sequence[str], steered: Sequence[str], diverge: int,
                      label: str = "steered") -> str:
    """Default and steered continuations one above the other; tokens from the first difference on are marked."""
    def line(label: str, toks: Sequence[str], colour: str) -> str:
        spans = "".join(f'<span style="background:{colour if diverge >= 0 and i >= diverge else "transparent"}">'
                        f"{svg.esc(visible(t))}</span>" for i, t in enumerate(toks))
        return (f'<div style="margin:2px 0"><b style="display:inline-block;width:70px">{label}</b>'
                f'<span style="color:#888">{svg.esc(prompt)}</span>{spans}</div>')
    note = f"they differ from generated token {diverge} on" if diverge >= 0 else "identical"
    return (f'<div class="nb-steer" style="font-family:monospace;font-size:0.9em">{line("default", default, "#fde2c8")}'
            f'{line(label, steered, "#cfe3f7")}<div style="color:#666;font-size:0.85em">{note}</div></div>')


def shift_html(gained: Sequence, lost: Sequence) -> str:
    """The next-token tokens most raised and most lowered by steering (p before -> after)."""
    up = svg.table(["gained", "p default", "p steered"], [(repr(t)[1:-1], float(a), float(b)) for t, a, b in gained],
                   title="Next token: most raised")
    down = svg.table(["lost", "p default", "p steered"], [(repr(t)[1:-1], float(a), float(b)) for t, a, b in lost],
                     title="Next token: most lowered")
    return f'<div style="display:flex;gap:24px">{up}{down}</div>'


def sweep_html(res: dict) -> dict[str, str]:
    """{name: HTML} grids of a sweep (layer rows × α columns): behaviour score, side-effect KL, fluency perplexity,
    and per layer the anti-steerable share."""
    layers, alphas = res["layers"], res["alphas"]
    cols, rows = [f"{a:g}" for a in alphas], [str(L) for L in layers]
    out = {}
    for key, title, div in (("score", "Behaviour score (the unsteered model's reading of the continuation along the "
                                      "direction, in stream norms)", True),
                            ("kl", "Side effects: KL(unsteered ‖ steered) on neutral text, nats/token", False),
                            ("ppl", "Fluency: perplexity of the continuation under the unsteered model", False)):
        v = np.asarray(res[key], np.float64)
        tips = np.array([[f"layer {L}, α={a:g}: {v[i, j]:.4g}" for j, a in enumerate(alphas)]
                         for i, L in enumerate(layers)], dtype=object)
        text = np.vectorize(lambda x: f"{x:.2g}")(v)
        out[key] = svg.grid(v, row_labels=rows, col_labels=cols, tips=tips, text=text, diverging=div, title=title,
                            cell=34)
    anti = res["anti_steerable"]
    slopes = np.asarray(res["slopes"])
    out["anti"] = svg.table(["layer", "median slope", "anti-steerable share"],
                            [(L, float(np.median(slopes[i])), float(anti[i])) for i, L in enumerate(layers)],
                            title="Per layer: the prompts' steerability (slope of score against α)")
    return out


# ----------------------------------------------------------------------------- Plotly versions (exports)
def shift_figure(gained: Sequence, lost: Sequence):
    """Grouped bars: the next-token probability of the most raised and most lowered tokens, default beside steered;
    hover shows both values. Token labels escaped (Plotly renders a subset of HTML)."""
    import plotly.graph_objects as go

    from dashboard.render.tokens import label

    rows = list(gained) + list(lost)
    names = [f"{label(t)} ({'+' if i < len(gained) else '−'})" for i, (t, _, _) in enumerate(rows)]
    fig = go.Figure([go.Bar(name=n, x=names, y=[float(r[k]) for r in rows], marker_color=c,
                            hovertemplate=f"%{{x}}: p {n} %{{y:.4g}}<extra></extra>")
                     for n, k, c in (("default", 1, "#f58518"), ("steered", 2, "#4c78a8"))])
    fig.update_layout(barmode="group", height=300, yaxis_title="next-token probability",
                      margin=dict(l=50, r=10, t=30, b=80), title="Next token: most raised (+) and lowered (−)")
    return fig


def patch_heatmap(res: dict, name: str):
    """One patching grid (PatchResult.as_dict()[name]) as a Plotly heatmap, red-white-blue around 0; hover shows
    layer, position (token) or head, and the normalised value."""
    import plotly.graph_objects as go

    from dashboard.render.tokens import label

    v = np.asarray(res[name], np.float64)
    cols = ([f"{p}: {label(t)}" for p, t in enumerate(res["tokens"])] if name != "heads"
            else [f"head {h}" for h in range(v.shape[1])])
    lim = max(float(np.nanmax(np.abs(v))) if v.size else 1.0, 1e-9)
    fig = go.Figure(go.Heatmap(z=v, x=cols, y=list(range(v.shape[0])), colorscale="RdBu", zmid=0, zmin=-lim,
                               zmax=lim, hovertemplate="layer %{y}, %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=PATCH_TITLES[name], height=320 + 6 * v.shape[0], yaxis_title="layer",
                      margin=dict(l=50, r=10, t=40, b=60))
    return fig
