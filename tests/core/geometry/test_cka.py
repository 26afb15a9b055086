"""CKA against formulas written here in their textbook forms (feature-space linear CKA; the unbiased HSIC estimator
with explicit matrices, one pair at a time), its invariances, its behaviour on unrelated data, and the CLI."""

import json

import numpy as np
import pytest

from core.cli import main
from core.geometry.cka import CKAError, cka_matrix, compare_layers


def linear_reference(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))


def hsic1(K, L):
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))


def debiased_reference(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return hsic1(K, L) / np.sqrt(hsic1(K, K) * hsic1(L, L))


def test_equals_the_formulas():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 40, 16))
    B = np.stack([A[0] @ rng.normal(size=(16, 24)) + 0.5 * rng.normal(size=(40, 24)), rng.normal(size=(40, 24))])
    for kind, ref in (("linear", linear_reference), ("debiased", debiased_reference)):
        got = cka_matrix(A, B, kind)
        want = np.array([[ref(a, b) for b in B] for a in A])
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        assert got.shape == (3, 2)


@pytest.mark.parametrize("kind", ["linear", "debiased"])
def test_identity_and_invariances(kind):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 20)) @ rng.normal(size=(20, 20))
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    Y = np.stack([X, 3.7 * X @ Q, X + rng.normal(size=X.shape)])
    got = cka_matrix(X, Y, kind)[0]
    assert got[0] == pytest.approx(1.0, abs=1e-12) and got[1] == pytest.approx(1.0, abs=1e-10)
    assert got[2] < 0.99


def test_unrelated_data_near_zero_only_when_debiased():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(200, 576)), rng.normal(size=(200, 640))
    assert abs(cka_matrix(X, Y, "debiased")[0, 0]) < 0.03
    assert cka_matrix(X, Y, "linear")[0, 0] > 0.5  # the bias the default avoids


def test_bad_input():
    rng = np.random.default_rng(3)
    with pytest.raises(CKAError, match="same prompts"):
        cka_matrix(rng.normal(size=(10, 4)), rng.normal(size=(11, 4)))
    with pytest.raises(CKAError, match="too few"):
        cka_matrix(rng.normal(size=(4, 4)), rng.normal(size=(4, 4)))
    with pytest.raises(CKAError, match="unknown CKA kind"):
        cka_matrix(rng.normal(size=(10, 4)), rng.normal(size=(10, 4)), "rbf")


@pytest.fixture
def prompt_csv(tmp_path):
    rows = ["text,label"] + [f"The cat number {i} sat.,a" for i in range(6)] + \
        [f"A dog called {i} ran off.,b" for i in range(6)]
    p = tmp_path / "set.csv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(p)


def test_model_against_itself_and_the_cli(tiny_lm_dir, prompt_csv, capsys):
    from core.data.prompt_sets import layer_representations, load_prompt_set
    from core.model.load import load_model

    lm = load_model(str(tiny_lm_dir))
    texts = load_prompt_set(prompt_csv).texts
    res = compare_layers(lm, lm, texts, "debiased", "mean")
    np.testing.assert_allclose(np.diag(res.cka), 1.0, atol=1e-9)
    assert res.best == list(range(lm.n_layers))
    R = layer_representations(lm, texts, pool="last")
    rc = main(["cka", "--model", str(tiny_lm_dir), "--model", str(tiny_lm_dir), "--set", prompt_csv, "--kind",
               "linear", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["kind"] == "linear" and out["rep"] == "last" and out["prompts"] == 12
    want = [[linear_reference(R[i].astype(np.float64), R[j].astype(np.float64)) for j in range(lm.n_layers)]
            for i in range(lm.n_layers)]
    np.testing.assert_allclose(out["cka"], want, rtol=1e-6)
    assert out["best"] == [int(np.argmax(r)) for r in want]


@pytest.mark.parametrize("args, needle", [
    (["--set", "sentiment"], "give --model twice"),
    (["--model", "x", "--set", "nope.csv"], "nope.csv"),
    (["--model", "x", "--set", "sentiment", "--kind", "rbf"], "invalid choice"),
    (["--model", "x", "--set", "sentiment", "--max-prompts", "2"], "at least 5"),
])
def test_cli_bad_input_one_line(tiny_lm_dir, capsys, args, needle):
    rc = main(["cka", "--model", str(tiny_lm_dir)] + args)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
