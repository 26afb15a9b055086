"""Neuron page speed on a big index: server-side gather time and browser navigation-to-settled time.

    .venv/bin/python bench/pages.py --json [--db data/bench-1m.duckdb] [--build] [--units 200] [--pages 20]

--build makes the index first if it is missing: smollm2-135m, all layers, 1,048,576 tokens of a corpus written from
this Python's own documentation and standard-library sources (data/bench-corpus.jsonl; offline, about 40 min on
2 CPU cores).

Server side: for `--units` random (layer, unit) pairs, the time of everything the page reads from the index (the run
list, stats, histogram, top examples with their stored contexts and tokens, interval samples with tokens) the way
the server reads it (a cursor on the shared read-only connection), and, for comparison, opening the file for each
page; plus separately the logit-effect computation on the loaded model. Browser: `neuroboard
serve` on a free port, headless Chromium, one cold page (model load) and then `--pages` fresh pages of random units,
each timed from navigation to settled (dashboard.browser.wait_settled). One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from core.index import queries
from core.index.db import connect
from core.units.sources import NeuronSource
from dashboard.views.catalog import load_runs
from dashboard.views.units import unit_view

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"gather_p50_ms": 50.0, "browser_settle_p50_s": 2.0}
BUILD_TOKENS = 1_048_576


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_corpus(path: Path) -> None:
    """Python's reference docs (the demo corpus), then every stdlib .py file outside test/, one document each."""
    from core.data.corpus import demo_documents

    lib = Path(sysconfig.get_paths()["stdlib"])
    with path.open("w", encoding="utf-8") as f:
        for d in demo_documents():
            f.write(json.dumps({"text": d}) + "\n")
        for p in sorted(lib.rglob("*.py")):
            if "test" in p.parts or "site-packages" in p.parts:
                continue
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if text.strip():
                f.write(json.dumps({"text": text}) + "\n")


def build(db: Path) -> None:
    corpus = ROOT / "data" / "bench-corpus.jsonl"
    if not corpus.exists():
        write_corpus(corpus)
    exe = Path(sys.executable).with_name("neuroboard")
    subprocess.run([str(exe), "extract", "--model", "smollm2-135m", "--corpus", str(corpus), "--max-tokens",
                    str(BUILD_TOKENS), "--db", str(db)], check=True)


def pick_units(run: queries.RunInfo, n: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.choice(run.layers), rng.randrange(run.d_mlp)) for _ in range(n)]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def server_side(db: Path, run: queries.RunInfo, units: list[tuple[int, int]]) -> dict:
    src = NeuronSource()
    con = connect(db, read_only=True)
    t = time.perf_counter()
    queries.vocab(con, run.model_id)  # read once per model and cached by the page
    vocab_ms = (time.perf_counter() - t) * 1e3
    con.close()
    pooled, fresh, empty = [], [], 0
    for layer, unit in units:
        t = time.perf_counter()  # as the server reads: shared read-only connection (core.index.pool), a cursor each
        load_runs(db)
        v = unit_view(db, "neuron", run.run_id, layer, unit, 10, 12)
        pooled.append((time.perf_counter() - t) * 1e3)
        empty += not v.top
        t = time.perf_counter()  # a reader that opens the file for every page
        con = connect(db, read_only=True)
        try:
            queries.list_runs(con)
            src.gather(con, run.run_id, layer, unit, 10, 12)
        finally:
            con.close()
        fresh.append((time.perf_counter() - t) * 1e3)
    out = {"gather_p50_ms": statistics.median(pooled), "gather_p90_ms": pct(pooled, 0.9),
           "gather_max_ms": max(pooled), "gather_open_each_p50_ms": statistics.median(fresh),
           "gather_n": len(pooled), "units_without_examples": empty, "vocab_once_ms": vocab_ms}
    from core.model.load import load_model
    from core.units.logit_effects import direction_effects

    t = time.perf_counter()
    lm = load_model(run.model)
    out["model_load_s"] = time.perf_counter() - t
    eff = []
    for layer, unit in units[:50]:
        t = time.perf_counter()
        direction_effects(lm, src.direction(lm, layer, unit), k=10)
        eff.append((time.perf_counter() - t) * 1e3)
    out["logit_effects_p50_ms"] = statistics.median(eff)
    out["page_server_p50_ms"] = out["gather_p50_ms"] + out["logit_effects_p50_ms"]
    return out


