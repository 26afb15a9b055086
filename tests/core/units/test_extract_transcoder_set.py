"""extract --sae SET: every layer of a transcoder set is indexed as its own SAE (SET/layer_L, reading mlp_in.L, writing
mlp_out.L); its features' counts, maxima and top examples equal brute force (as tests/helpers/bruteforce.py orders
them) over the set's encoders applied to an unbatched pass (each window alone, the MLP's input read with a plain
torch hook), and a feature page's logit effects are its decoder row written at
mlp_out.L, through the final norm's gain and the unembedding, by hand."""

import duckdb
import numpy as np
import pytest
import torch
from helpers.circuits import topk_transcoders
from helpers.tiny import write_corpus

from core.data.corpus import Corpus, tokenize
from core.index import queries
from core.model.load import load_model
from core.saes.features import FeatureSource
from core.saes.transcoders import TranscoderSet, save_transcoder_set
from core.units.config import ExtractConfig
from core.units.extract import extract
from core.units.logit_effects import direction_effects

LAYERS = (0, 2)


def mlp_inputs(lm, corpus_path, context_len):
    """{layer: (n, d_model) the MLP's input for every token}, one window a pass, and each token's global index."""
    rows, toks, tok_ids, t = {L: [] for L in LAYERS}, [], [], 0
    for text in Corpus(corpus_path).documents():
        ids = tokenize(lm.tokenizer, text)
        for s in range(0, len(ids), context_len):
            hs = [lm.model.model.layers[L].mlp.register_forward_pre_hook(
                lambda m, args, L=L: rows[L].append(args[0][0].clone())) for L in LAYERS]
            try:
                with torch.inference_mode():
                    lm.model(torch.tensor([ids[s: s + context_len]]))
            finally:
                for h in hs:
                    h.remove()
        toks.append(np.arange(t, t + len(ids)))
        tok_ids.extend(ids)
        t += len(ids)
    return {L: torch.cat(r) for L, r in rows.items()}, np.concatenate(toks), np.array(tok_ids)


@pytest.fixture(scope="module")
def built(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exts")
    corpus = write_corpus(tmp / "c.txt", n_docs=12)
    tcs = topk_transcoders(LAYERS, seed=11)
    path = save_transcoder_set(TranscoderSet(tcs, list(LAYERS)), tmp / "tset")
    cfg = ExtractConfig(model=str(tiny_lm_dir), db=str(tmp / "i.duckdb"), corpus=corpus, max_tokens=10**9,
                        context_len=32, top_k=6, samples=3, hist_bins=128, batch_tokens=96, chunk_tokens=1500,
                        layers="1", sae=[str(path)], sae_map=False)
    lm = load_model(str(tiny_lm_dir))
    return cfg, lm, extract(cfg, lm=lm), tcs, path


def test_every_layer_of_the_set_is_indexed_as_brute_force(built):
    cfg, lm, run_id, tcs, path = built
    con = duckdb.connect(cfg.db, read_only=True)
    saes = queries.run_saes(con, run_id)
    assert [(s.sae_id, s.name, s.site, s.out_site, s.d_sae, s.k) for s in saes] == [
        (1, "tset/layer_0", "mlp_in.0", "mlp_out.0", 40, 6), (2, "tset/layer_2", "mlp_in.2", "mlp_out.2", 40, 6)]
    assert [s.path for s in saes] == [str(path / "layer_0.safetensors"), str(path / "layer_2.safetensors")]
    offs = dict(con.execute("SELECT doc_id, tok0 FROM run_docs WHERE run_id = ?", [run_id]).fetchall())
    X, tok, tok_ids = mlp_inputs(lm, cfg.corpus, cfg.context_len)
    keep = ~np.isin(tok_ids, lm.tokenizer.all_special_ids)
    tok = tok[keep]
    for s, (L, tc) in enumerate(zip(LAYERS, tcs, strict=True), 1):
        A = tc.encode(X[L]).numpy()[keep]  # (n, 40)
        order = np.lexsort((tok[:, None].repeat(40, 1), -A), axis=0)[:cfg.top_k]  # value desc, then token asc
        bf = {"count": (A > 0).sum(0), "max": A.max(0), "top_tok": tok[order].T,
              "top_val": np.take_along_axis(A, order, 0).T}
        st = con.execute("SELECT count_active, max, n_tokens FROM unit_stats WHERE run_id = ? AND layer = ? "
                         "ORDER BY unit", [run_id, -s]).fetchall()
        assert len(st) == 40 and st[0][2] == A.shape[0]
        np.testing.assert_array_equal([r[0] for r in st], bf["count"])
        np.testing.assert_allclose([r[1] for r in st], bf["max"], rtol=1e-5, atol=1e-6)
        rows = con.execute("SELECT unit, doc_id, position, activation FROM top_examples WHERE run_id = ? AND "
                           "layer = ? ORDER BY unit, rank", [run_id, -s]).fetchall()
        by_unit: dict = {}
        for u, d, p, a in rows:
            by_unit.setdefault(u, []).append((offs[d] + p, a))
        for u in range(40):
            want = [(t, v) for t, v in zip(bf["top_tok"][u], bf["top_val"][u], strict=True) if t >= 0]
            got = by_unit.get(u, [])
            assert len(got) == len(want)
            np.testing.assert_allclose([a for _, a in got], [v for _, v in want], atol=1e-5)
    con.close()


def test_a_set_features_page_reads_its_layer_file(built):
    cfg, lm, run_id, tcs, path = built
    con = duckdb.connect(cfg.db, read_only=True)
    info = queries.run_saes(con, run_id)[1]  # layer 2
    con.close()
    src = FeatureSource(info.path, info.site)
    f = 7
    d = src.direction(lm, 2, f)
    assert torch.equal(d, tcs[1].W_dec[f])  # mlp_out is in the residual stream: the decoder row as is
    eff = direction_effects(lm, d)
    W_U = lm.model.lm_head.weight.detach().double()  # (V, d_model)
    gain = lm.model.model.norm.weight.detach().double()  # RMSNorm's gain
    np.testing.assert_allclose(eff.values, (W_U @ (gain * tcs[1].W_dec[f].double())).numpy(), rtol=1e-5, atol=1e-5)
    ids = tokenize(lm.tokenizer, "The cat sat on the mat.")
    live = src.activations(lm, 2, f, [ids])[0]
    got = []
    h = lm.model.model.layers[2].mlp.register_forward_pre_hook(lambda m, args: got.append(args[0][0].clone()))
    try:
        with torch.inference_mode():
            lm.model(torch.tensor([ids]))
    finally:
        h.remove()
    np.testing.assert_allclose(live, tcs[1].encode(got[0])[:, f].numpy(), rtol=1e-5, atol=1e-5)
