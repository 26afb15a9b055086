"""Heads-page overview speed: the server-side time to read every head's role scores of a model from the index.

    .venv/bin/python bench/heads.py --json [--db data/demo.duckdb] [--build] [--repeats 200]

--build first runs `neuroboard heads` for the built-in models that have no scores in the index yet. Times, as the
server reads (a cursor on the shared read-only connection, core.index.pool): the list of scored models plus the
(L, H) arrays of every role for one model — everything the overview draws — and, for comparison, the same with the
file opened for every read. Target: p50 <= 50 ms. One JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from core.heads.config import HeadsConfig
from core.heads.score import score_heads
from core.index.db import connect
from core.index.heads import head_score_arrays, head_sets
from core.index.pool import reading

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 50.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=str(ROOT / "data" / "demo.duckdb"))
    ap.add_argument("--build", action="store_true")
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--ablation-tokens", type=int, default=128, help="for --build")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    db = Path(a.db)
    if a.build:
        con = connect(db)
        have = {s.model for s in head_sets(con)}
        con.close()
        for m in a.models.split(","):
            if m not in have:
                score_heads(HeadsConfig(model=m, db=str(db), ablation_tokens=a.ablation_tokens))
    connect(db).close()  # brings an older index up to date
    con = connect(db, read_only=True)
    sets = head_sets(con)
    con.close()
    if not sets:
        sys.exit(f"bench/heads.py: error: {db} has no head scores; add --build")
    out = {"db": str(db), "target_ms": TARGET_MS, "models": {}}
    for hs in sets:
        pooled, fresh = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            with reading(db) as cur:
                head_sets(cur)
                arrays = head_score_arrays(cur, hs.model_id)
            pooled.append((time.perf_counter() - t) * 1e3)
        for _ in range(min(20, a.repeats)):
            t = time.perf_counter()
            con = connect(db, read_only=True)
            head_sets(con)
            head_score_arrays(con, hs.model_id)
            con.close()
            fresh.append((time.perf_counter() - t) * 1e3)
        out["models"][hs.model] = {"layers": hs.n_layers, "heads": hs.n_heads, "roles": len(arrays),
                                   "overview_p50_ms": statistics.median(pooled),
                                   "overview_p90_ms": sorted(pooled)[int(0.9 * len(pooled))],
                                   "overview_open_each_p50_ms": statistics.median(fresh),
                                   "scored_in_s": hs.config.get("seconds")}
    out["meets"] = all(m["overview_p50_ms"] <= TARGET_MS for m in out["models"].values())
    print(json.dumps(out) if a.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
