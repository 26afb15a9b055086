"""The explainer prompt against hand-written text (markers, merging, the 0-10 scale), the train/score split, reply
parsing, and the scoring metrics against hand computations."""

import math

import pytest

from core.autointerp import prompts as P
from core.autointerp import scoring as S


def test_explainer_prompt_equals_the_hand_written_one():
    w1 = P.Window(["The", " cat", " sat", " on", " mat"], [0.0, 2.0, 1.5, 0.1, 4.0])
    w2 = P.Window(["A", " dog", "\n", "ran"], [float("nan"), 1.0, float("nan"), 0.2])  # NaN: unknown, never marked
    msgs = P.explain_messages([w1, w2])
    assert msgs[0] == {"role": "system", "content": P.EXPLAIN_SYSTEM}
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user", "assistant", "user"]  # two worked examples
    assert msgs[2]["content"] == "Explanation: the neuron responds to names of animals."
    assert msgs[-1]["content"] == ("Excerpt 1: The<< cat sat>> on<< mat>>\nExcerpt 2: A<< dog>> ran\n"
                                   "Marked tokens (activation 0-10): cat sat (5), mat (10), dog (2)\n"
                                   "Most frequent marked tokens: cat sat (1), mat (1), dog (1)\n\n"
                                   "What does the neuron respond to?")
    # an excerpt is cut to EXCERPT_BEFORE tokens before the peak and EXCERPT_AFTER after it
    long = P.Window([f" t{i}" for i in range(30)], [0.0] * 20 + [5.0] + [0.0] * 9)
    x = P.excerpt(long)
    assert x.tokens == [f" t{i}" for i in range(20 - P.EXCERPT_BEFORE, 20 + P.EXCERPT_AFTER + 1)]
    # the most-frequent line counts every explaining window, the shown ones are one share each
    ws = [P.Window([" a", " x"], [0.0, 1.0]), P.Window([" b", " x"], [0.0, 1.0]), P.Window([" c", " y"], [0.0, 1.0])]
    c1, c2 = P.candidate_prompts(ws, k=2)
    assert "Excerpt 1: a<< x>>\nExcerpt 2: c<< y>>\n" in c1[-1]["content"]
    assert "Excerpt 1: b<< x>>\nMarked" in c2[-1]["content"]
    assert "Most frequent marked tokens: x (2), y (1)" in c1[-1]["content"] == c1[-1]["content"]
    assert P.common_prompt(ws).endswith('Words: "x", "y"\nWhat they have in common:')
    assert P.token_list(ws) == 'the neuron responds to single letters: "x", "y".'
    assert P.parse_common(" numbers and digits\nWords: ...") == "the neuron responds to numbers and digits."


def test_marks_threshold_and_merging():
    w = P.Window(list("abcdefg"), [1.0, 0.3, 0.31, 0.5, 0.0, 0.9, 0.29])  # threshold 0.3 x 1.0: strictly above
    assert P.marked_spans(w) == [(0, 1), (2, 4), (5, 6)]
    assert P.render(w.tokens, P.marked_spans(w)) == "<<a>>b<<cd>>e<<f>>g"
    assert P.marked_spans(P.Window(["x"], [0.0])) == []


def test_split_no_overlap_every_interval_represented():
    a = [P.Window([f"a{i}"], [1.0]) for i in range(6)]
    b = [P.Window([f"b{i}"], [1.0]) for i in range(3)]
    sp = P.split([a, b], score_every=3, max_explain=40)
    assert [w.tokens[0] for w in sp.score] == ["a2", "a5", "b2"]
    assert [w.tokens[0] for w in sp.explain] == ["a0", "b0", "a1", "b1", "a3", "a4"]
    assert not {id(w) for w in sp.score} & {id(w) for w in sp.explain}
    assert len(P.split([a, b], max_explain=3).explain) == 3


def test_parsing():
    assert P.parse_explanation("Let me think.\nExplanation: the word 'the' before nouns\n") == \
        "the word 'the' before nouns"
    assert P.parse_explanation("numbers in dates") == "numbers in dates"
    assert P.parse_explanation("   ") is None
    assert P.parse_explanation(P.EXPLAIN_PREFIX + " numbers in dates. Also years.") == \
        "the neuron responds to numbers in dates."  # the first sentence
    assert P.parse_explanation(P.EXPLAIN_PREFIX) is None and P.parse_explanation(P.EXPLAIN_PREFIX + " the") is None
    assert P.parse_explanation(P.EXPLAIN_PREFIX + " the syntax<< is>>.") == "the neuron responds to the syntax is."
    assert P.parse_answers("Sure: [1, 0, 0, 1, 0]", 5) == [1, 0, 0, 1, 0]
    assert P.parse_answers("[1, 0]", 5) is None and P.parse_answers("I don't know", 3) is None


