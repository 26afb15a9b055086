"""Light charts: data in, one escaped HTML string (inline SVG or a table) out; no streamlit, no JavaScript.

A page's first paint uses these instead of Plotly: a browser draws an inline SVG with the rest of the page, where a
Plotly chart first loads and parses a 4.7 MB script bundle (bench/pages.py). Hover works through SVG <title> and
HTML `title` attributes (the browser's own tooltip). Every label and tooltip goes through `html.escape`. The
interactive Plotly figures (render/units.py, lens.py, heads.py) stay for exports and an "interactive charts" view.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2"]
FONT = "font-family:sans-serif;font-size:11px;fill:#555"


def esc(s) -> str:
    return html.escape(str(s), quote=True)


def fmt(v: float) -> str:
    """A short number: 4 significant digits."""
    return f"{v:.4g}" if np.isfinite(v) else str(v)


def visible_short(tok: str, n: int = 8) -> str:
    """A token for a small label: whitespace made visible (render.tokens.visible), cut to n characters."""
    from dashboard.render.tokens import visible

    s = visible(tok, spaces=True)
    return s if len(s) <= n else s[: n - 1] + "…"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About n round tick values spanning [lo, hi]."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    return [float(t) for t in np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)]


def _log_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Ticks of a log10 axis spanning [lo, hi] (log10 values): the decades (every k-th, at most about n of them)
    when the span holds two or more, else round values as on a linear axis."""
    ks = list(range(math.ceil(lo), math.floor(hi) + 1)) if np.isfinite(lo) and np.isfinite(hi) else []
    if len(ks) < 2:
        return _ticks(lo, hi)
    return [float(k) for k in ks[:: -(-len(ks) // n)]]


def _frame(w: int, h: int, body: list[str], title: str | None, label: str) -> str:
    head = '<div class="nb-chart" style="margin:4px 0 8px 0">' + (
        f'<div style="font-size:0.85em;color:#666;margin-bottom:2px">{esc(title)}</div>' if title else "")
    return (head + f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(label)}" width="100%" '
            f'viewBox="0 0 {w} {h}" preserveAspectRatio="xMinYMin meet" style="max-width:{w}px">'
            + "".join(body) + "</svg></div>")


def text_w(s: str) -> float:
    """A label's width in px at FONT's 11 px, estimated from its length (an upper bound for digits, ~0.56 em)."""
    return 6.2 * len(s)


def _within(x: float, label: str, width: float) -> float:
    """x for a label centred on x, moved just enough to stay inside [0, width]."""
    half = text_w(label) / 2
    return min(max(x, half + 1), width - half - 1)


def _count_ticks(counts: np.ndarray, log_y: bool, ph: float) -> list[tuple[float, str]]:
    """(height in [0, 1] of the count axis, label) of each count label: on a log axis (heights log10(count + 1))
    the decades 1, 10, 100, 1,000 … up to the largest count, and 0 at the foot where it does not crowd the 1; on a
    linear one 0 and the largest count."""
    top = float(counts.max()) if counts.size and counts.max() > 0 else 1.0
    if not log_y:
        return [(0.0, "0"), (1.0, fmt(top))]
    ymax = math.log10(top + 1)
    out = [(math.log10(10.0**k + 1) / ymax, f"{10**k:,}") for k in range(int(math.floor(math.log10(top))) + 1)]
    return ([(0.0, "0")] if not out or out[0][0] * ph >= 12 else []) + out


def bars(edges: np.ndarray, counts: np.ndarray, *, xlabel: str, ylabel: str, log_y: bool = False,
         color: str = COLORS[0], title: str | None = None, width: int = 640, height: int = 200,
         tip: str = "({lo}, {hi}]: {n} tokens") -> str:
    """A histogram: bar i spans edges[i]..edges[i+1] with height counts[i]; hover shows `tip`. `log_y`: bar heights
    log10(count + 1), the count axis labelled at the decades. The left margin fits the widest count label."""
    edges, counts = np.asarray(edges, np.float64), np.asarray(counts, np.float64)
    R, T, B = 10, 6, 30
    ph = height - T - B
    yticks = _count_ticks(counts, log_y, ph)
    L = max(48, math.ceil(max(text_w(lab) for _, lab in yticks)) + 20)
    pw = width - L - R
    x0, x1 = float(edges[0]), float(edges[-1])
    span = (x1 - x0) or 1.0
    ys = np.log10(np.maximum(counts, 0) + 1) if log_y else counts
    ymax = float(ys.max()) if ys.size and ys.max() > 0 else 1.0
    body = [f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="#999"/>']
    for h, _ in yticks[1:] if log_y else []:
        body.append(f'<line x1="{L}" x2="{L + pw}" y1="{T + ph - h * ph:.1f}" y2="{T + ph - h * ph:.1f}" '
                    'stroke="#eee"/>')
    for i, (c, y) in enumerate(zip(counts, ys, strict=True)):
        if c <= 0:
            continue
        xa = L + (edges[i] - x0) / span * pw
        wa = max(0.8, (edges[i + 1] - edges[i]) / span * pw)
        hb = y / ymax * ph
        t = tip.format(lo=fmt(edges[i]), hi=fmt(edges[i + 1]), n=f"{int(c):,}")
        body.append(f'<rect x="{xa:.2f}" y="{T + ph - hb:.2f}" width="{wa:.2f}" height="{hb:.2f}" fill="{color}">'
                    f"<title>{esc(t)}</title></rect>")
    for tv in _ticks(x0, x1):
        xa = _within(L + (tv - x0) / span * pw, fmt(tv), width)
        body.append(f'<text x="{xa:.1f}" y="{T + ph + 13}" text-anchor="middle" style="{FONT}">{esc(fmt(tv))}</text>')
    for h, lab in yticks:
        y = min(max(T + ph - h * ph + 3.5, T + 8), T + ph)
        body.append(f'<text x="{L - 4}" y="{y:.1f}" text-anchor="end" style="{FONT}">{esc(lab)}</text>')
    body.append(f'<text x="{L + pw / 2}" y="{height - 3}" text-anchor="middle" style="{FONT}">{esc(xlabel)}</text>'
                f'<text x="10" y="{T + ph / 2}" transform="rotate(-90 10 {T + ph / 2})" text-anchor="middle" '
                f'style="{FONT}">{esc(ylabel + (" (log)" if log_y else ""))}</text>')
    return _frame(width, height, body, title, f"histogram of {xlabel}")


def lines(series: Sequence[tuple[str, np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str, log_y: bool = False,
          title: str | None = None, width: int = 520, height: int = 220, marks: dict[str, Sequence[int]] | None = None,
          point_tips: Sequence[Sequence[str]] | None = None) -> str:
    """Lines (name, x, y), one colour each, a legend; `marks` circles chosen points of a series by index;
    `point_tips` gives each point's hover text (default: name, x, y)."""
    L, R, T, B = 52, 10, 8, 44
    pw, ph = width - L - R, height - T - B
    xs = np.concatenate([np.asarray(x, np.float64) for _, x, _ in series]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(y, np.float64) for _, _, y in series]) if series else np.zeros(1)
    if log_y:
        ys = np.log10(np.clip(ys, 1e-12, None))
    ok = np.isfinite(ys)
    x0, x1 = float(np.nanmin(xs)), float(np.nanmax(xs))
    y0, y1 = (float(ys[ok].min()), float(ys[ok].max())) if ok.any() else (0.0, 1.0)
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    xspan = (x1 - x0) or 1.0

    def px(x):
        return L + (x - x0) / xspan * pw

    def py(y):
        return T + ph - (y - y0) / (y1 - y0) * ph

    body = [f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#ddd"/>']
    for tv in _log_ticks(y0, y1) if log_y else _ticks(y0, y1):
        lab = fmt(10 ** tv) if log_y else fmt(tv)
        body.append(f'<line x1="{L}" x2="{L + pw}" y1="{py(tv):.1f}" y2="{py(tv):.1f}" stroke="#eee"/>'
                    f'<text x="{L - 4}" y="{py(tv) + 3:.1f}" text-anchor="end" style="{FONT}">{esc(lab)}</text>')
    for tv in _ticks(x0, x1):
        body.append(f'<text x="{_within(px(tv), fmt(tv), width):.1f}" y="{T + ph + 13}" text-anchor="middle" '
                    f'style="{FONT}">{esc(fmt(tv))}</text>')
    for k, (name, x, y) in enumerate(series):
        c = COLORS[k % len(COLORS)]
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        yy = np.log10(np.clip(y, 1e-12, None)) if log_y else y
        pts = [(px(a), py(b)) for a, b in zip(x, yy, strict=True) if np.isfinite(b)]
        body.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="'
                    + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        tips = point_tips[k] if point_tips else None
        for i, (a, b) in enumerate(zip(x, yy, strict=True)):
            if not np.isfinite(b):
                continue
            t = tips[i] if tips else f"{name}: {fmt(a)}, {fmt(y[i])}"
            body.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.6" fill="{c}"><title>{esc(t)}</title>'
                        "</circle>")
        for i in (marks or {}).get(name, []):
            if 0 <= i < len(x) and np.isfinite(yy[i]):
                body.append(f'<circle cx="{px(x[i]):.1f}" cy="{py(yy[i]):.1f}" r="6" fill="none" stroke="{c}"/>')
        lx = L + 8 + k * (pw // max(1, len(series)))
        body.append(f'<line x1="{lx}" x2="{lx + 14}" y1="{height - 8}" y2="{height - 8}" stroke="{c}" '
                    f'stroke-width="2"/><text x="{lx + 18}" y="{height - 5}" style="{FONT}">{esc(name)}</text>')
    body.append(f'<text x="{L + pw / 2}" y="{T + ph + 26}" text-anchor="middle" style="{FONT}">{esc(xlabel)}</text>'
                f'<text x="11" y="{T + ph / 2}" transform="rotate(-90 11 {T + ph / 2})" text-anchor="middle" '
                f'style="{FONT}">{esc(ylabel + (" (log)" if log_y else ""))}</text>')
    return _frame(width, height, body, title, f"{ylabel} against {xlabel}")


def _blend(a: float, diverging: bool = False) -> str:
    """White to blue (#4c78a8) as a in [0, 1] grows; `diverging`: a in [0, 1] maps red (0) - white (0.5) - blue (1)."""
    if not np.isfinite(a):
        return "#eeeeee"
    a = float(np.clip(a, 0, 1))
    if diverging:
        end, a = ((0x4C, 0x78, 0xA8), 2 * a - 1) if a >= 0.5 else ((0xD6, 0x27, 0x28), 1 - 2 * a)
    else:
        end = (0x4C, 0x78, 0xA8)
    r, g, b = (round(255 + (c - 255) * a) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def grid(values: np.ndarray, *, row_labels: Sequence[str], col_labels: Sequence[str], tips: np.ndarray,
         text: np.ndarray | None = None, links: np.ndarray | None = None, vmin: float | None = None,
         vmax: float | None = None, title: str | None = None, selected: tuple[int, int] | None = None,
         cell: int = 22, diverging: bool = False) -> str:
    """A heatmap as an HTML table: cell (r, c) coloured by values[r, c] (white -> blue over vmin..vmax; with
    `diverging`, red - white - blue symmetric around 0), showing text[r, c], hovering tips[r, c], and linking to
    links[r, c] when given (the same page with another selection: a link reopens exactly that view). `selected` is
    outlined."""
    v = np.asarray(values, np.float64)
    fin = v[np.isfinite(v)]
    lo = (float(fin.min()) if fin.size else 0.0) if vmin is None else vmin
    hi = (float(fin.max()) if fin.size else 1.0) if vmax is None else vmax
    if diverging:
        lim = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -lim, lim
    span = (hi - lo) or 1.0
    td = f"padding:0;border:1px solid #fff;min-width:{cell}px;height:{cell}px;text-align:center"
    rows = [f'<tr><th style="{FONT}"></th>' + "".join(
        f'<th style="font-size:10px;color:#666;font-weight:normal;padding:0 1px">{esc(c)}</th>'
        for c in col_labels) + "</tr>"]
    for r, rl in enumerate(row_labels):
        cells = []
        for c in range(v.shape[1]):
            a = (v[r, c] - lo) / span
            fg = "#fff" if np.isfinite(a) and (abs(2 * a - 1) > 0.6 if diverging else a > 0.6) else "#222"
            inner = esc(text[r, c]) if text is not None else ""
            if links is not None:
                inner = (f'<a href="{esc(links[r, c])}" target="_self" style="display:block;color:{fg};'
                         f'text-decoration:none;min-height:{cell}px">{inner or "&nbsp;"}</a>')
            out = ";outline:2px solid #d62728;outline-offset:-2px" if selected == (r, c) else ""
            cells.append(f'<td class="nb-cell" title="{esc(tips[r, c])}" style="{td};background:{_blend(a, diverging)};'
                         f'color:{fg};font-size:10px{out}">{inner}</td>')
        rows.append(f'<tr><th style="font-size:10px;color:#666;font-weight:normal;text-align:right;'
                    f'padding-right:4px;white-space:nowrap">{esc(rl)}</th>' + "".join(cells) + "</tr>")
    head = f'<div style="font-size:0.85em;color:#666;margin-bottom:2px">{esc(title)}</div>' if title else ""
    return (f'<div class="nb-grid" style="overflow-x:auto;margin:4px 0 8px 0">{head}'
            f'<table style="border-collapse:collapse">{"".join(rows)}</table></div>')


def scatter(xy: np.ndarray, groups: Sequence[str], tips: Sequence[str], *, title: str | None = None,
            width: int = 420, height: int = 320) -> str:
    """Points coloured by group (a legend), hover shows each point's tip."""
    xy = np.asarray(xy, np.float64)
    L, R, T, B = 10, 10, 8, 26
    pw, ph = width - L - R, height - T - B
    lo, hi = np.nanmin(xy, 0), np.nanmax(xy, 0)
    span = np.where(hi > lo, hi - lo, 1.0)
    names = list(dict.fromkeys(groups))
    body = [f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#ddd"/>']
    for (a, b), g, t in zip(xy, groups, tips, strict=True):
        c = COLORS[names.index(g) % len(COLORS)]
        body.append(f'<circle cx="{L + (a - lo[0]) / span[0] * pw:.1f}" cy="{T + ph - (b - lo[1]) / span[1] * ph:.1f}"'
                    f' r="3.2" fill="{c}" fill-opacity="0.75"><title>{esc(t)}</title></circle>')
    for k, g in enumerate(names):
        x = L + 6 + k * 110
        body.append(f'<circle cx="{x}" cy="{height - 9}" r="4" fill="{COLORS[k % len(COLORS)]}"/>'
                    f'<text x="{x + 8}" y="{height - 5}" style="{FONT}">{esc(g)}</text>')
    return _frame(width, height, body, title, "scatter of " + ", ".join(names))


def table(columns: Sequence[str], rows: Sequence[Sequence], *, title: str | None = None,
          align: Sequence[str] | None = None) -> str:
    """A small HTML table (every cell escaped); numbers shown with 4 significant digits."""
    al = list(align) if align else ["left"] * len(columns)
    th = "".join(f'<th style="text-align:{a};padding:2px 8px;border-bottom:1px solid #ccc;font-weight:600">'
                 f"{esc(c)}</th>" for c, a in zip(columns, al, strict=True))
    body = []
    for row in rows:
        tds = []
        for v, a in zip(row, al, strict=True):
            s = fmt(v) if isinstance(v, float) else str(v)
            tds.append(f'<td style="text-align:{a};padding:1px 8px;white-space:pre">{esc(s)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    head = f'<div style="font-size:0.85em;color:#666;margin-bottom:2px">{esc(title)}</div>' if title else ""
    return (f'<div class="nb-table" style="margin:4px 0 8px 0">{head}<table style="border-collapse:collapse;'
            f'font-size:0.9em"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def matrix(values: np.ndarray, *, labels: Sequence[str], title: str | None = None, tips_max: int = 64,
           xlabel: str = "key", ylabel: str = "query") -> str:
    """A square (T, T) matrix (e.g. attention: queries as rows, keys as columns) as inline SVG rects, white to
    blue over 0..max; every cell hovers its value while T <= tips_max (larger matrices stay light: rows only)."""
    v = np.asarray(values, np.float64)
    T = v.shape[0]
    c = max(3, min(18, 520 // max(T, 1)))
    L, top = 90, 6
    w = h = L + c * T + 4
    hi = float(np.nanmax(v)) if np.isfinite(v).any() else 1.0
    hi = hi or 1.0
    body = []
    for q in range(T):
        for k in range(T):
            if v[q, k] <= 0 and k > q:
                continue  # causal: nothing above the diagonal
            tip = f"<title>{esc(labels[q])} → {esc(labels[k])}: {v[q, k]:.3f}</title>" if T <= tips_max else ""
            body.append(f'<rect x="{L + k * c}" y="{top + q * c}" width="{c}" height="{c}" '
                        f'fill="{_blend(v[q, k] / hi)}">{tip}</rect>')
        if T <= tips_max:
            body.append(f'<text x="{L - 3}" y="{top + q * c + c * 0.75:.1f}" text-anchor="end" '
                        f'style="{FONT};font-size:{min(11, c)}px">{esc(labels[q])}</text>')
    body.append(f'<text x="{L + c * T / 2}" y="{h}" text-anchor="middle" style="{FONT}">{esc(xlabel)}</text>')
    return _frame(w, h + 4, body, title, f"{ylabel} by {xlabel} matrix")
