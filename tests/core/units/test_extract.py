"""One-pass extraction into DuckDB against independent routes: brute force over the full activation matrix,
computed by a separate unbatched forward pass per window, and the model's own output for a document alone."""

import duckdb
import numpy as np
import pytest
import torch
from helpers.bruteforce import brute_force
from helpers.raw import neurons
from helpers.tiny import write_corpus

from core.data.corpus import Corpus, tokenize
from core.model.load import load_model
from core.units.config import ExtractConfig, ExtractError, parse_layers
from core.units.extract import extract


def full_matrix(lm, corpus_path, context_len, layer):
    """(n, d) activations of every token in document order, one window at a time (no batching, no padding)."""
    rows, toks, tok_ids = [], [], []
    t = 0
    for text in Corpus(corpus_path).documents():
        ids = tokenize(lm.tokenizer, text)
        for s in range(0, len(ids), context_len):
            rows.append(neurons(lm, ids[s: s + context_len], layer).numpy())
        toks.append(np.arange(t, t + len(ids)))
        tok_ids.extend(ids)
        t += len(ids)
    return np.concatenate(rows), np.concatenate(toks), np.array(tok_ids)


@pytest.fixture(scope="module")
def built(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ex")
    corpus = write_corpus(tmp / "c.txt", n_docs=14)
    cfg = ExtractConfig(model=str(tiny_lm_dir), db=str(tmp / "i.duckdb"), corpus=corpus, max_tokens=10**9,
                        context_len=32, top_k=8, samples=3, hist_bins=128, batch_tokens=96, chunk_tokens=1500)
    lm = load_model(str(tiny_lm_dir))
    run_id = extract(cfg, lm=lm)
    return cfg, lm, run_id


@pytest.mark.parametrize("layer", [0, 2])
def test_index_equals_brute_force(built, layer):
    cfg, lm, run_id = built
    A, tok, tok_ids = full_matrix(lm, cfg.corpus, cfg.context_len, layer)
    keep = ~np.isin(tok_ids, lm.tokenizer.all_special_ids)  # BOS feeds the model but is not counted
    A, tok = A[keep], tok[keep]
    bf = brute_force(A.astype(np.float32), tok, layer, cfg.top_k, cfg.samples, cfg.hist_bins)
    con = duckdb.connect(cfg.db, read_only=True)
    st = con.execute("SELECT count_active, max, hist_exp, hist, n_tokens, mean FROM unit_stats "
                     "WHERE run_id = ? AND layer = ? ORDER BY unit", [run_id, layer]).fetchall()
    assert len(st) == lm.parts.d_mlp and st[0][4] == A.shape[0]
    np.testing.assert_array_equal([r[0] for r in st], bf["count"])
    np.testing.assert_allclose([r[1] for r in st], bf["max"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r[5] for r in st], bf["mean"], rtol=1e-4, atol=1e-6)
    # histograms: batched and unbatched forwards differ by float noise, so a value within 1e-4 of a bin edge may
    # land in the neighbouring bin; every difference must be explained by such a value, and the scale is exact
    np.testing.assert_array_equal([r[2] for r in st], bf["exp"])
    for u, r in enumerate(st):
        x = A[:, u] / (2.0 ** bf["exp"][u] / cfg.hist_bins)
        near = int((np.abs(x - np.round(x)) < 1e-4).sum())
        assert np.abs(np.array(r[3]) - bf["hist"][u]).sum() <= 2 * near, u
    # top-K: same tokens in the same order (ties broken by token index), values to float noise
    rows = con.execute("SELECT unit, rank, doc_id, position, activation FROM top_examples t JOIN run_docs d "
                       "USING (run_id, doc_id) WHERE run_id = ? AND layer = ? ORDER BY unit, rank",
                       [run_id, layer]).fetchall()
    offs = dict(con.execute("SELECT doc_id, tok0 FROM run_docs WHERE run_id = ?", [run_id]).fetchall())
    got = np.array([offs[d] + p for _, _, d, p, _ in rows]).reshape(lm.parts.d_mlp, cfg.top_k)
    np.testing.assert_allclose(np.array([r[4] for r in rows]).reshape(got.shape), bf["top_val"], atol=1e-5)
    row_of = {t: i for i, t in enumerate(tok)}
    differ = np.argwhere(got != bf["top_tok"])
    assert len(differ) < 0.02 * got.size
    for u, k in differ:  # only near-ties (values equal up to float noise, e.g. identical document openings)
        assert abs(A[row_of[got[u, k]], u] - A[row_of[bf["top_tok"][u, k]], u]) < 1e-5
    # interval samples, where certified exact (and nearly all are)
    ex = dict(((u, i), e) for u, i, e in con.execute("SELECT unit, interval, exact FROM intervals "
                                                      "WHERE run_id = ? AND layer = ?", [run_id, layer]).fetchall())
    samp = {}
    for u, i, d, p in con.execute("SELECT unit, interval, doc_id, position FROM interval_samples "
                                  "WHERE run_id = ? AND layer = ?", [run_id, layer]).fetchall():
        samp.setdefault((u, i), []).append(offs[d] + p)
    certified = [k for k in bf["samples"] if ex.get(k)]
    assert len(certified) >= 0.95 * len(bf["samples"])
    for k in certified:
        assert sorted(samp.get(k, [])) == bf["samples"][k], k


def test_stored_contexts_equal_unbatched_forward(built):
    """top_examples.context: the unit's activation at positions pos-W..pos+W of the example's window (NaN outside),
    against a separate unbatched forward of each window; special tokens (not counted) still appear as context."""
    cfg, lm, run_id = built
    layer, W = 1, cfg.ctx_window
    A, tok, _ = full_matrix(lm, cfg.corpus, cfg.context_len, layer)
    con = duckdb.connect(cfg.db, read_only=True)
    offs = dict(con.execute("SELECT doc_id, tok0 FROM run_docs WHERE run_id = ?", [run_id]).fetchall())
    rows = con.execute("SELECT unit, rank, doc_id, position, context FROM top_examples WHERE run_id = ? AND layer = ?",
                       [run_id, layer]).fetchall()
    Kc = min(cfg.ctx_examples, cfg.top_k)
    assert all((ctx is None) == (rank >= Kc) for _, rank, _, _, ctx in rows)
    checked = 0
    for unit, _, doc, pos, ctx in rows:
        if ctx is None:
            continue
        ws = pos // cfg.context_len * cfg.context_len
        n_doc = con.execute("SELECT n_tokens FROM run_docs WHERE run_id = ? AND doc_id = ?", [run_id, doc]).fetchall()
        we = min(ws + cfg.context_len, n_doc[0][0])
        want = [A[offs[doc] + q, unit] if ws <= q < we else np.nan for q in range(pos - W, pos + W + 1)]
        np.testing.assert_allclose(np.array(ctx, np.float64), want, atol=1e-5, equal_nan=True)
        assert ctx[W] == pytest.approx(A[offs[doc] + pos, unit], abs=1e-5)
        checked += 1
    assert checked == lm.parts.d_mlp * Kc


def test_top1_equals_fresh_forward_of_document_alone(built):
    cfg, lm, run_id = built
    con = duckdb.connect(cfg.db, read_only=True)
    layer, unit = 1, 5
    doc_id, pos, act = con.execute("SELECT doc_id, position, activation FROM top_examples WHERE run_id = ? AND "
                                   "layer = ? AND unit = ? AND rank = 0", [run_id, layer, unit]).fetchall()[0]
    ids = [r[0] for r in con.execute("SELECT token_id FROM tokens WHERE run_id = ? AND doc_id = ? ORDER BY position",
                                     [run_id, doc_id]).fetchall()]
    start = (pos // cfg.context_len) * cfg.context_len
    assert neurons(lm, ids[start: pos + 1], layer)[-1, unit].item() == pytest.approx(act, abs=1e-5)


def test_windows_and_tokens_match_corpus(built):
    cfg, lm, run_id = built
    con = duckdb.connect(cfg.db, read_only=True)
    docs = list(Corpus(cfg.corpus).documents())
    assert con.execute("SELECT count(*) FROM documents").fetchall()[0][0] == len(docs)
    for doc_id in (0, len(docs) - 1):
        ids = [r[0] for r in con.execute("SELECT token_id FROM tokens WHERE run_id = ? AND doc_id = ? "
                                         "ORDER BY position", [run_id, doc_id]).fetchall()]
        assert ids == tokenize(lm.tokenizer, docs[doc_id])
    n, L = con.execute("SELECT count(*), max(len(norms)) FROM token_norms WHERE run_id = ?", [run_id]).fetchall()[0]
    assert L == 3 and n == con.execute("SELECT count(*) FROM tokens").fetchall()[0][0]


def test_residual_norms_equal_hidden_states(built):
    cfg, lm, run_id = built
    con = duckdb.connect(cfg.db, read_only=True)
    ids = [r[0] for r in con.execute("SELECT token_id FROM tokens WHERE run_id = ? AND doc_id = 3 ORDER BY position",
                                     [run_id]).fetchall()][: cfg.context_len]
    norms = np.array([r[0] for r in con.execute("SELECT norms FROM token_norms WHERE run_id = ? AND doc_id = 3 "
                                                 "ORDER BY position", [run_id]).fetchall()][: len(ids)])
    with torch.inference_mode():
        hs = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    for layer in range(2):  # the last HF hidden state is already final-normed
        np.testing.assert_allclose(norms[:, layer], hs[layer + 1][0].norm(dim=-1).numpy(), rtol=1e-4)


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers("0-1,3", 4) == [0, 1, 3]
    assert parse_layers("2", 4) == [2]
    for bad in ("4", "-1", "3-1", "x", "1,,2", "0-9"):
        with pytest.raises(ExtractError):
            parse_layers(bad, 4)
