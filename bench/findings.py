"""Findings on smollm2-135m, model loaded: the time to snapshot a view (what "Save finding" and `findings add` do),
to recheck it, and to export 20 findings as one self-contained HTML file (time and size).

    .venv/bin/python bench/findings.py --json [--n 20]

The 20 findings cycle through lens, steering and patching views of different prompts (no index needed). One JSON
object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = ["The capital of France is", "I watched the film last night and", "The Eiffel Tower is in the city of",
           "def add(a, b): return", "In 1905 the physicist published"]
PAIRS = [("The Eiffel Tower is in Paris. It is in", "The Colosseum is in Rome. It is in", " Paris", " Rome")]


def urls(n: int) -> list[str]:
    out = []
    for i in range(n):
        p = PROMPTS[i % len(PROMPTS)]
        kind = ("trajectories", "steering", "patching")[i % 3]
        if kind == "trajectories":
            q = {"model": "smollm2-135m", "view": "lens", "prompt": p, "pos": "-1"}
        elif kind == "steering":
            q = {"model": "smollm2-135m", "direction": f"neuron:15:{i}", "layer": "15", "alpha": "0.5", "prompt": p,
                 "tokens": "16"}
        else:
            c, x, a, f = PAIRS[0]
            q = {"model": "smollm2-135m", "clean": c, "corrupted": x, "answer": a, "foil": f}
        out.append(f"http://127.0.0.1:8501/{kind}?{urlencode(q)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from core.findings import store
    from core.findings.views import make_finding, recheck
    from core.model.load import load_model
    from dashboard.export import export

    lm = load_model("smollm2-135m")
    out: dict = {"model": "smollm2-135m", "findings": a.n}
    times: dict[str, list[float]] = {"trajectories": [], "steering": [], "patching": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.duckdb"
        for i, url in enumerate(urls(a.n)):
            t = time.perf_counter()
            f = make_finding(url, f"finding {i}", note="bench", load=lambda name: lm)
            times[f.page].append(time.perf_counter() - t)
            store.add(path, f)
        for k, v in times.items():
            out[f"snapshot_{k}_s"] = round(statistics.median(v), 3) if v else None
        found = store.list_findings(path)
        t = time.perf_counter()
        worst = max(recheck(f, load=lambda name: lm)["max_abs_diff"] for f in found[:3])
        out["recheck_3_s"], out["recheck_max_abs_diff"] = round(time.perf_counter() - t, 2), worst
        t = time.perf_counter()
        report = export(found, Path(tmp) / "report.html")
        out["export_s"] = round(time.perf_counter() - t, 3)
        out["export_bytes"] = report.stat().st_size
        out["export_mb"] = round(report.stat().st_size / 2**20, 2)
        from plotly.offline import get_plotlyjs

        out["plotly_js_mb"] = round(len(get_plotlyjs().encode()) / 2**20, 2)
    print(json.dumps(out, separators=(",", ":")) if a.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
