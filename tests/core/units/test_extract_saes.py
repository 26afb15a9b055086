"""SAE features indexed in the extraction pass equal brute force over the SAE applied to a separate unbatched forward
pass (the model's own hidden states, one window at a time), as neurons do; bad SAEs are refused before any write."""

import duckdb
import numpy as np
import pytest
import torch
from helpers.bruteforce import brute_force
from helpers.tiny import write_corpus

from core.data.corpus import Corpus, tokenize
from core.index import queries
from core.model.load import load_model
from core.saes.formats import load_sae, save_saelens
from core.saes.sae import SAE, SAEError
from core.units.config import ExtractConfig
from core.units.extract import extract


def resid_matrix(lm, corpus_path, context_len, layer):
    rows, toks, tok_ids, t = [], [], [], 0
    for text in Corpus(corpus_path).documents():
        ids = tokenize(lm.tokenizer, text)
        for s in range(0, len(ids), context_len):
            with torch.inference_mode():
                out = lm.model(torch.tensor([ids[s: s + context_len]]), output_hidden_states=True)
            rows.append(out.hidden_states[layer + 1][0])
        toks.append(np.arange(t, t + len(ids)))
        tok_ids.extend(ids)
        t += len(ids)
    return torch.cat(rows), np.concatenate(toks), np.array(tok_ids)


@pytest.fixture(scope="module")
def built(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exs")
    corpus = write_corpus(tmp / "c.txt", n_docs=14)
    g = torch.Generator().manual_seed(7)
    sae = SAE(torch.randn(64, 96, generator=g) * 0.3, torch.randn(96, generator=g) * 0.1,
              torch.randn(96, 64, generator=g), torch.randn(64, generator=g) * 0.1, activation="topk", k=8,
              site="resid_post.1", meta={"neuroboard": {"quality": {"fvu": 0.5}}})
    path = save_saelens(sae, tmp / "sae")
    cfg = ExtractConfig(model=str(tiny_lm_dir), db=str(tmp / "i.duckdb"), corpus=corpus, max_tokens=10**9,
                        context_len=32, top_k=8, samples=3, hist_bins=128, batch_tokens=96, chunk_tokens=1500,
                        layers="0", sae=[str(path)])
    lm = load_model(str(tiny_lm_dir))
    return cfg, lm, extract(cfg, lm=lm), load_sae(path)


def test_features_equal_brute_force(built):
    cfg, lm, run_id, sae = built
    X, tok, tok_ids = resid_matrix(lm, cfg.corpus, cfg.context_len, 1)
    keep = ~np.isin(tok_ids, lm.tokenizer.all_special_ids)
    A = sae.encode(X).numpy()[keep]
    tok = tok[keep]
    bf = brute_force(A.astype(np.float32), tok, -1, cfg.top_k, cfg.samples, cfg.hist_bins)
    con = duckdb.connect(cfg.db, read_only=True)
    st = con.execute("SELECT count_active, max, hist_exp, n_tokens FROM unit_stats WHERE run_id = ? AND layer = -1 "
                     "ORDER BY unit", [run_id]).fetchall()
    assert len(st) == 96 and st[0][3] == A.shape[0]
    np.testing.assert_array_equal([r[0] for r in st], bf["count"])
    np.testing.assert_allclose([r[1] for r in st], bf["max"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal([r[2] for r in st], bf["exp"])
    rows = con.execute("SELECT unit, rank, doc_id, position, activation FROM top_examples WHERE run_id = ? AND "
                       "layer = -1 ORDER BY unit, rank", [run_id]).fetchall()
    offs = dict(con.execute("SELECT doc_id, tok0 FROM run_docs WHERE run_id = ?", [run_id]).fetchall())
    by_unit = {}
    for u, _, d, p, a in rows:
        by_unit.setdefault(u, []).append((offs[d] + p, a))
    for u in range(96):
        want = [(t, v) for t, v in zip(bf["top_tok"][u], bf["top_val"][u], strict=True) if t >= 0]
        got = by_unit.get(u, [])
        assert len(got) == len(want)
        np.testing.assert_allclose([a for _, a in got], [v for _, v in want], atol=1e-5)
    saes = queries.run_saes(con, run_id)
    assert [(s.sae_id, s.site, s.d_sae, s.k, s.quality) for s in saes] == [(1, "resid_post.1", 96, 8, {"fvu": 0.5})]
    # neurons of the run are untouched by the SAE's group
    assert con.execute("SELECT count(*) FROM unit_stats WHERE run_id = ? AND layer = 0", [run_id]).fetchall()[0][0] \
        == lm.parts.d_mlp
    con.close()


def test_bad_sae_refused_before_any_write(built, tmp_path):
    cfg, lm, _, sae = built
    wrong = SAE(torch.randn(32, 10), torch.zeros(10), torch.randn(10, 32), torch.zeros(32), site="resid_post.1")
    db = tmp_path / "x.duckdb"
    for path, needle in ((save_saelens(wrong, tmp_path / "w"), "d_in is 32"), (tmp_path / "nope", "no SAE")):
        with pytest.raises(SAEError, match=needle):
            extract(ExtractConfig(model="tiny", db=str(db), corpus=cfg.corpus, layers="0", sae=[str(path)]), lm=lm)
    assert not db.exists()
