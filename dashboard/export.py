"""One self-contained HTML file of findings (`neuroboard export`, the findings page's button): Plotly's JavaScript
inlined once, no network, every figure interactive (hover, zoom), token highlights, notes and manifests. Figures
come from the same pure builders the pages use (dashboard.render), drawn from each finding's snapshot; every text
from a finding (titles, notes, tokens, prompts, URLs, manifests) is HTML-escaped. No streamlit here.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from core.errors import UserError
from dashboard.render import interventions as ri
from dashboard.render import lens as rl
from dashboard.render import tokens as rt
from dashboard.render import units as ru

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-top:1px solid #ddd;padding-top:1em}
.note{white-space:pre-wrap;background:#f7f7f9;padding:8px 12px;border-left:3px solid #4c78a8}
.url{font-size:0.8em;color:#666;word-break:break-all}details pre{font-size:0.75em;overflow-x:auto}
.nb-tok{border-radius:2px}"""


class ExportError(UserError):
    """An export that cannot be written (one line)."""


def _fig(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _unit(s: dict) -> list[str]:
    out = []
    st = s.get("stats", {})
    out.append(f"<p>{html.escape(s.get('model', ''))}, run {s.get('run')}, "
               f"{'SAE ' + str(s.get('layer')) + ' feature' if s.get('kind') == 'features' else 'layer ' + str(s.get('layer')) + ' neuron'} "
               f"{s.get('unit')}: density {float(st.get('density') or 0):.4g}, max {float(st.get('max') or 0):.4g}, "
               f"mean {float(st.get('mean') or 0):.4g} over {int(st.get('n_tokens') or 0):,} tokens</p>")
    if s.get("hist") is not None and s.get("hist_exp") is not None:
        out.append(_fig(ru.activation_histogram(s["hist"], int(s["hist_exp"]), positive_only=s.get("kind") == "features")))
    vmax = max([max(ex["live"], default=0.0) for ex in s.get("examples", [])], default=0.0)
    for ex in s.get("examples", []):
        out.append(rt.example_html(ex["tokens"], ex["live"], vmax, ex["focus"],
                                   f"doc {ex['doc_id']}, position {ex['position']}: {ex['live'][ex['focus']]:.4g}"))
    return out


def _lens(s: dict) -> list[str]:
    layers = s.get("layers", [])
    series = [rl.Series("p(top token)", np.array([r["top_prob"] for r in layers]), 0),
              rl.Series(f"p({s.get('target')!r})", np.array([r["target_prob"] for r in layers]), 1)]
    fig = rl.depth_lines(series, "probability", title=f"{s.get('lens', 'logit')} lens of {s.get('model')} at "
                         f"position {s.get('position')} ({s.get('token')!r})")
    rows = "".join(f"<tr><td>{r['layer']}</td><td>{html.escape(rt.visible(r['top_token']))}</td>"
                   f"<td>{r['top_prob']:.3f}</td><td>{r['target_prob']:.3g}</td><td>{r['target_rank']}</td></tr>"
                   for r in layers)
    return [f"<p>Prompt: <code>{html.escape(s.get('prompt', ''))}</code></p>", _fig(fig),
            "<table><tr><th>block</th><th>top token</th><th>p</th><th>p(target)</th><th>rank</th></tr>"
            f"{rows}</table>"]


def _steer(s: dict) -> list[str]:
    return [ri.continuation_html(s.get("prompt", ""), s.get("default_tokens", []), s.get("steered_tokens", []),
                                 s.get("diverge", -1), label="ablated" if s.get("layer", 0) == -1 else "steered"),
            _fig(ri.shift_figure(s.get("gained", []), s.get("lost", []))),
            f"<p>KL(default ‖ steered) of the next token: {float(s.get('next_token_kl', 0)):.4g} nats</p>"]


def _patch(s: dict) -> list[str]:
    return [f"<p>Clean logit difference {s['clean_diff']:.3f}, corrupted {s['corrupted_diff']:.3f}</p>"] + [
        _fig(ri.patch_heatmap(s, name)) for name in ri.PATCH_TITLES]


def _stream(s: dict) -> list[str]:
    fig = rl.depth_lines([rl.Series(s.get("model", ""), np.array(s["median_update"], np.float64))],
                         "median ‖h_l − h_{l−1}‖ / ‖h_{l−1}‖", title="How much each block changes the stream",
                         highlight={s.get("model", ""): s.get("quiet", [])})
    return [f"<p>Prompt: <code>{html.escape(s.get('prompt', ''))}</code></p>", _fig(fig)]


def _sets(s: dict) -> list[str]:
    series = [rl.Series(n, np.array(m["probe_acc"], np.float64), i) for i, (n, m) in enumerate(s["models"].items())]
    out = [f"<p>Prompt set {html.escape(str(s.get('set')))}, {s.get('prompts')} prompts</p>",
           _fig(rl.depth_lines(series, "probe accuracy", title="Where the labels separate"))]
    if s.get("cka"):
        c = s["cka"]
        v = np.asarray(c["values"], np.float64)
        fig = go.Figure(go.Heatmap(z=v, zmin=0, zmax=1, colorscale="Blues",
                                   hovertemplate="A block %{y}, B block %{x}: CKA %{z:.3f}<extra></extra>"))
        fig.update_layout(title=f"{c['kind']} CKA: rows {html.escape(c['a'])}, columns {html.escape(c['b'])}",
                          height=360, xaxis_title="block of B", yaxis_title="block of A")
        out.append(_fig(fig))
    return out


def _heads(s: dict) -> list[str]:
    from dashboard.render import heads as rh

    roles = list(s.get("scores", {}))
    fig = go.Figure(go.Bar(x=roles, y=[s["scores"][r] for r in roles], marker_color="#4c78a8",
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"Head {s['layer']}.{s['head']} of {html.escape(s.get('model', ''))}: role scores",
                      height=300)
    out = [_fig(fig)]
    if s.get("pattern"):
        out.append(_fig(rh.pattern_heatmap(np.asarray(s["pattern"]), s["tokens"], "attention pattern on the text")))
    return out


def _circuits(s: dict) -> list[str]:
    from dashboard.render import circuits as rc

    g = s.get("graph") or {}
    targets = ", ".join(repr(t) for t in g.get("targets") or []) or "its most probable tokens"
    paths = "".join(f"<li>{p['strength']:.3f}: {html.escape(' → '.join(p['nodes']))}</li>" for p in s.get("paths", []))
    return [f"<p>Attribution graph of {html.escape(repr(g.get('prompt', '')))} → {html.escape(targets)} "
            f"({html.escape(str(g.get('model', '')))}, transcoders {html.escape(str(g.get('transcoders', '')))})</p>",
            rc.scores_html(g.get("scores") or {}), rc.subgraph_svg(s, s.get("tokens", [])), rc.supernodes_html(s),
            f"<p>Strongest paths into the logit (product of normalised edge weights):</p><ol>{paths}</ol>"]


RENDER = {"neurons": _unit, "features": _unit, "trajectories": _lens, "steering": _steer, "patching": _patch,
          "stream": _stream, "sets": _sets, "heads": _heads, "circuits": _circuits}


def finding_html(f) -> str:
    """One finding's section: title, note, its live URL, figures from its snapshot, its manifest."""
    draw = RENDER.get(f.snapshot.get("kind", f.page), lambda s: ["<p>(no figures for this page)</p>"])
    try:
        body = draw(f.snapshot)
    except (KeyError, TypeError, ValueError, IndexError) as e:  # a snapshot from an older or edited file
        body = [f"<p>(the figures of this finding could not be drawn from its snapshot: {html.escape(repr(e))})</p>"]
    return (f'<section class="finding" id="finding-{f.finding_id}"><h2>{html.escape(f.title)}</h2>'
            + (f'<div class="note">{html.escape(f.note)}</div>' if f.note else "")
            + f'<p class="url">Live view: {html.escape(f.url)}</p>' + "".join(body)
            + "<details><summary>Manifest (what these numbers depend on; `neuroboard recheck` recomputes them)"
            f"</summary><pre>{html.escape(json.dumps(f.manifest, indent=1))}</pre></details></section>")


def report_html(findings: list, title: str = "neuroboard findings") -> str:
    from plotly.offline import get_plotlyjs

    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{len(findings)} finding{'s' * (len(findings) != 1)}; every figure "
            "is interactive (hover for values); this file needs no network.</p>"
            + "".join(finding_html(f) for f in findings) + "</body></html>")


def export(findings: list, out: str | Path, title: str = "neuroboard findings") -> Path:
    """Write the report to `out` (through a temporary file in the same folder, so a failed write leaves nothing
    half-written). ExportError (one line) if it cannot be written."""
    out = Path(out)
    text = report_html(findings, title)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    return out
