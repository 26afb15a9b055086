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
    assert msgs[1]["content"] == ("Example 1: The<< cat sat>> on<< mat>>\nActivations: cat sat (5), mat (10)\n\n"
                                  "Example 2: A<< dog>> ran\nActivations: dog (2)\n\n"
                                  "What does the neuron respond to?")


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
