"""Explainer and scorer prompts, built from the index alone (after "Automatically Interpreting Millions of Features",
delphi's conventions).

An example is a window of token strings with the unit's activation on each (NaN where the index does not know it:
an interval sample stores only its own token's activation). In the explainer's prompt:
  - each example is an excerpt around its peak (EXCERPT_BEFORE tokens before it, EXCERPT_AFTER after);
  - tokens whose activation is above MARK_FRAC × the example's max are marked <<like this>>, consecutive marked
    tokens merged into one span: "the <<quick brown>> fox";
  - after the excerpts, every marked span with its activation on a 0–10 scale (10 = the unit's max over the shown
    examples, rounded): "quick brown (7)", and the most frequent marked spans over all the explaining examples;
  - two worked examples (made up, about animals and colours: nothing a Python-docs corpus is about) come first as
    earlier turns of the chat: a 135M explainer follows a demonstrated answer far better than an instruction.
Examples are split once, before anything is shown: from each activation interval (and the top examples), every
`score_every`-th goes to the scoring set, the rest to the explainer, so no window is both explained and scored.
Windows where the unit is not active at all (a top-K list of a rare unit is padded with zeros) are left out before
the split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.autointerp import lexical

MARK_FRAC = 0.3
OPEN, CLOSE = "<<", ">>"

EXCERPT_BEFORE, EXCERPT_AFTER = 8, 3
EXCERPTS = 12
"""Excerpts shown in one explainer prompt at most."""

EXPLAIN_SYSTEM = (
    "You are studying one neuron of a language model. You see text excerpts where it is active; the tokens where "
    "it is active are marked <<like this>>, and the marked tokens are listed with the neuron's activation on a "
    "0-10 scale. Say in a few words what kind of token or word the marked tokens are.")
ASK = "What does the neuron respond to?"
SHOTS = [  # (the user's turn, the explainer's answer): made up, for the format only
    ("Excerpt 1: my sister has a <<cat>> and two fish\nExcerpt 2: the <<horse>> ran across the field\n"
     "Excerpt 3: a <<dog>> barked at night\nExcerpt 4: feeding the <<birds>> in winter\n"
     "Marked tokens (activation 0-10): cat (10), horse (6), dog (9), birds (4)\n"
     "Most frequent marked tokens: cat (2), horse (1), dog (1), birds (1)\n\n" + ASK,
     "Explanation: the neuron responds to names of animals."),
    ("Excerpt 1: she wore a <<red>> dress\nExcerpt 2: the sky turned <<dark blue>>\n"
     "Excerpt 3: paint it <<green>>, not <<yellow>>\nExcerpt 4: a <<white>> house\n"
     "Marked tokens (activation 0-10): red (10), dark blue (7), green (8), yellow (5), white (6)\n"
     "Most frequent marked tokens: red (3), green (2), dark blue (1), yellow (1), white (1)\n\n" + ASK,
     "Explanation: the neuron responds to colour words."),
]

DETECT_SYSTEM = (
    "You judge whether text excerpts fit a description of what a neuron in a language model responds to. For each "
    "numbered excerpt answer 1 if the neuron would likely be active somewhere in it, else 0. Reply with only a "
    "list of 0s and 1s, one per excerpt, like [1, 0, 0, 1, 0].")

FUZZ_SYSTEM = (
    "You judge whether the marked tokens in text excerpts fit a description of what a neuron in a language model "
    "responds to. In each numbered excerpt some tokens are marked <<like this>>. Answer 1 if the marked tokens are "
    "the kind the description says the neuron responds to, else 0. Reply with only a list of 0s and 1s, one per "
    "excerpt, like [1, 0, 0, 1, 0].")


@dataclass
class Window:
    tokens: list[str]
    acts: list[float]  # NaN where unknown
    source: str = ""
    """Where it came from: 'top', 'interval k', or 'random' (a non-activating window)."""
    doc_id: int = -1
    position: int = -1
    """The document position of the example's token (of the first token for a non-activating window)."""
    start: int = -1
    """The document position of tokens[0] (-1: unknown)."""

    @property
    def peak(self) -> float:
        known = [a for a in self.acts if not math.isnan(a)]
        return max(known) if known else 0.0


@dataclass
class Split:
    explain: list[Window] = field(default_factory=list)
    score: list[Window] = field(default_factory=list)


def split(groups: list[list[Window]], score_every: int = 3, max_explain: int = 40) -> Split:
    """Every `score_every`-th window of each group (the top examples, each interval) to scoring, the rest to the
    explainer (at most `max_explain`, taken round-robin over the groups so every interval is represented)."""
    out = Split()
    rest: list[list[Window]] = []
    for g in groups:
        keep = []
        for i, w in enumerate(g):
            (out.score if i % score_every == score_every - 1 else keep).append(w)
        rest.append(keep)
    i = 0
    while len(out.explain) < max_explain and any(i < len(g) for g in rest):
        for g in rest:
            if i < len(g) and len(out.explain) < max_explain:
                out.explain.append(g[i])
        i += 1
    return out


