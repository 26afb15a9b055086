"""Autointerp with the built-in explainer and judge (SmolLM2-135M-Instruct) on 2 cores: units explained and scored
per minute, and the mean detection and fuzzing balanced accuracy of the explanations against their controls (each
unit scored with another unit's explanation).

    .venv/bin/python bench/autointerp.py --json [--db INDEX --run R] [--units 12] [--layer 15]

Without --db it builds a small smollm2 index first (layer 15's neurons over 16,384 demo tokens) in a temporary
folder; the units are the layer's most selective ones (highest dominance). One JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="")
    ap.add_argument("--run", type=int, default=1)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--units", type=int, default=12)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from core.autointerp.run import ExplainConfig, explain
    from core.index import queries
    from core.index.db import connect
    from core.model.load import load_model
    from core.units.config import ExtractConfig
    from core.units.extract import extract

    tmp = tempfile.TemporaryDirectory()
    out: dict = {"explainer": "builtin (SmolLM2-135M-Instruct)"}
    lm = load_model("smollm2-135m")
    db = a.db
    if not db:
        db = str(Path(tmp.name) / "bench.duckdb")
        t = time.perf_counter()
        extract(ExtractConfig(model="smollm2-135m", db=db, corpus="demo", max_tokens=16384, layers=str(a.layer)),
                lm=lm)
        out["index_build_s"] = round(time.perf_counter() - t, 1)
    con = connect(db, read_only=True)
    units = sorted(queries.layer_units(con, a.run, a.layer), key=lambda u: -(u["dominance"] or 0))[: a.units]
    con.close()
    spec = ",".join(f"{a.layer}:{u['unit']}" for u in units)
    t = time.perf_counter()
    res = explain(ExplainConfig(db=db, run=a.run, units=spec, score=False, redo=True), load=lambda n: lm)
    explain_s = time.perf_counter() - t
    t = time.perf_counter()
    res = explain(ExplainConfig(db=db, run=a.run, units=spec), load=lambda n: lm)
    score_s = time.perf_counter() - t
    ok = [r for r in res if r["status"] == "ok"]
    out |= {"units": len(res), "explained_ok": len(ok), "unparsed": sum(r["status"] == "unparsed" for r in res),
            "explain_s_per_unit": round(explain_s / len(res), 2), "score_s_per_unit": round(score_s / max(1, len(ok)), 2),
            "units_per_minute_explained_and_scored": round(60 * len(res) / (explain_s + score_s), 2)}

    def mean(k):
        v = [r[k] for r in ok if r[k] is not None]
        return round(statistics.mean(v), 3) if v else None
    for k in ("detection_bacc", "control_detection_bacc", "fuzzing_bacc", "control_fuzzing_bacc", "detection_auc",
              "control_detection_auc", "fuzzing_auc", "control_fuzzing_auc"):
        out[f"mean_{k}"] = mean(k)
    out["examples"] = [{k: r[k] for k in ("unit", "explanation", "detection_auc", "control_detection_auc",
                                          "fuzzing_auc", "control_fuzzing_auc")} for r in ok[:6]]
    tmp.cleanup()
    print(json.dumps(out, separators=(",", ":")) if a.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
