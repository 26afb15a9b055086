"""Training recovers a known sparse dictionary; quality numbers equal brute-force NumPy; CE recovered is 1 for a
perfect reconstruction and 0 for the zero-ablation one; train-sae end to end on a tiny model."""

import json

import numpy as np
import pytest
import torch
from helpers.tiny import write_corpus

from core.model.load import load_model
from core.model.sites import Site
from core.saes import acts
from core.saes.formats import load_sae
from core.saes.quality import Accumulator, evaluate
from core.saes.sae import SAE
from core.saes.train import TrainSAEConfig, train_sae
from core.saes.trainer import TopKTrainer, TrainError


def synthetic(n, d=32, n_true=64, active=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_true, d, generator=g)
    D /= D.norm(dim=-1, keepdim=True)  # (n_true, d) the true directions
    idx = torch.stack([torch.randperm(n_true, generator=g)[:active] for _ in range(n)])  # (n, active)
    mags = torch.rand(n, active, generator=g) * 2 + 0.5
    codes = torch.zeros(n, n_true).scatter_(1, idx, mags)
    return codes @ D + 0.3, D  # an offset, so b_dec has something to learn


def test_training_recovers_a_known_dictionary():
    x, D = synthetic(120_000)
    steps = 120_000 // 512
    tr = TopKTrainer(32, 32, 128, 3, False, lr=3e-3, auxk_alpha=1 / 32, dead_tokens=4096, total_steps=steps * 2)
    tr.start(x[:8192], x[:8192])
    for _ in range(2):  # two epochs
        perm = torch.randperm(len(x))
        for i in range(steps):
            b = x[perm[i * 512:(i + 1) * 512]]
            fvu, l0, _ = tr.step(b, b)
    sae = tr.sae()
    cos = (D @ (sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)).T).max(1).values  # (n_true,) best match each
    matched = float((cos > 0.9).float().mean())
    print(f"true directions matched at cosine > 0.9: {matched:.3f}; final batch FVU {fvu:.4f}")
    assert matched >= 0.9
    assert fvu < 0.1 and l0 <= 3


def test_accumulator_equals_numpy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(500, 8)) * 2 + 1
    y_hat = y + rng.normal(size=y.shape) * 0.3
    f = rng.normal(size=(500, 20)) * (rng.random((500, 20)) < 0.1)
    f[:, 3] = 0
    acc = Accumulator(20, 8)
    for i in range(0, 500, 64):
        acc.add(torch.tensor(y[i:i + 64], dtype=torch.float32), torch.tensor(y_hat[i:i + 64], dtype=torch.float32),
                torch.tensor(f[i:i + 64], dtype=torch.float32))
    y32, yh32 = y.astype(np.float32).astype(np.float64), y_hat.astype(np.float32).astype(np.float64)
    fvu = ((y32 - yh32) ** 2).sum() / ((y32 - y32.mean(0)) ** 2).sum()
    nums = acc.numbers()
    assert nums["fvu"] == pytest.approx(fvu, rel=1e-9)
    assert nums["l0"] == pytest.approx((f.astype(np.float32) != 0).sum(1).mean())
    fired = (f != 0).sum(0)
    assert nums["dead"] == int((fired == 0).sum()) and nums["dead_frac"] == pytest.approx((fired == 0).mean())
    assert nums["density_lt_1e5"] == int((fired / 500 < 1e-5).sum())


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_dir):
    return load_model(str(tiny_lm_dir))


def identity_sae(d, site):
    eye = torch.eye(d)
    return SAE(torch.cat([eye, -eye], 1), torch.zeros(2 * d), torch.cat([eye, -eye], 0), torch.zeros(d),
               b_dec_in=False, site=site)  # relu(x) - relu(-x) = x