def marked_spans(w: Window, frac: float = MARK_FRAC) -> list[tuple[int, int]]:
    """[(start, end)) token ranges above frac × the window's peak, consecutive tokens merged."""
    thr = frac * w.peak
    spans: list[tuple[int, int]] = []
    for i, a in enumerate(w.acts):
        on = not math.isnan(a) and a > thr and a > 0
        if on and spans and spans[-1][1] == i:
            spans[-1] = (spans[-1][0], i + 1)
        elif on:
            spans.append((i, i + 1))
    return spans


def render(tokens: list[str], spans: list[tuple[int, int]]) -> str:
    """The window's text with each span wrapped in << >> (newlines shown as spaces)."""
    out, j = [], 0
    for a, b in spans:
        out.append("".join(tokens[j:a]))
        out.append(OPEN + "".join(tokens[a:b]) + CLOSE)
        j = b
    out.append("".join(tokens[j:]))
    return "".join(out).replace("\n", " ")


def excerpt(w: Window, before: int = EXCERPT_BEFORE, after: int = EXCERPT_AFTER) -> Window:
    """The window cut to `before` tokens before its peak and `after` after it."""
    known = [i for i, a in enumerate(w.acts) if not math.isnan(a)]
    if not known:
        return w
    pk = max(known, key=lambda i: w.acts[i])
    a, b = max(0, pk - before), min(len(w.tokens), pk + after + 1)
    return Window(w.tokens[a:b], w.acts[a:b], w.source, w.doc_id, w.position, w.start + a if w.start >= 0 else -1)


def _span_text(tokens: list[str]) -> str:
    t = "".join(tokens)
    return t.strip() or repr(t)


def explain_messages(windows: list[Window], frac: float = MARK_FRAC, every: list[Window] | None = None,
                     shots: bool = True) -> list[dict]:
    """The explainer's chat messages for these windows (module docstring); the most-frequent line counts the marked
    spans of `every` (default: the windows shown)."""
    vmax = max((w.peak for w in windows), default=0.0) or 1.0
    parts, listed = [], []
    for n, w in enumerate(windows, 1):
        x = excerpt(w)
        spans = marked_spans(x, frac)
        parts.append(f"Excerpt {n}: {render(x.tokens, spans).strip()}")
        listed += [f"{_span_text(x.tokens[a:b])} ({round(10 * max(x.acts[a:b]) / vmax)})" for a, b in spans]
    freq = frequent_spans(every or windows, 8, frac)
    user = ("\n".join(parts) + "\nMarked tokens (activation 0-10): " + ", ".join(listed) + "\nMost frequent marked "
            "tokens: " + ", ".join(f"{t} ({c})" for t, c in freq) + "\n\n" + ASK)
    msgs = [{"role": "system", "content": EXPLAIN_SYSTEM}]
    for q, a in SHOTS if shots else []:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": user}]


def candidate_prompts(windows: list[Window], k: int = 3, per: int = EXCERPTS) -> list[list[dict]]:
    """k explainer prompts over disjoint shares of the explaining windows (windows[i::k], at most `per` each; the
    most-frequent line counts all of them): k readings of the unit, to choose among by a cheap score."""
    shares = [windows[i::k][:per] for i in range(k)]
    return [explain_messages(s, every=windows) for s in shares if s]


COMMON_SHOTS = ('Words: "cat", "horse", "dog", "birds"\nWhat they have in common: names of animals\n\n'
                'Words: "red", "dark blue", "green", "yellow"\nWhat they have in common: colour words\n\n'
                'Words: "ran", "walked", "jumped", "swam"\nWhat they have in common: verbs of motion in the past '
                'tense\n\n')
COMMON_ASK = "What they have in common:"


def frequent_spans(windows: list[Window], k: int = 8, frac: float = MARK_FRAC) -> list[tuple[str, int]]:
    """The k most frequent marked spans of the windows (each excerpt's, stripped) with their counts, most frequent
    first."""
    from collections import Counter

    return Counter(_span_text(x.tokens[a:b]) for x in map(excerpt, windows)
                   for a, b in marked_spans(x, frac)).most_common(k)


def _quoted(spans: list[str]) -> str:
    """Each span in double quotes; a repr (whitespace) as it is, and a span with a double quote in single ones."""
    return ", ".join(t if len(t) > 2 and t[0] == t[-1] == "'" else f"'{t}'" if '"' in t else f'"{t}"'
                     for t in spans)


def common_prompt(windows: list[Window], k: int = 6) -> str:
    """A plain-text completion prompt (no chat): the most frequent marked spans, after three made-up lists, asking
    what they have in common. Small models name a category this way where they cannot follow an instruction."""
    return COMMON_SHOTS + "Words: " + _quoted([t for t, _ in frequent_spans(windows, k)]) + "\n" + COMMON_ASK