def browser_side(db: Path, run: queries.RunInfo, units: list[tuple[int, int]]) -> dict:
    from dashboard.browser import launch, missing_browser, new_page, wait_settled

    why = missing_browser()
    if why:
        return {"browser_skipped": why}
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("neuroboard")
    proc = subprocess.Popen([str(exe), "serve", "--db", str(db), "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        out = {}
        with sync_playwright() as p:
            b = launch(p)

            def visit(layer: int, unit: int, ctx=None) -> float:
                """Navigation to settled, in a fresh context (empty HTTP cache: every script bundle downloads and
                parses again) or, with `ctx`, a new tab of a context that has loaded the app before."""
                page = new_page(b) if ctx is None else ctx.new_page()
                page.goto(f"{base}/neurons?run={run.run_id}&layer={layer}&unit={unit}", wait_until="commit")
                page.locator(".nb-tok").first.wait_for(timeout=180_000)  # the examples are there ...
                dt = wait_settled(page, 180_000)  # ... and the page has gone quiet since its last change
                errors = page.get_by_test_id("stException").all_inner_texts()
                if errors or page.locator(".nb-tok").count() == 0:
                    raise RuntimeError(f"layer {layer} unit {unit}: page not right: {errors[:1]}")
                page.close() if ctx is not None else page.context.close()
                return dt

            out["browser_cold_s"] = visit(*units[0])  # the server loads the model on the first page
            out["browser_second_s"] = visit(*units[0])  # the same unit again: cached
            times = [visit(*u) for u in units[1:]]
            warm_ctx = new_page(b).context  # a returning user: the browser has the app's scripts cached
            visit(*units[0], ctx=warm_ctx)
            warm = [visit(*u, ctx=warm_ctx) for u in units[1:]]
            b.close()
        out |= {"browser_settle_p50_s": statistics.median(times), "browser_settle_p90_s": pct(times, 0.9),
                "browser_settle_max_s": max(times), "browser_pages": len(times),
                "browser_settle_warm_cache_p50_s": statistics.median(warm),
                "browser_settle_warm_cache_p90_s": pct(warm, 0.9)}
        return out
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=str(ROOT / "data" / "bench-1m.duckdb"))
    ap.add_argument("--build", action="store_true", help="build the index first if it is missing")
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--json", action="store_true", help="one line of JSON")
    a = ap.parse_args()
    db = Path(a.db)
    if not db.exists():
        if not a.build:
            sys.exit(f"bench/pages.py: error: no index at {db}; add --build to make it (about 40 min)")
        build(db)
    connect(db).close()  # a writing open brings an index of an older schema up to date
    con = connect(db, read_only=True)
    runs = [r for r in queries.list_runs(con) if r.status == "complete"]
    con.close()
    if not runs:
        sys.exit(f"bench/pages.py: error: {db} has no complete run")
    run = max(runs, key=lambda r: r.tokens)
    result = {"db": str(db), "db_mb": db.stat().st_size / 2**20, "model": run.model, "run_id": run.run_id,
              "tokens": run.tokens, "layers": len(run.layers), "units": len(run.layers) * run.d_mlp,
              "targets": TARGETS}
    log(f"server side: {a.units} units of run {run.run_id} ({run.tokens:,} tokens)")
    result |= server_side(db, run, pick_units(run, a.units, a.seed))
    if not a.no_browser:
        log(f"browser: {a.pages} pages")
        result |= browser_side(db, run, pick_units(run, a.pages + 1, a.seed + 1))
    result["meets"] = {k: result.get(k, float("inf")) <= v for k, v in TARGETS.items()}
    print(json.dumps(result, separators=(",", ":")) if a.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
