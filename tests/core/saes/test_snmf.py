"""Semi-NMF (train-sae --method snmf): its encoding equals SciPy's non-negative least squares, its updates do what
Ding, Li & Jordan's semi-NMF promises (least-squares F, a G step that never raises the loss, winner-take-all
sparsity), it recovers factors a synthetic matrix was built from, and a factorisation of a tiny model's MLP
activations is saved, loaded and indexed like an SAE."""

import duckdb
import numpy as np
import pytest
import torch
from helpers.bruteforce import brute_force
from helpers.raw import neurons
from helpers.tiny import write_corpus
from scipy.optimize import nnls as scipy_nnls

from core.data.corpus import Corpus, tokenize
from core.model.load import load_model
from core.saes import snmf
from core.saes.formats import load_sae, save_saelens
from core.saes.sae import SAE, SAEError
from core.saes.train import TrainSAEConfig, train_sae
from core.saes.trainer import TrainError
from core.units.config import ExtractConfig
from core.units.extract import extract


def planted(n=4000, d=64, m=24, keep=8, seed=0):
    """X = G F + noise with G ≥ 0 sparse and F's rows sparse, unit norm."""
    g = torch.Generator().manual_seed(seed)
    F = snmf.wta(torch.randn(m, d, generator=g), keep)
    F /= F.norm(dim=1, keepdim=True)
    G = torch.rand(n, m, generator=g) * (torch.rand(n, m, generator=g) < 0.15)
    return G @ F + 0.01 * torch.randn(n, d, generator=g), F


def snmf_sae(F: torch.Tensor, site="neurons.1") -> SAE:
    return SAE(F.T.clone(), torch.zeros(len(F)), F, torch.zeros(F.shape[1]), activation="nnls", b_dec_in=False,
               site=site)


@pytest.mark.parametrize("fitted", [False, True])
def test_encoding_equals_scipy_nnls(fitted):
    X, F = planted()
    if fitted:  # a factorisation's own F: less well conditioned than the planted one
        F = snmf.fit(X, 24, sparsity=8 / 64, iters=60).F
    sae = snmf_sae(F)
    x = torch.cat([X[:60], torch.randn(20, 64)])  # also rows that are not from the data (negative entries)
    got = sae.encode(x).double().numpy()
    for i in range(len(x)):
        want, res = scipy_nnls(F.T.double().numpy(), x[i].double().numpy())
        loss = ((x[i].double().numpy() - got[i] @ F.double().numpy()) ** 2).sum()
        assert loss - res ** 2 <= 1e-6 * (x[i] ** 2).sum()  # the same minimum
        np.testing.assert_allclose(got[i], want, atol=2e-3 * max(want.max(), 1e-6))
        assert (got[i] >= 0).all() and ((got[i] == 0) == (want == 0)).mean() > 0.95  # exact zeros where SciPy's
    # a token's code does not depend on the batch it is encoded in
    one = torch.cat([sae.encode(x[i: i + 1]) for i in range(10)])
    torch.testing.assert_close(one, sae.encode(x)[:10], atol=1e-5, rtol=0)