def test_metrics_equal_hand_computations():
    truth = [1, 1, 1, 0, 0, 0, 0, 1]
    pred = [1, 0, 1, 0, 1, 0, 0, 1]
    # tp 3, fn 1, tn 3, fp 1: TPR 0.75, TNR 0.75; F1 = 6 / (6 + 1 + 1)
    assert S.balanced_accuracy(truth, pred) == 0.75 and S.f1(truth, pred) == pytest.approx(0.75)
    assert S.balanced_accuracy(truth, [1] * 8) == 0.5  # a judge that always says yes
    assert S.balanced_accuracy(truth, [0] * 8) == 0.5
    assert S.auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    m = S.metrics(truth, pred[:6] + [None, None])
    assert m["n"] == 6 and m["unparsed"] == 2 and m["bacc"] == S.balanced_accuracy(truth[:6], pred[:6])
    assert S.balanced_accuracy([1, 1], [1, 0]) is None  # no negatives: undefined, not a number


def test_control_pairs_never_pair_a_unit_with_itself():
    for seed in range(50):
        units = [(1, u) for u in range(seed % 7 + 2)]
        pairs = S.control_pairs(units, seed)
        assert set(pairs) == set(units) and all(pairs[u] != u for u in units)
        assert sorted(pairs.values()) == sorted(units)
    assert S.control_pairs([(1, 2)]) == {}
    assert not math.isnan(S.auc([1, 0], [1.0, 0.0]))


def test_embedding_score_equals_numpy_cosines():
    """embedding_auc against the AUC of cosines computed here from the model's own embeddings, one text at a time."""
    import numpy as np

    from core.autointerp.search import embed, embedder

    expl = "numbers and digits"
    pos, neg = ["in 1905 and 1906", "add 3 to 4", "the year 2024"], ["the cat sat", "a red dress", "and then"]
    vec = {t: embedder().encode([t])[0] for t in [expl, *pos, *neg]}
    cos = [float(np.dot(vec[t], vec[expl]) / np.linalg.norm(vec[t]) / np.linalg.norm(vec[expl])) for t in pos + neg]
    want = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in cos[:3] for q in cos[3:]) / 9
    assert S.embedding_auc(expl, pos, neg, embed) == pytest.approx(want, abs=1e-6)
    assert want > 0.8  # and it reads: digits text is nearer "numbers" than the rest
    assert S.embedding_auc(expl, pos, [], embed) is None


def test_candidates_chosen_by_embedding_score_echoes_left_out():
    """_choose keeps the parsed candidate with the highest embedding score on the explaining windows (computed here
    independently), never a reply that repeats a worked example; when most marked spans are of one token class,
    the list named by that class is kept whatever the embedding scores."""
    from core.autointerp.run import _choose
    from core.autointerp.search import embed

    class Fake:
        name = "fake"

        def __init__(self, replies):
            self.replies = iter(replies)

        def complete(self, msgs, max_tokens, prefix=""):
            return next(self.replies)

        def continue_text(self, text, max_tokens=16):
            return " names of animals"  # an echo too

    replies = [P.EXPLAIN_PREFIX + " colour words.",  # an echo of a worked example
               P.EXPLAIN_PREFIX + " fruit and fruit trees.", P.EXPLAIN_PREFIX + " cooking recipes."]
    pos = [P.Window([" an", " apple", " tree"], [0.0, 2.0, 1.0]), P.Window([" ripe", " pear"], [0.0, 1.0]),
           P.Window([" sweet", " plum", " jam"], [0.0, 1.0, 2.0])]
    neg = [P.Window([" the", " cat", " sat"], [0.0] * 3), P.Window([" a", " red", " dress"], [0.0] * 3),
           P.Window([" and", " then"], [0.0] * 2)]
    row = _choose(Fake(replies), pos, 3, neg)
    texts = ["the neuron responds to fruit and fruit trees.", "the neuron responds to cooking recipes.",
             P.token_list(pos)]
    assert texts[2].startswith("the neuron responds to the tokens ")  # no class: chosen by embedding score
    sel = {t: S.embedding_auc(t, ["".join(w.tokens) for w in pos], ["".join(w.tokens) for w in neg], embed)
           for t in texts}
    assert row["status"] == "ok" and row["explanation"] == max(texts, key=lambda t: sel[t])
    assert "colour" not in row["explanation"] and "(echoes a worked example, left out)" in row["reply"]
    assert row["reply"].count("[candidate") == 5 and "(kept)" in row["reply"]
    assert P.echoes_a_shot("the neuron responds to the color words.", embed)
    assert not P.echoes_a_shot("the neuron responds to numbers.", embed)

    digits = [P.Window([" in", " 19", "05"], [0.0, 2.0, 1.0]), P.Window([" add", " 3"], [0.0, 1.0]),
              P.Window([" year", " 20", "24"], [0.0, 1.0, 2.0])]
    row = _choose(Fake(replies[1:] + ["x"]), digits, 2, neg)
    assert row["explanation"] == P.token_list(digits) == 'the neuron responds to numbers: "1905", "3", "2024".'
    assert "[candidate 4, token class (kept)" in row["reply"]


