"""Unit matching: a known permutation recovered through noise (correlation and decoder cosine), the streaming
correlation against NumPy's corrcoef, and the CLI on a tiny model against activations read with plain hooks."""

import json

import numpy as np
import pytest
import torch

from core.cli import main
from core.units.match import CorrAccumulator, MatchError, cosine_table, match_table


def test_streaming_correlation_equals_numpy():
    rng = np.random.default_rng(0)
    A = np.maximum(rng.normal(size=(500, 12)), 0) * rng.uniform(0.1, 50, 12)
    B = np.concatenate([A[:, :5] @ rng.normal(size=(5, 7)), rng.normal(size=(500, 2)), np.zeros((500, 1))], 1)
    acc = CorrAccumulator(12, 10)
    for lo in range(0, 500, 64):
        acc.add(A[lo:lo + 64], B[lo:lo + 64])
    want = np.corrcoef(A.T, B[:, :9].T)[:12, 12:]
    np.testing.assert_allclose(acc.corr()[:, :9], want, atol=1e-10)
    assert (acc.corr()[:, 9] == 0).all()  # a constant (dead) unit correlates with nothing


def test_recovers_a_known_permutation_through_noise():
    rng = np.random.default_rng(1)
    m, N = 64, 4000
    A = np.maximum(rng.normal(size=(N, m)) - 1.0, 0)  # sparse, ReLU-like
    perm = rng.permutation(m)
    B = A[:, perm] + 0.3 * rng.normal(size=(N, m)) * A.std(0)[perm]
    acc = CorrAccumulator(m, m)
    acc.add(A, B)
    res = match_table(acc.corr(), "corr")
    inv = np.argsort(perm)  # unit i of A is unit inv[i] of B
    assert (res.best == inv).mean() == 1.0
    assert {(int(a), int(b)) for a, b in res.pairs} == {(i, int(inv[i])) for i in range(m)}
    assert res.best_score.min() > 0.8
    W = rng.normal(size=(m, 32))
    Wb = W[perm] + 0.2 * rng.normal(size=(m, 32))
    res = match_table(cosine_table(torch.tensor(W), torch.tensor(Wb)), "cosine")
    assert (res.best == inv).mean() == 1.0 and (res.pairs[:, 1] == inv[res.pairs[:, 0]]).all()


def test_one_to_one_differs_from_many_to_one():
    """Two units of A that both best match one unit of B: many-to-one keeps both, one-to-one gives one of them the
    next best."""
    score = np.array([[0.9, 0.5], [0.8, 0.1]])
    res = match_table(score, "corr")
    assert res.best.tolist() == [0, 0]
    assert sorted(map(tuple, res.pairs.tolist())) == [(0, 1), (1, 0)]  # 0.5 + 0.8 > 0.9 + 0.1


def test_match_cli_neurons_against_plain_hooks(tiny_lm_dir, tmp_path, capsys):
    """neurons.1 against neurons.1 of the same model matches every neuron to itself at correlation 1; neurons.0
    against neurons.1 equals the correlation of activations read here with plain hooks."""
    from helpers.raw import neurons

    from core.data.corpus import sample_windows
    from core.model.load import load_model

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"The cat {i} sat on the mat and looked at {i * 7} birds." for i in range(40)),
                      encoding="utf-8")
    base = ["match", "--model", str(tiny_lm_dir), "--corpus", str(corpus), "--tokens", "400", "--context-len", "32",
            "--json", "--no-progress"]
    assert main(base + ["--a", "neurons.1", "--b", "neurons.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    d = len(out["best"])
    live = [i for i, s in enumerate(out["best_score"]) if s > 0]
    assert out["best"] == list(range(d)) or all(out["best"][i] == i for i in live)
    assert np.allclose([out["best_score"][i] for i in live], 1.0)
    assert main(base + ["--a", "neurons.0", "--b", "neurons.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    lm = load_model(str(tiny_lm_dir))
    special = set(lm.tokenizer.all_special_ids)
    A, B = [], []
    for w in sample_windows(str(corpus), lm.tokenizer, n_tokens=400, context_len=32):
        keep = [t not in special for t in w]
        A.append(neurons(lm, w, 0).double().numpy()[keep])
        B.append(neurons(lm, w, 1).double().numpy()[keep])
    A, B = np.concatenate(A), np.concatenate(B)
    C = np.nan_to_num(np.corrcoef(A.T, B.T)[:d, d:])
    np.testing.assert_allclose(out["best_score"], C.max(1), atol=1e-6)
    assert out["tokens"] == len(A) and sum(out["hist_counts"]) == d


@pytest.mark.parametrize("args, needle", [
    (["--a", "neurons.9", "--b", "neurons.1"], "out of range"),
    (["--a", "resid_post.1", "--b", "neurons.1"], "neurons.L or sae:PATH"),
    (["--a", "neurons.1", "--b", "neurons.1", "--by", "cosine"], "two sae:PATH"),
    (["--a", "neurons.1", "--b", "sae:/nowhere"], "nowhere"),
    (["--a", "neurons.1", "--b", "neurons.1", "--tokens", "0"], "--tokens"),
])
def test_match_bad_input_one_line(tiny_lm_dir, capsys, args, needle):
    rc = main(["match", "--model", str(tiny_lm_dir), "--no-progress"] + args)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_match_error_is_a_user_error():
    from core.errors import UserError

    assert issubclass(MatchError, UserError)


def test_best_matches_of_one_unit_equal_the_full_table(tiny_lm_dir, tmp_path):
    from core.units.match import MatchQuery, best_matches, match_units

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"A dog {i} ran past {i * 3} trees and a river." for i in range(30)),
                      encoding="utf-8")
    q = MatchQuery(a="neurons.0", b="neurons.2", model=[str(tiny_lm_dir)], corpus=str(corpus), tokens=300,
                   context_len=32, one_to_one=False)
    full = match_units(q)
    top = best_matches(q, 7, k=3)
    assert top[0] == (full["best"][7], pytest.approx(full["best_score"][7], abs=1e-9))
    assert top[0][1] >= top[1][1] >= top[2][1]
    with pytest.raises(MatchError, match="out of range"):
        best_matches(q, 10_000)
