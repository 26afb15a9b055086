"""frame.light, the light charts' one way into the page: markup holding line breaks (token text does) stays one HTML
block. Unescaped, the blank line and the indented line below would end the block in Markdown and show the rest as
a code block; the check is the markup Streamlit receives and the same markup read by an HTML parser."""

from html.parser import HTMLParser

from streamlit.testing.v1 import AppTest

MARKUP = '<div class="nb-x"><svg><title>a\n\n    b</title></svg><span title="c\r\nd">e\n\n    f</span></div>'


def light_app(markup: str):
    from dashboard.shell import frame

    frame.light(markup)


class Texts(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts, self.attrs = [], []

    def handle_data(self, data):
        self.texts.append(data)

    def handle_starttag(self, tag, attrs):
        self.attrs += [v for _, v in attrs]


def parsed(markup: str) -> Texts:
    p = Texts()
    p.feed(markup)
    return p


def test_line_breaks_reach_the_page_as_character_references():
    at = AppTest.from_function(light_app, default_timeout=30, args=(MARKUP,)).run()
    assert not at.exception
    sent = at.markdown[0].value
    assert "\n" not in sent and "\r" not in sent and "&#10;" in sent
    got, want = parsed(sent), parsed(MARKUP)
    assert got.texts == want.texts == ["a\n\n    b", "e\n\n    f"]  # the same text to an HTML parser
    assert got.attrs == want.attrs and "c\r\nd" in got.attrs
