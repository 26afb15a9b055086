"""Attribution graphs drawn (pure: data in, escaped HTML/SVG or a go.Figure out; no streamlit): the graph as layers ×
token positions, the pinned subgraph with its supernodes, edge tables and the graph's scores. Every label — token
text, node labels, supernode names — goes through svg.esc.

Nodes are sized by influence (core.circuits.wire: a node's cumulative share, small = important; a logit by its
probability) and coloured by kind; edges by |weight| (width) and sign (blue raises the target, red lowers it); the
strongest paths into the chosen logit are underlaid in yellow. A node links to the page with `node=ID` (`link`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

from core.circuits.explore import GraphDoc, label, row_of
from dashboard.render.svg import FONT, esc, fmt, table, visible_short

KIND_COLORS = {"feature": "#4c78a8", "error": "#9d9d9d", "token": "#54a24b", "logit": "#f58518",
               "supernode": "#b279a2"}
POS, NEG, PATH = "#4c78a8", "#d62728", "#ffd54f"
SCORES_NOTE = ("Replacement score: of the influence that reaches the prompt, the share arriving at tokens through "
               "features rather than at reconstruction errors (1: the features explain the prediction end to end). "
               "Completeness: the share of each node's input that comes from features and tokens, not errors, "
               "weighted by influence.")


def _frame(w: int, h: int, body: list[str], label: str) -> str:
    """An inline SVG `w` px wide at most, scaled down to fit its container (the last position, where the logits
    are, stays in view)."""
    return (f'<div class="nb-chart" style="margin:4px 0 8px 0"><svg xmlns="http://www.w3.org/2000/svg" role="img" '
            f'aria-label="{esc(label)}" width="100%" viewBox="0 0 {w} {h}" preserveAspectRatio="xMinYMin meet" '
            f'style="max-width:{w}px">' + "".join(body) + "</svg></div>")


def radius(node: dict, kind: str) -> float:
    """A node's radius in px: important (low cumulative influence) nodes are large; a logit by its probability."""
    if kind == "logit":
        return 3.0 + 6.0 * math.sqrt(max(0.0, float(node.get("token_prob") or 0.0)))
    infl = node.get("influence")
    if infl is None or kind == "token":
        return 4.0
    return 2.0 + 5.0 * (1.0 - min(1.0, max(0.0, float(infl))))


def cells(doc: GraphDoc) -> dict[tuple[int, int], list[str]]:
    """{(row, position): node ids}, the most important first (row: core.circuits.explore.row_of)."""
    out: dict[tuple[int, int], list[str]] = {}
    for x in doc.ids:
        out.setdefault((row_of(doc, x), int(doc.nodes[x]["ctx_idx"])), []).append(x)
    for ids in out.values():
        ids.sort(key=lambda x: -radius(doc.nodes[x], doc.kind(x)))
    return out


def columns(doc: GraphDoc, step: float = 11.0, least: float = 48.0) -> list[float]:
    """Each position's column width: room for its fullest cell's nodes side by side (at most 40 of them)."""
    full = [0] * max(1, len(doc.tokens))
    for (_, p), ids in cells(doc).items():
        if 0 <= p < len(full):
            full[p] = max(full[p], len(ids))
    return [max(least, step * min(n, 40) + 10) for n in full]


def layout(doc: GraphDoc, widths: list[float], row_h: float, left: float, top: float
           ) -> dict[str, tuple[float, float]]:
    """(x, y) of every node: column = token position (`widths` each), row = layer (embeddings at the bottom, logits
    at the top); nodes sharing a cell side by side, the most important first."""
    rows = doc.n_layers + 2
    starts = [left + sum(widths[:p]) for p in range(len(widths))]
    out = {}
    for (r, p), ids in cells(doc).items():
        w = widths[p]
        step = min(11.0, (w - 8) / len(ids))
        x0 = starts[p] + (w - step * len(ids)) / 2
        for j, x in enumerate(ids):
            out[x] = (x0 + step * (j + 0.5), top + (rows - 1 - r) * row_h + row_h / 2)
    return out


def _n(v: float) -> str:
    """A coordinate: one decimal, none when it is whole (the graph has thousands of them)."""
    t = f"{v:.1f}"
    return t[:-2] if t.endswith(".0") else t


