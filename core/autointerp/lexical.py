"""Token classes: what a unit's marked tokens are, named by rules (no model), for the token-list explanation.

Most units a small index finds are token-level: they fire on digits, on `except`, on line breaks. A 135M explainer
rarely names such a class ("the number of digits", "the following actions:"); a rule does, and says what it saw.
Each marked span's text gets one class (the first rule that matches, CLASSES); the classes covering most of a unit's
marked spans name its token-list explanation: 'the neuron responds to numbers: "3", "1", "9".' A unit whose spans
share no class keeps the plain list ('the neuron responds to the tokens "evaluated", "executed".'). Which
explanation a unit keeps is still chosen by the embedding score on its explaining windows (core.autointerp.run).
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections import Counter

NUMBER = re.compile(r"[+-]?(\d[\d_]*)?([.,]\d+)*[.,]?\d*([eE][+-]?\d+)?")
SYMBOLS = {
    ".": "full stops", ",": "commas", ":": "colons", ";": "semicolons", "!": "exclamation marks",
    "?": "question marks", '"': "quotation marks", "“": "quotation marks", "”": "quotation marks",
    "'": "quotation marks", "‘": "quotation marks", "’": "apostrophes", "`": "backticks",
    "(": "opening brackets", "[": "opening brackets", "{": "opening brackets",
    ")": "closing brackets", "]": "closing brackets", "}": "closing brackets",
    "*": "asterisks", "-": "hyphens and dashes", "–": "hyphens and dashes", "—": "hyphens and dashes",
    "_": "underscores", "|": "vertical bars", "=": "equals signs", "#": "hash signs", "/": "slashes",
    "\\": "backslashes", "<": "angle brackets", ">": "angle brackets", "@": "at signs", "%": "percent signs",
    "+": "plus signs", "&": "ampersands", "~": "tildes", "^": "carets", "$": "dollar signs",
}
SYMBOL_CLASSES = set(SYMBOLS.values()) | {"punctuation"}
BE = {"am", "is", "are", "was", "were", "be", "been", "being"}
ARTICLES = {"a", "an", "the"}
CONJUNCTIONS = {"and", "or", "but", "nor"}
KEYWORDS = set(keyword.kwlist) | set(keyword.softkwlist) - {"_"}
BUILTINS = {n for n in dir(builtins) if not n.startswith("_")}
SHARE = 0.6
"""The share of marked spans one class (or two together) must cover to name the explanation."""


def token_class(text: str) -> str | None:
    """The class of one marked span's text (as it stands in the corpus, spaces included); None: no class."""
    t = text.strip()
    if not t:
        return "line breaks" if "\n" in text else "spaces"
    if any(c.isdigit() for c in t) and NUMBER.fullmatch(t):
        return "numbers"
    low = t.lower()
    if low in BE:
        return 'forms of the verb "to be"'
    if low in ARTICLES:
        return "articles"
    if low in CONJUNCTIONS:
        return "conjunctions"
    if t in KEYWORDS:
        return "Python keywords"
    if t.startswith("__") or t.rstrip("()").endswith("__"):
        return "special method names"
    if t in BUILTINS:
        return "names of Python built-ins"
    names = {SYMBOLS.get(c) for c in t}
    if None not in names:
        return names.pop() if len(names) == 1 else "punctuation"
    if len(t) == 1 and t.isalpha():
        return "single letters"
    return None


def name(spans: list[str], share: float = SHARE) -> tuple[str, list[str], float] | None:
    """(the name, its classes, the share of spans they cover) for the class, or the two classes ('A and B'),
    covering at least `share` of these marked spans' texts; None if none does. Two classes name them only when
    neither one alone does, each covers 20%, and together they cover `share`. Symbols of different kinds that
    together cover `share` are 'punctuation'."""
    if not spans:
        return None
    n = len(spans)
    classes = [token_class(s) for s in spans]
    ranked = [(c, k) for c, k in Counter(classes).most_common() if c is not None]
    if ranked and ranked[0][1] >= share * n:
        return ranked[0][0], [ranked[0][0]], ranked[0][1] / n
    if len(ranked) > 1 and ranked[1][1] >= 0.2 * n and ranked[0][1] + ranked[1][1] >= share * n:
        return f"{ranked[0][0]} and {ranked[1][0]}", [ranked[0][0], ranked[1][0]], (ranked[0][1] + ranked[1][1]) / n
    marks = {c for c in classes if c in SYMBOL_CLASSES}
    covered = sum(c in marks for c in classes)
    if covered >= share * n:
        return "punctuation", sorted(marks), covered / n
    return None
