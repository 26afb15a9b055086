"""Killed-and-resumed extractions compared with an uninterrupted one (tests/core/units/test_resume.py, the fault
matrix's kill cases)."""

import sys

import duckdb

TABLES = {
    "run_docs": "doc_id", "tokens": "doc_id, position", "token_norms": "doc_id, position",
    "unit_stats": "layer, unit", "top_examples": "layer, unit, rank", "intervals": "layer, unit, interval",
    "interval_samples": "layer, unit, interval, rank", "documents": "doc_id",
}


def cli(model_dir, corpus, db, *extra):
    return [sys.executable, "-m", "core.cli", "extract", "--model", str(model_dir), "--corpus", corpus, "--db", str(db),
            "--context-len", "32", "--chunk-tokens", "400", "--batch-tokens", "128", "--top-k", "8", "--samples", "3",
            "--threads", "1", "--no-progress", *extra]


def corpus_and_sae(folder) -> tuple[str, str]:
    """A 40-document corpus and a small TopK SAE on resid_post.1 of the tiny Llama (SAELens layout) in `folder`:
    (corpus path, SAE folder)."""
    import torch

    from core.saes.formats import save_saelens
    from core.saes.sae import SAE
    from helpers.tiny import write_corpus

    corpus = write_corpus(folder / "c.txt", n_docs=40, seed=3)
    g = torch.Generator().manual_seed(5)
    sae = SAE(torch.randn(64, 80, generator=g) * 0.2, torch.randn(80, generator=g) * 0.1,
              torch.randn(80, 64, generator=g), torch.zeros(64), activation="topk", k=6, site="resid_post.1")
    return corpus, str(save_saelens(sae, folder / "sae"))


def snapshot(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        # contexts hold NaN (outside the window), which == never matches: compare them as text
        cols = {"top_examples": "* EXCLUDE (run_id, context), context::TEXT"}
        out = {t: con.execute(f"SELECT {cols.get(t, '* EXCLUDE (run_id)')} FROM {t} ORDER BY {k}").fetchall()
               if t != "documents" else con.execute(f"SELECT * FROM {t} ORDER BY {k}").fetchall()
               for t, k in TABLES.items()}
        out["runs"] = con.execute("SELECT status, tokens_done, docs_done, layers FROM runs").fetchall()
        out["run_saes"] = con.execute("SELECT sae_id, d_sae, umap::TEXT FROM run_saes ORDER BY sae_id").fetchall()
        return out
    finally:
        con.close()
