"""Head scores in the index: written once per model by `neuroboard heads`, read by the heads page.

Writes replace a model's previous scores in one transaction (an interrupted write leaves the old ones). Reads are
named, parameterised queries returning plain data; the overview of every head and role is one query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from core.index.writer import insert_arrow, transaction


@dataclass
class HeadSet:
    model_id: int
    model: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    config: dict
    created_at: str


def write_head_scores(con, model_id: int, n_kv_heads: int, scores: dict[str, np.ndarray], config: dict) -> None:
    """Replace the model's head scores with `scores` ({role: (L, H) array}) in one transaction."""
    L, H = next(iter(scores.values())).shape
    layer, head = np.meshgrid(np.arange(L, dtype=np.int32), np.arange(H, dtype=np.int32), indexing="ij")
    table = pa.concat_tables([pa.table({
        "model_id": pa.array(np.full(L * H, model_id, np.int32)), "layer": pa.array(layer.ravel()),
        "head": pa.array(head.ravel()), "role": pa.array([role] * (L * H), pa.string()),
        "value": pa.array(np.asarray(v, np.float64).ravel())}) for role, v in scores.items()])
    with transaction(con):
        con.execute("DELETE FROM head_scores WHERE model_id = ?", [model_id])
        con.execute("DELETE FROM head_sets WHERE model_id = ?", [model_id])
        con.execute("INSERT INTO head_sets (model_id, n_layers, n_heads, n_kv_heads, config) VALUES (?, ?, ?, ?, ?)",
                    [model_id, L, H, n_kv_heads, json.dumps(config)])
        insert_arrow(con, "head_scores", table)


def head_sets(con) -> list[HeadSet]:
    rows = con.execute("SELECT s.model_id, m.name, s.n_layers, s.n_heads, s.n_kv_heads, s.config, "
                       "s.created_at::TEXT FROM head_sets s JOIN models m USING (model_id) ORDER BY m.name").fetchall()
    return [HeadSet(*r[:5], config=json.loads(r[5]), created_at=r[6]) for r in rows]


def head_score_arrays(con, model_id: int) -> dict[str, np.ndarray]:
    """{role: (L, H) array} of one model, in one query."""
    got = con.execute("SELECT role, layer, head, value FROM head_scores WHERE model_id = ? ORDER BY role, layer, head",
                      [model_id]).fetchnumpy()
    out = {}
    for role in dict.fromkeys(got["role"].tolist()):
        m = got["role"] == role
        arr = np.full((int(got["layer"][m].max()) + 1, int(got["head"][m].max()) + 1), np.nan)
        arr[got["layer"][m], got["head"][m]] = got["value"][m]
        out[str(role)] = arr
    return out


def head_rows(con, model_id: int) -> list[dict]:
    """One dict per head: layer, head and one field per role (what `neuroboard heads --json` prints)."""
    arrays = head_score_arrays(con, model_id)
    if not arrays:
        return []
    L, H = next(iter(arrays.values())).shape
    return [{"layer": layer, "head": head} | {r: float(a[layer, head]) for r, a in arrays.items()}
            for layer in range(L) for head in range(H)]