def test_ce_recovered_one_for_perfect_and_zero_for_zero(tiny_lm, tmp_path):
    split = acts.split_corpus(write_corpus(tmp_path / "c.txt", n_docs=30), tiny_lm.tokenizer, context_len=32)
    site = Site.parse("resid_post.1")
    q = evaluate(identity_sae(64, str(site)), tiny_lm, split.held_out, site, site)
    assert q.ce_recovered == pytest.approx(1.0, abs=1e-4) and q.kl == pytest.approx(0.0, abs=1e-5)
    assert q.fvu == pytest.approx(0.0, abs=1e-6) and abs(q.ce_zero - q.ce_clean) > 1e-3  # the site matters
    zero = SAE(torch.randn(64, 16), torch.zeros(16), torch.zeros(16, 64), torch.zeros(64), b_dec_in=False)
    q0 = evaluate(zero, tiny_lm, split.held_out, site, site)
    assert q0.ce_recovered == pytest.approx(0.0, abs=1e-5) and q0.fvu > 0.99
    assert q0.tokens == q.tokens and q.tokens > 0


def test_quality_brute_force_on_one_pass(tiny_lm, tmp_path):
    """FVU, L0 and dead share from evaluate() equal NumPy on the model's own hidden states (one window a pass)."""
    split = acts.split_corpus(write_corpus(tmp_path / "c.txt", n_docs=30), tiny_lm.tokenizer, context_len=32)
    g = torch.Generator().manual_seed(3)
    sae = SAE(torch.randn(64, 48, generator=g) * 0.3, torch.randn(48, generator=g) * 0.1,
              torch.randn(48, 64, generator=g) * 0.2, torch.randn(64, generator=g) * 0.1, activation="topk", k=5,
              site="resid_post.1")
    q = evaluate(sae, tiny_lm, split.held_out, Site.parse("resid_post.1"), Site.parse("resid_post.1"), ce=False)
    rows = []
    special = set(tiny_lm.tokenizer.all_special_ids)
    for w in split.held_out:  # one window at a time, no padding
        with torch.inference_mode():
            h = tiny_lm.model(torch.tensor([w.ids]), output_hidden_states=True).hidden_states[2][0]  # (T, d) block 1
        rows.append(h[[t not in special for t in w.ids]].numpy())
    y = np.concatenate(rows).astype(np.float64)
    pre = (y - sae.b_dec.numpy()) @ sae.W_enc.numpy() + sae.b_enc.numpy()
    f = np.zeros_like(pre)
    top = np.argsort(-pre, 1)[:, :5]
    np.put_along_axis(f, top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
    y_hat = f @ sae.W_dec.numpy() + sae.b_dec.numpy()
    assert q.fvu == pytest.approx(((y - y_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum(), rel=1e-4)
    assert q.l0 == pytest.approx((f != 0).sum(1).mean(), rel=1e-6)
    assert q.dead == int(((f != 0).sum(0) == 0).sum()) and q.tokens == len(y)


def test_train_sae_end_to_end(tiny_lm, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", n_docs=40)
    out = tmp_path / "sae"
    cfg = TrainSAEConfig(model="tiny", site="resid_post.1", out=str(out), corpus=corpus, tokens=6000, latents=128,
                         k=8, batch=256, buffer_tokens=1024, context_len=32, eval_tokens=2000)
    report = train_sae(cfg, lm=tiny_lm)
    q = report["quality"]
    assert report["tokens"] == 6000 // 256 * 256 and q["l0"] <= 8 and 0 <= q["dead_frac"] <= 1
    assert np.isfinite(q["fvu"]) and q["fvu"] < 1.0  # it learned something on a random model's stream
    sae = load_sae(out)
    assert sae.site == "resid_post.1" and sae.k == 8 and sae.d_sae == 128
    assert json.loads((out / "cfg.json").read_text())["metadata"]["neuroboard"]["quality"]["fvu"] == q["fvu"]
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(128), atol=1e-5)  # unit-norm decoder rows
    # a transcoder, sparsify format
    tc = train_sae(TrainSAEConfig(model="tiny", site="mlp_in.1", out=str(tmp_path / "tc"), corpus=corpus,
                                  tokens=2048, latents=64, k=4, batch=256, buffer_tokens=1024, context_len=32,
                                  transcode=True, format="sparsify", eval_tokens=1000), lm=tiny_lm)
    back = load_sae(tmp_path / "tc" / "layers.1.mlp")
    assert (back.site, back.out_site, tc["out_site"]) == ("mlp_in.1", "mlp_out.1", "mlp_out.1")


@pytest.mark.parametrize("change, match", [({"tokens": 0}, "--tokens"), ({"k": 500}, "--k 500"),
                                           ({"site": "resid_post.9"}, "layers 0-2"),
                                           ({"site": "hook_embed"}, "unknown site")])
def test_bad_training_input_one_line(tiny_lm, tmp_path, change, match):
    cfg = dict(model="tiny", site="resid_post.1", out=str(tmp_path / "o"), corpus="demo", tokens=100, latents=128)
    with pytest.raises((TrainError, ValueError), match=match):
        train_sae(TrainSAEConfig(**(cfg | change)), lm=tiny_lm)
    assert not (tmp_path / "o").exists()


def test_sparse_gradients_equal_dense_autograd():
    """PickPre's sparse gradients (W_enc, b_enc, and b_dec through the input) equal plain dense autograd."""
    from core.saes.trainer import PickPre

    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 12, generator=g)
    W = torch.randn(12, 40, generator=g, requires_grad=True)
    b = torch.randn(40, generator=g, requires_grad=True)
    b_dec = torch.randn(12, generator=g, requires_grad=True)
    w_out = torch.randn(50, 5, generator=g)

    def loss(sparse: bool):
        x_in = x - b_dec
        if sparse:
            with torch.no_grad():
                pre = x_in @ W + b
            vals, idx = pre.topk(5, dim=-1)
            vals = PickPre.apply(x_in, W, b, idx, vals)
        else:
            vals, idx = (x_in @ W + b).topk(5, dim=-1)
        return (vals.relu() * w_out).sum()

    grads = []
    for sparse in (False, True):
        W.grad = b.grad = b_dec.grad = None
        loss(sparse).backward()
        grads.append([W.grad.clone(), b.grad.clone(), b_dec.grad.clone()])
    for dense, sp in zip(*grads, strict=True):
        torch.testing.assert_close(sp, dense, rtol=1e-5, atol=1e-5)


def test_activation_cache_from_extraction_then_training(tiny_lm, tiny_lm_dir, tmp_path):
    """extract --capture caches the counted tokens' activations (float16) with their held-out flags; the rows equal
    the model's own hidden states; train-sae --acts trains from them without streaming."""
    from core.data.corpus import Corpus, tokenize
    from core.units.config import ExtractConfig
    from core.units.extract import extract

    corpus = write_corpus(tmp_path / "c.txt", n_docs=30)
    cache = tmp_path / "acts"
    extract(ExtractConfig(model=str(tiny_lm_dir), db=str(tmp_path / "i.duckdb"), corpus=corpus, context_len=32,
                          layers="0", capture="resid_post.1", capture_dir=str(cache), chunk_tokens=500), lm=tiny_lm)
    assert acts.cache_info(cache)["site"] == "resid_post.1"
    X, H = acts.load_cache(cache)
    special = set(tiny_lm.tokenizer.all_special_ids)
    want_x, want_h = [], []
    for doc_id, text in enumerate(Corpus(corpus).documents()):
        ids = tokenize(tiny_lm.tokenizer, text)
        for s in range(0, len(ids), 32):
            w = ids[s: s + 32]
            with torch.inference_mode():
                h = tiny_lm.model(torch.tensor([w]), output_hidden_states=True).hidden_states[2][0]
            rows = h[[t not in special for t in w]]
            (want_h if acts.held_out(doc_id, s) else want_x).append(rows)
    assert len(H) > 0
    # the cache keeps the extraction's batch order: every row has its twin (to float16 and batching noise)
    for got, want in ((X, torch.cat(want_x)), (H, torch.cat(want_h))):
        assert got.shape == want.shape
        d = torch.cdist(got.double(), want.double())
        scale = want.norm(dim=1).max()
        assert d.min(1).values.max() < 2e-3 * scale and d.min(0).values.max() < 2e-3 * scale
    report = train_sae(TrainSAEConfig(model="tiny", site="resid_post.1", out=str(tmp_path / "sae"), acts=str(cache),
                                      tokens=2048, latents=64, k=4, batch=256, buffer_tokens=1024, eval_tokens=800),
                       lm=tiny_lm)
    assert report["source"].startswith("activation cache") and report["tokens"] == 2048
    with pytest.raises(TrainError, match="caches resid_post.1"):
        train_sae(TrainSAEConfig(model="tiny", site="resid_post.2", out=str(tmp_path / "x"), acts=str(cache)),
                  lm=tiny_lm)
