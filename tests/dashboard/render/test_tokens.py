"""Token highlighting: escaped, coloured by value, focus marked."""

import re
from html.parser import HTMLParser

from dashboard.render.tokens import token_spans


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
    spans = re.findall(r'<span class="nb-tok"( style="[^"]*")?', out)
    alphas = [int(m.group(1), 16) / 255 if (m := re.search(r"#ff8c00([0-9a-f]{2})", s)) else 0.0 for s in spans]
    assert alphas == [1.0, 128 / 255, 0.0, 0.0]
    assert out.count("outline") == 1 and out.index("outline") < out.index(">b<")