def test_token_classes_by_hand():
    """core.autointerp.lexical on spans whose classes are written here by hand (the first rule that matches)."""
    from core.autointerp import lexical as X

    want = {"\n": "line breaks", "\n    ": "line breaks", "   ": "spaces", " 3": "numbers", "3.14": "numbers",
            "1,000": "numbers", "-2": "numbers", "v3": None, " is": 'forms of the verb "to be"',
            " Were": 'forms of the verb "to be"', " the": "articles", " or": "conjunctions", " except": "Python keywords",
            "match": "Python keywords", "Except": None, "__init__": "special method names",
            "eq__()": "special method names", " len": "names of Python built-ins", ".": "full stops",
            "“": "quotation marks", ")).": "punctuation", "((": "opening brackets", " x": "single letters",
            " evaluated": None, "_": "underscores"}
    for text, cls in want.items():
        assert X.token_class(text) == cls, text
    # one class over 60%; else two, each over 20%, together over 60%; else symbols of any kind; else none
    assert X.name([" 1", " 2", "3", " 44", " dog", " cat"]) == ("numbers", ["numbers"], 4 / 6)
    assert X.name([" 1", " 2", " if", " for", " dog"]) == ("numbers and Python keywords",
                                                          ["numbers", "Python keywords"], 4 / 5)
    assert X.name([" 1", " 2", " 3", " if", " dog", " cat"]) is None  # keywords under 20%
    assert X.name([".", ",", ":", ";", "(", " dog", " cat"]) == (
        "punctuation", ["colons", "commas", "full stops", "opening brackets", "semicolons"], 5 / 7)
    assert X.name([" dog", " cat"]) is None and X.name([]) is None


def test_token_list_named_by_class_lists_the_class_own_spans():
    """The token-list explanation: named by the class most marked spans share, listing that class's spans by
    frequency; a unit of no class keeps the plain list; a span holding a double quote is shown in single quotes."""
    def w(*pairs):
        return P.Window([t for t, _ in pairs], [a for _, a in pairs])
    digits = [w((" in", 0.0), (" 19", 2.0), ("05", 1.0)), w((" add", 0.0), (" 3", 1.0)), w((" 3", 1.0), (" x", 0.0)),
              w((" the", 1.0)), w((" 7", 1.0))]
    # marked spans: " 1905" (merged), " 3", " 3", " the", " 7": numbers cover 4/5
    assert P.token_list(digits) == 'the neuron responds to numbers: "3", "1905", "7".'
    mixed = [w((" dog", 1.0)), w((" cat", 1.0)), w((" 3", 1.0))]
    assert P.token_list(mixed) == 'the neuron responds to the tokens "dog", "cat", "3".'
    quotes = [w(('"', 1.0)), w((' “', 1.0)), w(('"', 1.0), ("a", 0.0))]
    assert P.token_list(quotes) == "the neuron responds to quotation marks: '\"', \"“\"."
    breaks = [w(("a", 0.0), ("\n", 1.0)), w(("\n  ", 1.0)), w(("b", 0.0), ("\n", 1.0))]
    assert P.token_list(breaks) == "the neuron responds to line breaks: '\\n', '\\n  '."
