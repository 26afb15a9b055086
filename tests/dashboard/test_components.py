"""Token highlighting: escaped, coloured by value, focus marked."""

import re
from html.parser import HTMLParser

from dashboard.components import token_spans


class Texts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_markup_in_tokens_is_text_not_html():
    toks = ["<script>alert(1)</script>", " <b>x</b>", ' "q" & \'a\'']
    out = token_spans(toks, [1.0, 0.5, 0.0], vmax=1.0, focus=0)
    assert "<script>" not in out and "<b>" not in out
    p = Texts()
    p.feed(out)
    assert {t for t, _ in p.tags} == {"div", "span"}  # no element came from token text
    assert "".join(p.text) == "".join(toks)  # shown verbatim as text
    titles = [a["title"] for t, a in p.tags if t == "span"]
    assert titles[0].startswith("'<script>alert(1)</script>'")


def test_background_follows_value_and_focus():
    out = token_spans(["a", "b", "c", "d"], [2.0, 1.0, -3.0, float("nan")], vmax=2.0, focus=1)
    alphas = [float(x) for x in re.findall(r"rgba\(255,140,0,([0-9.]+)\)", out)]
    assert alphas == [1.0, 0.5, 0.0, 0.0]
    assert out.count("outline") == 1 and out.index("outline") < out.index(">b<")
