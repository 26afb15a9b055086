"""Reusable HTML pieces. Every token string placed in HTML goes through `html.escape`."""

from __future__ import annotations

import html

import numpy as np


def _bg(value: float, vmax: float) -> str:
    """Orange (#ff8c00) whose alpha is the activation's share of vmax, as #rrggbbaa; '' for none (<= 0, NaN)."""
    a = 0.0 if not np.isfinite(value) or vmax <= 0 else float(np.clip(value / vmax, 0.0, 1.0))
    alpha = round(a * 255)
    return f"#ff8c00{alpha:02x}" if alpha else ""


def visible(tok: str, spaces: bool = False) -> str:
    """A token made visible (not escaped): newline as ↵, tab as ⇥, the empty token as ∅, and with `spaces` the
    spaces of a whitespace-only token as ␣ (in running text they show as themselves)."""
    shown = tok.replace("\n", "↵").replace("\t", "⇥")
    if spaces and not shown.strip():
        shown = shown.replace(" ", "␣")
    return shown or "∅"


def label(tok: str) -> str:
    """A token as label text in a figure (Plotly renders a subset of HTML in labels): visible, then escaped."""
    return html.escape(visible(tok, spaces=True))


def token_spans(tokens: list[str], values: list[float] | np.ndarray, vmax: float, focus: int | None = None) -> str:
    """One <span> per token, background by activation, hover shows token and value; `focus` is outlined."""
    out = []
    for i, (tok, v) in enumerate(zip(tokens, values, strict=True)):
        bg = _bg(v, vmax)
        style = (f"background:{bg};" if bg else "") + ("outline:2px solid #d62728" if i == focus else "")
        title = html.escape(f"{tok!r}: {v:.4g}" if np.isfinite(v) else repr(tok), quote=True)
        attr = f' style="{style}"' if style else ""
        out.append(f'<span class="nb-tok"{attr} title="{title}">{html.escape(visible(tok))}</span>')
    return ('<div class="nb-example" style="font-family:monospace;line-height:1.7;white-space:pre-wrap">'
            + "".join(out) + "</div>")


def example_html(tokens: list[str], values, vmax: float, focus: int | None, caption: str) -> str:
    """One example: an escaped caption line, then its token spans."""
    return (f'<div class="nb-caption" style="font-size:0.8em;color:#888;margin-top:6px">{html.escape(caption)}</div>'
            + token_spans(tokens, values, vmax, focus=focus))
