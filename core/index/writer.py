"""Writes into the index: columnar (Arrow) inserts inside explicit transactions. SQL is parameterised."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from core.faults import point
from core.index.db import transaction

__all__ = ["transaction"]  # re-exported: writers call writer.transaction

if TYPE_CHECKING:  # the writer takes results; reading an index must not import torch
    from core.units.reduce import LayerResult


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    """INSERT the columns of an Arrow table (table names are ours, never user input)."""
    con.register("_nb_batch", data)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(data.column_names)}) SELECT * FROM _nb_batch")
    finally:
        con.unregister("_nb_batch")


def unfinished_runs(con, model: str) -> list[tuple[int, int, dict]]:
    """(run_id, corpus_id, config) of the model's runs still marked running, newest first."""
    rows = con.execute("SELECT r.run_id, r.corpus_id, r.config FROM runs r JOIN models m USING (model_id) "
                       "WHERE r.status = 'running' AND m.name = ? ORDER BY r.run_id DESC", [model]).fetchall()
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


def doc_offsets(con, run_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(tok0 (n,) int64, doc_id (n,) int32) of the run's documents in token order."""
    offs = con.execute("SELECT tok0, doc_id FROM run_docs WHERE run_id = ? ORDER BY tok0", [run_id]).fetchnumpy()
    return offs["tok0"].astype(np.int64), offs["doc_id"].astype(np.int32)


def complete_run(con, run_id: int, tokens_done: int, docs_done: int) -> None:
    con.execute("UPDATE runs SET status = 'complete', tokens_done = ?, docs_done = ?, results_tokens = ?, "
                "updated_at = current_timestamp WHERE run_id = ?", [tokens_done, docs_done, tokens_done, run_id])


def publish_results(con, run_id: int, tokens: int) -> None:
    """The per-unit results just written cover the run's first `tokens` tokens (the run goes on)."""
    con.execute("UPDATE runs SET results_tokens = ?, updated_at = current_timestamp WHERE run_id = ?", [tokens, run_id])


def ensure_model(con, info: dict, vocab: list[str]) -> int:
    row = con.execute("SELECT model_id FROM models WHERE name = ? AND source = ?",
                      [info["name"], info["source"]]).fetchall()[:1]
    if row:
        return row[0][0]
    model_id = con.execute("SELECT coalesce(max(model_id), 0) + 1 FROM models").fetchall()[0][0]
    con.execute("INSERT INTO models (model_id, name, source, arch, n_layers, d_model, d_mlp, vocab_size) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [model_id, info["name"], info["source"], info["arch"],
                                                    info["n_layers"], info["d_model"], info["d_mlp"],
                                                    info["vocab_size"]])
    insert_arrow(con, "vocab", pa.table({"model_id": pa.array(np.full(len(vocab), model_id, np.int32)),
                                         "token_id": pa.array(np.arange(len(vocab), dtype=np.int32)),
                                         "display": pa.array(vocab, pa.string())}))
    return model_id


def ensure_corpus(con, spec: str) -> int:
    row = con.execute("SELECT corpus_id FROM corpora WHERE spec = ?", [spec]).fetchall()[:1]
    if row:
        return row[0][0]
    cid = con.execute("SELECT coalesce(max(corpus_id), 0) + 1 FROM corpora").fetchall()[0][0]
    con.execute("INSERT INTO corpora (corpus_id, spec) VALUES (?, ?)", [cid, spec])
    return cid


def create_run(con, model_id: int, corpus_id: int, config: dict, layers: list[int], target: int) -> int:
    run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]
    con.execute("INSERT INTO runs (run_id, model_id, corpus_id, config, layers, status, tokens_target) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?)", [run_id, model_id, corpus_id, json.dumps(config),
                                                         layers, target])
    return run_id


def add_run_sae(con, run_id: int, sae_id: int, row: dict) -> None:
    """One SAE of a run (migration 005): its features are the units of group layer = -sae_id."""
    con.execute("INSERT INTO run_saes (run_id, sae_id, name, path, site, out_site, d_in, d_sae, activation, k, "
                "format, quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, sae_id, row["name"], row["path"], row["site"], row["out_site"], row["d_in"], row["d_sae"],
                 row["activation"], row["k"], row["format"],
                 json.dumps(row["quality"]) if row.get("quality") else None])


def set_sae_umap(con, run_id: int, sae_id: int, xy) -> None:
    """The feature map's 2-D coordinates, x0, y0, x1, y1, ... (computed once per SAE)."""
    con.execute("UPDATE run_saes SET umap = ? WHERE run_id = ? AND sae_id = ?",
                [[float(v) for v in xy.reshape(-1)], run_id, sae_id])


def truncate_run(con, run_id: int, from_doc: int, drop_results: bool = True) -> None:
    """Remove a run's per-token rows from document `from_doc` on (rows a killed chunk left behind) and, with
    `drop_results`, its per-unit results (before new ones are written)."""
    for table in ("run_docs", "tokens", "token_norms"):
        con.execute(f"DELETE FROM {table} WHERE run_id = ? AND doc_id >= ?", [run_id, from_doc])
    if drop_results:
        for table in ("unit_stats", "top_examples", "intervals", "interval_samples"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])