def _text(s) -> str:
    """Text placed between tags: `&`, `<`, `>` escaped (quotes need no escape there; attributes use svg.esc)."""
    return html.escape(str(s), quote=False)


def _shape(kind: str, x: float, y: float, r: float, style: str, tip: str) -> str:
    t = f"<title>{_text(tip)}</title>"
    if kind in ("token", "error"):
        return (f'<rect x="{_n(x - r)}" y="{_n(y - r)}" width="{_n(2 * r)}" height="{_n(2 * r)}"{style}>{t}'
                "</rect>")
    return f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}"{style}>{t}</circle>'


def _width(w: float, wmax: float) -> float:
    """An edge's stroke width in px, by |weight| against the strongest drawn."""
    return 0.4 + 2.6 * min(1.0, abs(w) / wmax)


def _edge(a: tuple[float, float], b: tuple[float, float], w: float, wmax: float, tip: str) -> str:
    return (f'<line x1="{_n(a[0])}" y1="{_n(a[1])}" x2="{_n(b[0])}" y2="{_n(b[1])}" stroke="{POS if w > 0 else NEG}" '
            f'stroke-width="{_width(w, wmax):.2f}" stroke-opacity="0.45"><title>{_text(tip)}</title></line>')


def node_tip(doc: GraphDoc, x: str, labels: dict[str, str] | None = None) -> str:
    n = doc.nodes[x]
    parts = [label(doc, x, labels), f"{doc.kind(x)} · layer {n['layer']} · pos {n['ctx_idx']}"]
    if n.get("activation") is not None:
        parts.append(f"act {fmt(float(n['activation']))}")
    if n.get("influence") is not None:
        parts.append(f"influence {fmt(float(n['influence']))}")
    return " · ".join(parts)


NODE_RING = ("#ffffff", 0.6)
"""A node's outline unless it is selected (red) or pinned (dark)."""
TIP_WIDTH = 1.0
"""Edges drawn at least this wide (px) carry a tooltip (source → target: weight); a thinner one is too thin to point
at, and its weight is in its nodes' panels (their strongest incoming and outgoing edges)."""


