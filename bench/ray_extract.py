"""`extract --ray` against one process on the same corpus: both indexes' digests (equal, or the bench says which
table differs), wall time, tokens/s and the driver's peak RSS.

    .venv/bin/python bench/ray_extract.py [--model smollm2-135m] [--tokens 12000] [--chunk-tokens 2048]
                                          [--shard-chunks 2] [--threads 1] [--ray ADDRESS]

Both runs are fresh `neuroboard extract` processes with the same --threads (a Ray task uses them too: the float
kernels must match for a bit-equal index). Without --ray the driver starts a local cluster on this machine, whose
CPUs are shared with the driver: on 2 cores this measures correctness and overhead, not speed-up. One JSON object
goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def run(args: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS KB of this child, stderr)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "core.cli", "extract", *args], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    if p.returncode:
        sys.exit(f"extract failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=12000)
    ap.add_argument("--chunk-tokens", type=int, default=2048)
    ap.add_argument("--shard-chunks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ray", default="", help="a cluster address; default: a local cluster")
    a = ap.parse_args()
    from helpers.index_digest import run_digest

    from core.index.db import connect

    with tempfile.TemporaryDirectory() as tmp:
        common = ["--model", a.model, "--corpus", "demo", "--max-tokens", str(a.tokens), "--chunk-tokens",
                  str(a.chunk_tokens), "--threads", str(a.threads), "--no-progress"]
        one_s, one_rss, _ = run([*common, "--db", f"{tmp}/one.duckdb"])
        ray_s, ray_rss, said = run([*common, "--db", f"{tmp}/ray.duckdb", "--ray", a.ray, "--shard-chunks",
                                    str(a.shard_chunks)])
        digests = []
        for name in ("one", "ray"):
            con = connect(f"{tmp}/{name}.duckdb", read_only=True)
            try:
                digests.append(run_digest(con, 1))
            finally:
                con.close()
    differ = [t for t in digests[0] if digests[0][t] != digests[1][t]]
    line = next((s for s in said.splitlines() if s.startswith("ray: ")), "")
    print(json.dumps({"model": a.model, "tokens": a.tokens, "threads": a.threads, "ray_summary": line,
                      "identical_index": not differ, "tables_differing": differ,
                      "one_process_s": round(one_s, 1), "ray_s": round(ray_s, 1),
                      "one_process_tok_s": round(a.tokens / one_s), "ray_tok_s": round(a.tokens / ray_s),
                      "ratio_ray_vs_one": round(ray_s / one_s, 2),
                      "peak_rss_gb": {"one_process": round(one_rss / 2**20, 2),
                                      "largest_child_so_far": round(max(one_rss, ray_rss) / 2**20, 2)}}))


if __name__ == "__main__":
    main()
