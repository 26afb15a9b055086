"""Light SVG charts: the log-scale histogram labels its count axis at the decades, and every label stays inside the
chart (its estimated extent, from its anchor and length, within the viewBox)."""

import re

import numpy as np

from dashboard.render import svg
from dashboard.render.units import activation_histogram_svg

CHAR_W = 6.2  # px per character at the charts' 11 px sans-serif, an upper estimate (digits are ~0.56 em)


def texts(html: str) -> tuple[float, list[dict]]:
    """(viewBox width, [{x, y, anchor, rotated, text}]) of every <text> of one chart."""
    width = float(re.search(r'viewBox="0 0 ([\d.]+) [\d.]+"', html).group(1))
    out = []
    for attrs, body in re.findall(r"<text ([^>]*)>(.*?)</text>", html):
        a = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        out.append({"x": float(a["x"]), "y": float(a["y"]), "anchor": a.get("text-anchor", "start"),
                    "rotated": "transform" in a, "text": body})
    return width, out


def extent(t: dict) -> tuple[float, float]:
    w = CHAR_W * len(t["text"].replace("&#x27;", "'").replace("&amp;", "&"))
    return {"start": (t["x"], t["x"] + w), "middle": (t["x"] - w / 2, t["x"] + w / 2),
            "end": (t["x"] - w, t["x"])}[t["anchor"]]


def test_log_histogram_labels_the_decades_inside_the_chart():
    counts = np.array([24_400, 9_000, 1_200, 300, 45, 7, 1, 0, 2])
    edges = np.linspace(0.0, 3.0, counts.size + 1)
    width, ts = texts(svg.bars(edges, counts, xlabel="activation", ylabel="tokens", log_y=True))
    left = [t for t in ts if t["anchor"] == "end" and not t["rotated"]]  # the count axis' labels
    assert [t["text"] for t in sorted(left, key=lambda t: -t["y"])] == ["1", "10", "100", "1,000", "10,000"]
    ph = 200 - 6 - 30  # the plot's height: the chart's 200 px less its top and bottom margins
    for t in left:  # each label beside its count's height, log10(count + 1) of log10(24,401) (a baseline below)
        h = np.log10(int(t["text"].replace(",", "")) + 1) / np.log10(24_401) * ph
        assert 0 <= t["y"] - (6 + ph - h) <= 5, t
    for t in ts:
        a, b = extent(t) if not t["rotated"] else (t["x"], t["x"])
        assert 0 <= a and b <= width, t
    # the unit page's histogram (an index histogram, the zeros' bin kept) likewise
    hist = np.zeros(64, np.int64)
    hist[31], hist[32:40] = 24_400, [5_000, 2_000, 800, 90, 30, 4, 1, 1]
    width, ts = texts(activation_histogram_svg(hist, hist_exp=2))
    assert {"1", "10", "100", "1,000", "10,000"} <= {t["text"] for t in ts}
    assert all(0 <= extent(t)[0] and extent(t)[1] <= width for t in ts if not t["rotated"])


def test_large_counts_widen_the_margin_and_small_ones_keep_their_labels():
    counts = np.array([3_000_000_000, 40, 2])
    width, ts = texts(svg.bars(np.arange(4.0), counts, xlabel="x", ylabel="tokens", log_y=True))
    labels = [t["text"] for t in ts if t["anchor"] == "end"]
    assert labels[-1] == "1,000,000,000" and len(labels) == 10
    assert all(0 <= extent(t)[0] and extent(t)[1] <= width for t in ts if not t["rotated"])
    width, ts = texts(svg.bars(np.arange(4.0), np.array([3, 1, 0]), xlabel="x", ylabel="tokens", log_y=True))
    assert [t["text"] for t in ts if t["anchor"] == "end"] == ["0", "1"]


def test_log_lines_label_the_decades_inside_the_chart():
    x = np.arange(12.0)
    width, ts = texts(svg.lines([("kl", x, 10.0 ** -np.linspace(0, 4, 12))], xlabel="layer", ylabel="KL",
                                log_y=True))
    assert [t["text"] for t in ts if t["anchor"] == "end"] == ["0.0001", "0.001", "0.01", "0.1", "1"]
    assert all(0 <= extent(t)[0] and extent(t)[1] <= width for t in ts if not t["rotated"])