def graph_svg(doc: GraphDoc, *, link: Callable[[str], str] | None = None, paths: set[tuple[str, str]] = frozenset(),
              selected: str | None = None, pinned: set[str] = frozenset(), labels: dict[str, str] | None = None,
              max_links: int = 600) -> str:
    """The whole graph (module docstring): the file's links (the `max_links` strongest) and every path edge.

    A graph holds ~500-1,000 nodes and 600 edges, and Streamlit parses the markup in the browser (its cost grows with
    the bytes and the elements): what nodes of a kind or edges of a sign share is said once on a <g> around them,
    coordinates carry no trailing ".0", tooltips escape only what text needs, and only edges wide enough to point at
    carry one (TIP_WIDTH)."""
    rows, widths = doc.n_layers + 2, columns(doc)
    row_h = max(14.0, min(30.0, 560.0 / rows))
    left, top = 44.0, 18.0
    width, height = int(left + sum(widths) + 8), int(top + row_h * rows + 34)
    at = layout(doc, widths, row_h, left, top)
    body = [_legend(left)]
    for r in range(rows):
        y = top + (rows - 1 - r) * row_h
        name = "emb" if r == 0 else "logit" if r == rows - 1 else f"L{r - 1}"
        body.append(f'<rect x="{_n(left)}" y="{_n(y)}" width="{_n(sum(widths))}" height="{_n(row_h)}" '
                    f'fill="{"#f7f7f9" if r % 2 else "#ffffff"}"/><text x="{_n(left - 4)}" y="{_n(y + row_h * 0.7)}" '
                    f'text-anchor="end" style="{FONT};font-size:9px">{esc(name)}</text>')
    for p, tok in enumerate(doc.tokens[:len(widths)]):
        x = left + sum(widths[:p]) + widths[p] / 2
        body.append(f'<text x="{_n(x)}" y="{_n(top + rows * row_h + 14)}" text-anchor="middle" style="{FONT}">'
                    f'<title>{esc(repr(tok))}</title>{esc(visible_short(tok, int(widths[p] // 7)))}</text>')
    links = sorted(doc.wire.get("links", []), key=lambda lk: -abs(float(lk["weight"])))[:max_links]
    A, i = doc.adjacency, doc.index
    extra = [{"source": s, "target": t, "weight": float(A[i[t], i[s]])} for s, t in paths]
    wmax = max([abs(float(lk["weight"])) for lk in links + extra], default=1.0) or 1.0
    for s, t in paths:
        body.append(f'<line x1="{_n(at[s][0])}" y1="{_n(at[s][1])}" x2="{_n(at[t][0])}" y2="{_n(at[t][1])}" '
                    f'stroke="{PATH}" stroke-width="6" stroke-linecap="round" stroke-opacity="0.85"/>')
    drawn, by_sign = set(), {POS: [], NEG: []}
    for lk in links + extra:
        s, t, w = lk["source"], lk["target"], float(lk["weight"])
        if (s, t) not in drawn and s in at and t in at:
            drawn.add((s, t))
            (a, b), (c, d), wide = at[s], at[t], _width(w, wmax)
            line = f'<line x1="{_n(a)}" y1="{_n(b)}" x2="{_n(c)}" y2="{_n(d)}" stroke-width="{wide:.2f}"'
            by_sign[POS if w > 0 else NEG].append(
                f"{line}><title>{_text(s)} → {_text(t)}: {fmt(w)}</title></line>" if wide >= TIP_WIDTH else line + "/>")
    body += [f'<g stroke="{c}" stroke-opacity="0.45">{"".join(ls)}</g>' for c, ls in by_sign.items() if ls]
    on_path = {x for e in paths for x in e}
    by_kind: dict[str, list[str]] = {}
    for x in doc.ids:
        kind, (cx, cy) = doc.kind(x), at[x]
        r = radius(doc.nodes[x], kind)
        ring = ("#d62728", 2.5) if x == selected else ("#222", 1.6) if x in pinned else NODE_RING
        halo = (f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(r + 3)}" fill="{PATH}" stroke="none"/>'
                if x in on_path else "")
        style = "" if ring == NODE_RING else f' stroke="{ring[0]}" stroke-width="{ring[1]}"'
        shape = _shape(kind, cx, cy, r, style, node_tip(doc, x, labels))
        by_kind.setdefault(kind, []).append(
            halo + (f'<a href="{esc(link(x))}" target="_self">{shape}</a>' if link else shape))
    body += [f'<g fill="{KIND_COLORS[k]}" stroke="{NODE_RING[0]}" stroke-width="{NODE_RING[1]}">{"".join(v)}</g>'
             for k, v in by_kind.items()]
    return _frame(width, height, body, f"attribution graph: {len(doc.ids)} nodes by layer and position")


def _legend(left: float) -> str:
    out, x = [], left
    for kind, c in KIND_COLORS.items():
        if kind == "supernode":
            continue
        out.append(f'<circle cx="{x + 4}" cy="8" r="4" fill="{c}"/><text x="{x + 11}" y="11" style="{FONT}">'
                   f"{esc(kind)}</text>")
        x += 70
    out.append(f'<line x1="{x}" x2="{x + 16}" y1="8" y2="8" stroke="{PATH}" stroke-width="6"/>'
               f'<text x="{x + 20}" y="11" style="{FONT}">strongest paths</text>')
    return "".join(out)