def write_chunk(con, run_id: int, corpus_id: int, docs: list[tuple[int, str, str]], run_docs: dict,
                tokens: dict, norms: np.ndarray, progress: tuple[int, int]) -> None:
    """One transaction: new corpus documents, the chunk's tokens and norms, and the run's progress."""
    with transaction(con):
        have = con.execute("SELECT coalesce(max(doc_id), -1) FROM documents WHERE corpus_id = ?",
                           [corpus_id]).fetchall()[0][0]
        new = [d for d in docs if d[0] > have]
        if new:
            insert_arrow(con, "documents", pa.table({
                "corpus_id": pa.array([corpus_id] * len(new), pa.int32()),
                "doc_id": pa.array([d[0] for d in new], pa.int32()),
                "text": pa.array([d[1] for d in new], pa.string()),
                "sha": pa.array([d[2] for d in new], pa.string())}))
        n = len(run_docs["doc_id"])
        insert_arrow(con, "run_docs", pa.table({"run_id": pa.array(np.full(n, run_id, np.int32)),
                                                **{k: pa.array(v) for k, v in run_docs.items()}}))
        m = len(tokens["doc_id"])
        rid = pa.array(np.full(m, run_id, np.int32))
        insert_arrow(con, "tokens", pa.table({"run_id": rid, **{k: pa.array(v) for k, v in tokens.items()}}))
        L = norms.shape[1]
        flat = pa.array(norms.astype(np.float32).reshape(-1))
        insert_arrow(con, "token_norms", pa.table({
            "run_id": rid, "doc_id": pa.array(tokens["doc_id"]), "position": pa.array(tokens["position"]),
            "norms": pa.FixedSizeListArray.from_arrays(flat, L).cast(pa.list_(pa.float32()))}))
        con.execute("UPDATE runs SET tokens_done = ?, docs_done = ?, updated_at = current_timestamp "
                    "WHERE run_id = ?", [progress[0], progress[1], run_id])
        point("write")  # the fault matrix: killed with the chunk written, not committed


def _contexts(res: LayerResult, uu: np.ndarray, rr: np.ndarray) -> pa.Array:
    """list<float> per top example: the stored context for ranks < Kc, null beyond."""
    if res.top_ctx is None or res.top_ctx.shape[1] == 0:
        return pa.nulls(uu.size, pa.list_(pa.float32()))
    Kc, W2 = res.top_ctx.shape[1:]
    has = rr < Kc
    vals = res.top_ctx[uu[has], rr[has]].astype(np.float32).reshape(-1)  # (m * W2,)
    offsets = np.zeros(uu.size + 1, np.int32)
    offsets[1:] = np.cumsum(np.where(has, W2, 0))
    mask = pa.array(~has)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(vals, pa.float32()), mask=mask)


def write_layer(con, run_id: int, res: LayerResult, doc_of, hist_bins: int) -> None:
    """Per-unit results of one layer. `doc_of(tok) -> (doc_id, position)` maps global token indices."""
    d, L = res.count.shape[0], res.layer
    units = np.arange(d, dtype=np.int32)
    layer = np.full(d, L, np.int32)
    run = np.full(d, run_id, np.int32)
    n = max(res.n_tokens, 1)
    hist = pa.FixedSizeListArray.from_arrays(pa.array(res.hist.astype(np.int32).reshape(-1)), 2 * hist_bins)
    insert_arrow(con, "unit_stats", pa.table({
        "run_id": run, "layer": layer, "unit": units, "n_tokens": np.full(d, res.n_tokens, np.int64),
        "count_active": res.count.astype(np.int64), "density": res.count / n, "mean": res.mean,
        "max": res.max.astype(np.float32), "min": res.min.astype(np.float32), "hist_exp": res.exp.astype(np.int32),
        "hist": hist.cast(pa.list_(pa.int32()))}))
    valid = res.top_tok >= 0  # (d, K)
    uu, rr = np.nonzero(valid)
    doc, pos = doc_of(res.top_tok[valid])
    insert_arrow(con, "top_examples", pa.table({
        "run_id": np.full(uu.size, run_id, np.int32), "layer": np.full(uu.size, L, np.int32),
        "unit": uu.astype(np.int32), "rank": rr.astype(np.int32), "doc_id": doc, "position": pos,
        "activation": res.top_val[valid].astype(np.float32), "context": _contexts(res, uu, rr)}))
    iv = res.intervals
    ui, ii = np.meshgrid(units, np.arange(10, dtype=np.int32), indexing="ij")
    live = res.max > 0
    insert_arrow(con, "intervals", pa.table({
        "run_id": np.full(int(live.sum()) * 10, run_id, np.int32), "layer": np.full(int(live.sum()) * 10, L, np.int32),
        "unit": ui[live].reshape(-1), "interval": ii[live].reshape(-1), "lo": iv.lo[live].reshape(-1),
        "hi": iv.hi[live].reshape(-1), "frac_est": iv.frac_est[live].reshape(-1),
        "exact": iv.exact[live].reshape(-1)}))
    order = np.lexsort((iv.rank, iv.interval, iv.unit))
    doc, pos = doc_of(iv.tok[order])
    m = order.size
    insert_arrow(con, "interval_samples", pa.table({
        "run_id": np.full(m, run_id, np.int32), "layer": np.full(m, L, np.int32),
        "unit": iv.unit[order].astype(np.int32), "interval": iv.interval[order].astype(np.int32),
        "rank": iv.rank[order].astype(np.int32), "doc_id": doc, "position": pos,
        "activation": iv.val[order].astype(np.float32)}))