def parse_common(text: str) -> str | None:
    """The completion's first line as an explanation ('the neuron responds to …'), None if empty."""
    line = (text or "").strip().splitlines()[0].strip().rstrip(".") if (text or "").strip() else ""
    return f"the neuron responds to {line}." if len(line) >= 3 else None


def shot_answers() -> list[str]:
    """The worked examples' answers (SHOTS, COMMON_SHOTS), as explanations."""
    out = [a.removeprefix("Explanation: ") for _, a in SHOTS]
    return out + [f"the neuron responds to {line.split(':', 1)[1].strip()}." for line in COMMON_SHOTS.splitlines()
                  if line.startswith(COMMON_ASK)]


def echoes_a_shot(explanation: str, embed, threshold: float = 0.8) -> bool:
    """Whether an explanation only repeats a worked example's answer, or nearly (sentence-embedding cosine ≥
    threshold with one of shot_answers(); `embed` gives unit-norm rows): an echo of the demonstration, not a
    reading of the unit (small explainers do this when they find nothing)."""
    E = embed([explanation, *shot_answers()])
    return bool((E[1:] @ E[0]).max() >= threshold)


def token_list(windows: list[Window], k: int = 5) -> str | None:
    """The explanation no model writes: the most frequent marked spans, quoted (the top-token baseline), named by
    their class when most marked spans share one (core.autointerp.lexical); then only that class's spans are
    listed: 'the neuron responds to numbers: "3", "1".'"""
    from collections import Counter

    raw = ["".join(x.tokens[a:b]) for x in map(excerpt, windows) for a, b in marked_spans(x)]
    named = lexical.name(raw)
    keep = raw if named is None else [r for r in raw if lexical.token_class(r) in named[1]]
    spans = [t for t, _ in Counter(_span_text([r]) for r in keep).most_common(k)]
    if not spans:
        return None
    return f"the neuron responds to {named[0] + ':' if named else 'the tokens'} {_quoted(spans)}."


def names_a_class(explanation: str | None) -> bool:
    """Whether a token_list explanation is named by a token class (not the plain 'the tokens …' list)."""
    return bool(explanation) and explanation.startswith("the neuron responds to ") and not explanation.startswith(
        "the neuron responds to the tokens ")


def parse_explanation(text: str) -> str | None:
    """The explanation in a reply: the first line after the last 'Explanation:', else the reply's last non-empty
    line; None if there is nothing usable."""
    t = (text or "").strip()
    low = t.lower()
    after = "explanation:" in low
    if after:
        t = t[low.rindex("explanation:") + len("explanation:"):]
    lines = [ln.strip().lstrip("*-").strip() for ln in t.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return None
    line = lines[0] if after else lines[-1]
    cut = line.find(". ")  # the first sentence
    line = (line[:cut + 1] if cut > 0 else line).replace(OPEN, "").replace(CLOSE, "").strip()
    if len(line) < 3 or line.lower().rstrip(" .:").endswith(("responds to", "responds to the", "responds to a")):
        return None  # nothing said after the reply's start
    return line[:300]


EXPLAIN_PREFIX = "Explanation: the neuron responds to"

JUDGE_ONE = {False: "Would the neuron described be active somewhere in this excerpt? Answer Yes or No.",
             True: "Are the marked tokens in this excerpt the kind the description says the neuron responds to? "
                   "Answer Yes or No."}


def judge_one_messages(explanation: str, text: str, fuzz: bool) -> list[dict]:
    """One excerpt, a Yes/No question (for judges that give a score per answer)."""
    return [{"role": "system", "content": FUZZ_SYSTEM.split(" Reply")[0] if fuzz else DETECT_SYSTEM.split(" Reply")[0]},
            {"role": "user", "content": f"Description: {explanation}\n\nExcerpt: {text}\n\n{JUDGE_ONE[fuzz]}"}]


def judge_messages(explanation: str, texts: list[str], fuzz: bool) -> list[dict]:
    body = "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))
    return [{"role": "system", "content": FUZZ_SYSTEM if fuzz else DETECT_SYSTEM},
            {"role": "user", "content": f"Description: {explanation}\n\nExcerpts:\n{body}\n\nAnswer with a list of "
                                        f"{len(texts)} numbers."}]


def parse_answers(text: str, n: int) -> list[int] | None:
    """The judge's list of n 0/1 answers, or None when the reply is not one (recorded as unparsed)."""
    import re

    m = re.findall(r"\[([^\[\]]*)\]", text or "")
    for cand in reversed(m):
        vals = [v.strip() for v in cand.split(",") if v.strip()]
        if len(vals) == n and all(v in ("0", "1") for v in vals):
            return [int(v) for v in vals]
    return None