def subgraph_svg(sub: dict, tokens: list[str], link: Callable[[str], str] | None = None) -> str:
    """The pinned subgraph (core.circuits.explore.subgraph): each supernode one box, other pinned nodes their own;
    summed direct effects between them. Columns are the positions in use, rows the layer rows in use."""
    units = sub["units"]
    if not units:
        return '<div class="nb-subgraph" style="color:#888">Nothing pinned yet.</div>'
    cols = sorted({u["pos"] for u in units})
    rows = sorted({u["row"] for u in units}, reverse=True)
    box_w, box_h, gap_x, gap_y, left, top = 128.0, 30.0, 18.0, 26.0, 8.0, 8.0
    cells: dict[tuple[float, float], list[dict]] = {}
    for u in units:
        cells.setdefault((u["row"], u["pos"]), []).append(u)
    per_col = {c: max(len(v) for (r, p), v in cells.items() if p == c) for c in cols}
    x0, at = left, {}
    for c in cols:
        for r in rows:
            for j, u in enumerate(cells.get((r, c), [])):
                at[u["id"]] = (x0 + j * (box_w + 6), top + rows.index(r) * (box_h + gap_y))
        x0 += per_col[c] * (box_w + 6) + gap_x
    width, height = int(x0 + 4), int(top + len(rows) * (box_h + gap_y) + 4)
    wmax = max([abs(lk["weight"]) for lk in sub["unit_links"]], default=1.0) or 1.0
    body = []
    names = {u["id"]: u["name"] for u in units}
    for lk in sub["unit_links"]:
        (ax, ay), (bx, by) = at[lk["source"]], at[lk["target"]]
        a, b = (ax + box_w / 2, ay + box_h / 2), (bx + box_w / 2, by + box_h / 2)
        body.append(_edge(a, b, lk["weight"], wmax, f"{names[lk['source']]} → {names[lk['target']]}: "
                          f"{fmt(lk['weight'])}"))
    for u in units:
        x, y = at[u["id"]]
        pos = int(round(u["pos"]))
        tok = visible_short(tokens[pos], 10) if 0 <= pos < len(tokens) else ""
        tip = u["name"] + (f" ({len(u['members'])} nodes: {', '.join(u['members'])})" if u["kind"] == "supernode"
                           else f" ({u['id']})")
        rect = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" rx="5" fill="#fff" '
                f'stroke="{KIND_COLORS.get(u["kind"], "#888")}" stroke-width="{2.5 if u["kind"] == "supernode" else 1.5}">'
                f"<title>{esc(tip)}</title></rect>"
                f'<text x="{x + 5:.1f}" y="{y + 12:.1f}" style="{FONT};font-size:10px;fill:#222">'
                f"{esc(_cut(u['name'], 22))}</text><text x=\"{x + 5:.1f}\" y=\"{y + 25:.1f}\" "
                f'style="{FONT};font-size:9px">{esc(u["kind"] + " · " + tok)}</text>')
        first = u["members"][0]
        body.append(f'<a href="{esc(link(first))}" target="_self">{rect}</a>' if link else rect)
    return ('<div class="nb-subgraph">' + _frame(width, height, body, f"subgraph of {len(units)} units")
            + "</div>")


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def edges_html(rows: list[tuple[str, str, float]], link: Callable[[str], str], title: str) -> str:
    """(node id, label, weight) rows as a table whose first cell links to the node."""
    if not rows:
        return f'<div class="nb-table" style="color:#888;font-size:0.9em">{esc(title)}: none</div>'
    body = "".join(f'<tr><td style="padding:1px 8px"><a href="{esc(link(x))}" target="_self">{esc(_cut(lab, 60))}'
                   f'</a></td><td style="padding:1px 8px;text-align:right;color:{POS if w > 0 else NEG}">{esc(fmt(w))}'
                   "</td></tr>" for x, lab, w in rows)
    return (f'<div class="nb-table" style="margin:4px 0 8px 0"><div style="font-size:0.85em;color:#666">{esc(title)}'
            f'</div><table style="border-collapse:collapse;font-size:0.9em"><tbody>{body}</tbody></table></div>')


def scores_html(scores: dict) -> str:
    rep, comp = scores.get("replacement"), scores.get("completeness")
    vals = " · ".join(f"{n} score <b>{fmt(float(v))}</b>" for n, v in (("replacement", rep), ("completeness", comp))
                      if v is not None)
    return (f'<div class="nb-scores" style="margin:2px 0 6px 0">{vals or "no scores stored"}'
            f'<div style="font-size:0.8em;color:#777">{esc(SCORES_NOTE)}</div></div>')


def supernodes_html(sub: dict) -> str:
    groups = [u for u in sub["units"] if u["kind"] == "supernode"]
    return table(["supernode", "nodes"], [[u["name"], ", ".join(u["members"])] for u in groups]) if groups else ""


