"""Explainer and scorer prompts, built from the index alone (after "Automatically Interpreting Millions of Features",
delphi's conventions).

An example is a window of token strings with the unit's activation on each (NaN where the index does not know it:
an interval sample stores only its own token's activation). In the explainer's prompt:
  - tokens whose activation is above MARK_FRAC × the example's max are marked <<like this>>, consecutive marked
    tokens merged into one span: "the <<quick brown>> fox";
  - after each example, every marked span with its activation on a 0–10 scale (10 = the unit's max over the shown
    examples, rounded): "quick brown (7)".
Examples are split once, before anything is shown: from each activation interval (and the top examples), every
`score_every`-th goes to the scoring set, the rest to the explainer, so no window is both explained and scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MARK_FRAC = 0.3
OPEN, CLOSE = "<<", ">>"

EXPLAIN_SYSTEM = (
    "You are a meticulous AI researcher studying one neuron of a language model. You will see short text excerpts "
    "where it activates; the tokens where it is active are marked <<like this>>, and after each excerpt the marked "
    "tokens are listed with its activation on a 0-10 scale. Work out what the marked tokens have in common, in "
    "context. Reply with one short phrase (at most 15 words) describing what the neuron responds to, on a final "
    "line starting 'Explanation:'.")

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


def explain_messages(windows: list[Window], frac: float = MARK_FRAC) -> list[dict]:
    """The explainer's chat messages for these windows (module docstring)."""
    vmax = max((w.peak for w in windows), default=0.0) or 1.0
    parts = []
    for n, w in enumerate(windows, 1):
        spans = marked_spans(w, frac)
        acts = [max(w.acts[a:b]) for a, b in spans]
        listed = ", ".join(f"{''.join(w.tokens[a:b]).strip() or repr(''.join(w.tokens[a:b]))} "
                           f"({round(10 * x / vmax)})" for (a, b), x in zip(spans, acts, strict=True))
        parts.append(f"Example {n}: {render(w.tokens, spans)}\nActivations: {listed}")
    return [{"role": "system", "content": EXPLAIN_SYSTEM},
            {"role": "user", "content": "\n\n".join(parts) + "\n\nWhat does the neuron respond to?"}]


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
    line = (line[:cut + 1] if cut > 0 else line).strip()
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