def test_updates_follow_the_method():
    X, _ = planted(n=600, d=32, m=10, keep=6)
    g = torch.Generator().manual_seed(1)
    G = torch.rand(600, 10, generator=g) + 0.01
    # F step without sparsity is least squares (NumPy's lstsq), rows then unit norm with G rescaled to match
    F, G2 = snmf.f_step(X, G, keep=32)
    F_ls = np.linalg.lstsq(G.double().numpy(), X.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose((G2 @ F).numpy(), G.numpy() @ F_ls, atol=1e-3)
    np.testing.assert_allclose(F.norm(dim=1).numpy(), 1, atol=1e-6)
    # winner-take-all keeps exactly the `keep` largest |entries| of each row
    Fs, _ = snmf.f_step(X, G, keep=6)
    assert ((Fs != 0).sum(1) == 6).all()
    for r in range(10):
        kept = set(np.nonzero(Fs[r].numpy())[0])
        assert kept == set(np.argsort(-np.abs(F_ls[r]))[:6])
    # the multiplicative G step keeps G ≥ 0 and never raises ‖X − GF‖²
    before = snmf.objective(X, G2, F)
    for _ in range(20):
        G2 = snmf.g_step(X, G2, F)
        after = snmf.objective(X, G2, F)
        assert (G2 >= 0).all() and after <= before * (1 + 1e-6)
        before = after


@pytest.mark.parametrize("solver, updates", [("nnls", 5), ("mu", 1)])
def test_recovers_planted_factors(solver, updates):
    X, F_true = planted()
    fit = snmf.fit(X, 24, sparsity=8 / 64, iters=300, g_solver=solver, g_updates=updates)
    matched = float(((fit.F @ F_true.T).abs().amax(0) > 0.9).float().mean())
    print(f"semi-NMF ({solver}) matched {matched:.0%} of 24 planted factors at cosine > 0.9; training FVU {fit.fvu[-1]:.4f}")
    assert matched >= 0.95 and fit.fvu[-1] < 0.02
    assert fit.fvu[-1] <= fit.fvu[len(fit.fvu) // 2] * 1.01  # it settles


@pytest.fixture(scope="module")
def trained(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snmf")
    corpus = write_corpus(tmp / "c.txt", n_docs=30)
    lm = load_model(str(tiny_lm_dir))
    cfg = TrainSAEConfig(model="tiny", site="neurons.1", out=str(tmp / "snmf"), corpus=corpus, tokens=3000,
                         latents=24, method="snmf", snmf_sparsity=0.1, snmf_iters=40, context_len=32,
                         eval_tokens=1000)
    return tmp, corpus, lm, train_sae(cfg, lm=lm)


def test_train_snmf_saves_an_sae_that_encodes_by_nnls(trained):
    tmp, _, lm, report = trained
    q = report["quality"]
    assert report["method"] == "snmf" and report["latents"] == 24 and report["neurons_per_factor"] == 13
    assert np.isfinite(q["fvu"]) and q["fvu"] < 1 and 0 < q["l0"] <= 24 and np.isfinite(q["ce_recovered"])
    sae = load_sae(tmp / "snmf")
    assert (sae.activation, sae.site, sae.d_in, sae.d_sae) == ("nnls", "neurons.1", lm.parts.d_mlp, 24)
    assert ((sae.W_dec != 0).sum(1) == 13).all()  # sparse combinations of neurons
    x = torch.randn(5, lm.parts.d_mlp)
    again = load_sae(save_saelens(sae, tmp / "copy"))
    torch.testing.assert_close(again.encode(x), sae.encode(x))


def test_snmf_factors_indexed_like_features(trained):
    """Extraction with the semi-NMF indexes its factors; counts, maxima and top values equal brute force over the NNLS
    codes of the model's own MLP activations (plain hooks, one unbatched pass per window)."""
    tmp, _, lm, _ = trained
    corpus = write_corpus(tmp / "small.txt", n_docs=8, seed=3)
    sae = load_sae(tmp / "snmf")
    cfg = ExtractConfig(model="tiny", db=str(tmp / "i.duckdb"), corpus=corpus, max_tokens=10**9, context_len=32,
                        top_k=5, samples=2, hist_bins=64, batch_tokens=96, layers="1", sae=[str(tmp / "snmf")])
    run_id = extract(cfg, lm=lm)
    rows, toks, tok_ids, t = [], [], [], 0
    for text in Corpus(corpus).documents():
        ids = tokenize(lm.tokenizer, text)
        rows += [neurons(lm, ids[s: s + 32], 1) for s in range(0, len(ids), 32)]
        toks.append(np.arange(t, t + len(ids)))
        tok_ids += ids
        t += len(ids)
    keep = ~np.isin(np.array(tok_ids), lm.tokenizer.all_special_ids)
    codes = sae.encode(torch.cat(rows)).numpy()[keep]
    bf = brute_force(codes.astype(np.float32), np.concatenate(toks)[keep], -1, cfg.top_k, cfg.samples,
                     cfg.hist_bins)
    con = duckdb.connect(cfg.db, read_only=True)
    st = con.execute("SELECT count_active, max, n_tokens FROM unit_stats WHERE run_id = ? AND layer = -1 "
                     "ORDER BY unit", [run_id]).fetchall()
    top = con.execute("SELECT unit, activation FROM top_examples WHERE run_id = ? AND layer = -1 ORDER BY unit, rank",
                      [run_id]).fetchall()
    con.close()
    assert len(st) == 24 and st[0][2] == len(codes)
    assert np.abs(np.array([r[0] for r in st]) - bf["count"]).max() <= 1  # a code at the edge of zero may flip
    np.testing.assert_allclose([r[1] for r in st], bf["max"], rtol=1e-3, atol=1e-5)
    for u in range(24):
        want = [v for tk, v in zip(bf["top_tok"][u], bf["top_val"][u], strict=True) if tk >= 0]
        np.testing.assert_allclose([a for uu, a in top if uu == u], want, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("change, match", [({"transcode": True}, "cannot --transcode"),
                                           ({"format": "sparsify"}, "sparsify has no"),
                                           ({"snmf_sparsity": 0.0}, "--snmf-sparsity"),
                                           ({"latents": 5000}, "at least as many training tokens")])
def test_bad_snmf_input_one_line(trained, tmp_path, change, match):
    _, corpus, lm, _ = trained
    cfg = dict(model="tiny", site="neurons.1", out=str(tmp_path / "o"), corpus=corpus, tokens=500, latents=8,
               method="snmf", context_len=32)
    with pytest.raises(TrainError, match=match):
        train_sae(TrainSAEConfig(**(cfg | change)), lm=lm)
    assert not (tmp_path / "o").exists()


def test_nnls_sae_must_be_a_factorisation():
    F = torch.randn(4, 8)
    with pytest.raises(SAEError, match="W_enc = W_dec"):
        SAE(torch.randn(8, 4), torch.zeros(4), F, torch.zeros(8), activation="nnls", b_dec_in=False)