def graph_figure(doc: GraphDoc, *, paths: set[tuple[str, str]] = frozenset(), selected: str | None = None,
                 labels: dict[str, str] | None = None, max_links: int = 600):
    """The same drawing as a Plotly figure (zoom, pan, click a node: its customdata is the node id)."""
    import plotly.graph_objects as go

    widths = columns(doc)
    at = layout(doc, widths, 1.0, 0.0, 0.0)
    fig = go.Figure()
    links = sorted(doc.wire.get("links", []), key=lambda lk: -abs(float(lk["weight"])))[:max_links]
    for name, keep, color, width in (("raises", lambda w: w > 0, POS, 1.0), ("lowers", lambda w: w < 0, NEG, 1.0)):
        xs, ys = [], []
        for lk in links:
            if keep(float(lk["weight"])):
                (a, b), (c, d) = at[lk["source"]], at[lk["target"]]
                xs += [a, c, None]
                ys += [-b, -d, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": color, "width": width}, opacity=0.4,
                                 name=f"edge {name}", hoverinfo="skip"))
    xs, ys = [], []
    for s, t in paths:
        xs += [at[s][0], at[t][0], None]
        ys += [-at[s][1], -at[t][1], None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": PATH, "width": 6}, name="strongest paths",
                             hoverinfo="skip"))
    for kind, color in KIND_COLORS.items():
        ids = [x for x in doc.ids if doc.kind(x) == kind]
        if not ids:
            continue
        fig.add_trace(go.Scatter(
            x=[at[x][0] for x in ids], y=[-at[x][1] for x in ids], mode="markers", name=kind, customdata=ids,
            marker={"color": color, "size": [2 * radius(doc.nodes[x], kind) + 2 for x in ids],
                    "line": {"color": ["#d62728" if x == selected else "#fff" for x in ids], "width": 1.5}},
            hovertext=[node_tip(doc, x, labels) for x in ids], hoverinfo="text"))
    fig.update_layout(height=640, xaxis={"tickvals": [sum(widths[:p]) + widths[p] / 2 for p in range(len(widths))],
                                         "ticktext": [visible_short(t, 10) for t in doc.tokens[:len(widths)]]},
                      yaxis={"showticklabels": False}, legend={"orientation": "h"}, margin={"t": 20})
    return fig


MEASURES = (("predicted", "graph's prediction"), ("linearised", "replacement, linearised"),
            ("replacement", "replacement model"), ("real", "real model"))
IV_NOTE = ("Change of each logit minus the mean logit. Predicted: the graph's path sum (its stored edges; downstream "
           "features respond linearly). Measured in the frozen replacement model (features recomputed by their "
           "transcoders; linearised: kept on their active set) and in the real model (features subtracted or added "
           "at their layer's MLP output).")


def effect_html(e: dict) -> str:
    """An intervention's effect (core.circuits.interventions.Effect as a dict): every logit's change predicted
    beside measured, then the tokens the real model gained and lost."""
    rows = [[("→ " if lc["id"] == e["target"]["id"] else "") + repr(lc["token"])] + [float(lc[k]) for k, _ in MEASURES]
            for lc in e["logits"]]
    logits = table(["logit", *[n for _, n in MEASURES]], rows, align=["left"] + ["right"] * len(MEASURES),
                   title=f"{e['op']} on {len(e['nodes'])} node{'s' * (len(e['nodes']) != 1)}: each logit's change "
                         "(→ the target)")

    def shifts(xs: list[dict], name: str) -> str:
        return table([name, "p before", "p after"], [[repr(s["token"]), float(s["p_before"]), float(s["p_after"])]
                                                     for s in xs], align=["left", "right", "right"])
    return (f'<div class="nb-effect">{logits}<div style="display:flex;gap:32px;flex-wrap:wrap">'
            f"<div>{shifts(e['gained'], 'gained (real model)')}</div><div>{shifts(e['lost'], 'lost')}</div></div>"
            f'<div style="font-size:0.8em;color:#777">{esc(IV_NOTE)}</div></div>')


def table_html(t: dict, labels: Callable[[str], str] | None = None) -> str:
    """The ten-most-influential-features table (core.circuits.interventions.Table as a dict) and its correlations."""
    rows = [[r["node"], (labels(r["node"]) if labels else "")[:50], float(r["influence"])]
            + [float(r[k]) for k, _ in MEASURES] for r in t["rows"]]
    corr = ", ".join(f"{k} {'–' if v is None else fmt(float(v))}" for k, v in t["correlation"].items())
    return (table(["node", "label", "influence", *[n for _, n in MEASURES]], rows,
                  align=["left", "left"] + ["right"] * (1 + len(MEASURES)),
                  title=f"Zero each of the {len(rows)} most influential features alone: the change of "
                        f"{t['target']!r}") + f'<div class="nb-corr">Correlation with the prediction: {esc(corr)}</div>')
