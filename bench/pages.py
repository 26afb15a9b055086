"""Page speed: the server-side gather of a neuron page, and every page (Home, Neurons, Trajectories, Heads, SAE
features where the index has an SAE, Patching on its default pair, and Circuits where it stores attribution graphs) timed in Chromium from navigation to settled: the first page after `serve` starts, fresh contexts and returning tabs.

    .venv/bin/python bench/pages.py --json [--db data/demo.duckdb] [--build] [--units 200] [--pages 6]

Server side: for `--units` random (layer, unit) pairs of the index's largest run, the time of everything the neuron
page reads from the index, the way the server reads it (a cursor on the shared read-only connection), and opening
the file for each page for comparison; plus the logit effects on the loaded model.

Browser: for each page, a new `neuroboard serve` on a free port and headless Chromium: the first visit after the
server starts (serve start to healthy, plus navigation to settled: the models load then), `--pages` visits in fresh
contexts (an empty HTTP cache: every script bundle downloads and parses again) and `--pages` in new tabs of a
context that has loaded the app before (a returning user), each from navigation to settled
(dashboard.browser.wait_settled). Neuron pages are random units; trajectories the default prompt (cached after the
first visit); heads random heads; feature pages random features of the index's first SAE; circuits pages the stored graphs in turn,
each with its most influential feature clicked (its node panel). Targets: returning p50 <= 2 s, fresh p50 <= 3 s, first after serve <= 5 s.
What the light first paint bought is measured in the same run: the returning-tab visits again with `charts=plotly`
(every chart drawn by Plotly on first paint, as pages did before), `<page>_bought_by_light_charts_s` the difference.

--db defaults to the demo index (`make index`). --build makes a 1,048,576-token index of smollm2-135m, all layers, of
Python's own documentation and standard-library sources at --db (data/bench-corpus.jsonl; offline, about 40 min on
2 CPU cores) when it is missing. One JSON object goes to stdout.
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
TARGETS = {"gather_p50_ms": 50.0}
PAGES = ("home", "neurons", "trajectories", "heads", "features", "patching", "circuits")
PAGE_TARGETS = {"returning_p50_s": 2.0, "fresh_p50_s": 3.0, "first_after_serve_s": 5.0}
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
    sae = first_sae(db)
    if sae:  # the feature page's gather on this index (bench/features_scale.py: on >= 16k features, >= 1M tokens)
        rng, ft = random.Random(3), []
        for _ in range(len(units)):
            t = time.perf_counter()
            load_runs(db)
            unit_view(db, f"feature:{sae.path}", sae.run_id, sae.sae_id, rng.randrange(sae.d_sae), 10, 12)
            ft.append((time.perf_counter() - t) * 1e3)
        out["feature_gather_p50_ms"], out["feature_gather_p90_ms"] = statistics.median(ft), pct(ft, 0.9)
        out["feature_gather_sae_latents"] = sae.d_sae
    return out


def page_urls(db: Path, run: queries.RunInfo, units: list[tuple[int, int]]) -> dict[str, list[str]]:
    """Every page of the dashboard, each as a list of URLs to visit (random units for the neuron page; the
    trajectories page on its default prompt, whose lens results the server caches after the first visit)."""
    from core.index.heads import head_sets

    con = connect(db, read_only=True)
    try:
        sets = head_sets(con)
    finally:
        con.close()
    out = {"home": ["/"] * len(units), "neurons": [f"/neurons?run={run.run_id}&layer={lay}&unit={u}" for lay, u in units],
           "trajectories": [f"/trajectories?model={run.model}"] * len(units)}
    if sets:
        rng = random.Random(1)
        out["heads"] = [f"/heads?model={sets[0].model}&layer={rng.randrange(sets[0].n_layers)}"
                        f"&head={rng.randrange(sets[0].n_heads)}" for _ in units]
    sae = first_sae(db)
    if sae:
        rng = random.Random(2)
        out["features"] = [f"/features?run={sae.run_id}&sae={sae.sae_id}&feature={rng.randrange(sae.d_sae)}"
                           for _ in units]
    out["patching"] = ["/patching"] * len(units)  # the default pair, whose grids the demo stores
    graphs = circuit_urls(db)
    if graphs:
        out["circuits"] = [graphs[i % len(graphs)] for i in range(len(units))]
    return out


def circuit_urls(db: Path) -> list[str]:
    """/circuits?graph=G&node=N of each stored graph, N its most influential feature (the node panel opens)."""
    from core.circuits.explore import FEATURE
    from dashboard.views.circuits import graph_doc, graphs

    out = []
    for g in graphs(db):
        doc = graph_doc(db, g.graph_id)
        feats = sorted((x for x in doc.ids if doc.kind(x) == FEATURE), key=lambda x: doc.nodes[x]["influence"])
        out.append(f"/circuits?graph={g.graph_id}" + (f"&node={feats[0]}" if feats else ""))
    return out


def first_sae(db: Path):
    """The first SAE indexed in a complete run (queries.SaeInfo), or None."""
    con = connect(db, read_only=True)
    try:
        for r in queries.list_runs(con):
            if r.status == "complete":
                saes = queries.run_saes(con, r.run_id)
                if saes:
                    return saes[0]
    finally:
        con.close()
    return None


def serve(db: Path):
    """`neuroboard serve` on a free port; (process, base URL, seconds until healthy)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("neuroboard")
    t = time.perf_counter()
    proc = subprocess.Popen([str(exe), "serve", "--db", str(db), "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                break
        except OSError:
            time.sleep(0.1)
    return proc, base, time.perf_counter() - t


SHOWN = {"home": ".nb-table", "neurons": ".nb-tok",
         "trajectories": '[data-testid="stMainBlockContainer"] [data-testid="stTextInput"]',
         "heads": ".nb-grid", "features": ".nb-tok", "patching": ".nb-grid",
         "circuits": ".nb-chart svg"}
"""What each page shows from the index alone (before any model is loaded)."""
COMPLETE = {"home": ".nb-table", "neurons": '.nb-table:has-text("promoted")', "trajectories": ".nb-grid",
            "heads": ".nb-chart svg", "features": '.nb-table:has-text("promoted")',
            "patching": ".nb-grid", "circuits": '.nb-table:has-text("promoted")'}
"""What each page shows once its model is loaded (its live parts)."""
PLOTLY_PAGES = ("neurons", "trajectories", "heads", "features", "circuits")
"""Pages whose charts are light inline SVG/HTML unless the URL asks for Plotly (`charts=plotly`): bench both."""


def visit(browser, base: str, url: str, ctx=None, marks: dict[str, str] | None = None) -> float | dict:
    """Navigation to settled (dashboard.browser.wait_settled), in a fresh context (empty HTTP cache) or, with
    `ctx`, a new tab of a context that has loaded the app before (a returning user); an exception on the page is an
    error. With `marks` ({name: CSS selector}): also the seconds until each is visible, as a dict."""
    from dashboard.browser import new_page, wait_settled

    page = new_page(browser) if ctx is None else ctx.new_page()
    t = time.perf_counter()
    page.goto(base + url, wait_until="commit")
    seen = {}
    for name, sel in (marks or {}).items():
        page.locator(sel).first.wait_for(timeout=300_000)
        seen[name] = time.perf_counter() - t
    dt = wait_settled(page, 300_000)
    errors = page.get_by_test_id("stException").all_inner_texts()
    page.close() if ctx is not None else page.context.close()
    if errors:
        raise RuntimeError(f"{url}: {errors[0][:200]}")
    return seen | {"settled": dt} if marks else dt


def browser_side(db: Path, run: queries.RunInfo, units: list[tuple[int, int]], only=PAGES) -> dict:
    """Per page: the first visit after `serve` starts (`first_after_serve`: until the page shows its index data;
    `first_complete_after_serve`: until its live parts, which need the model, are there too), then fresh contexts
    and returning tabs with the server warm; p50 and p90 of each."""
    from dashboard.browser import launch, missing_browser, new_page

    why = missing_browser()
    if why:
        return {"browser_skipped": why}
    from playwright.sync_api import sync_playwright

    urls = page_urls(db, run, units)
    out: dict = {}
    with sync_playwright() as p:
        b = launch(p)
        for name, group in ((n, g) for n, g in urls.items() if n in only):
            proc, base, healthy = serve(db)  # a new server per page: its first visit is a first page after start
            try:
                first = visit(b, base, group[0], marks={"shown": SHOWN[name], "complete": COMPLETE[name]})
                out[f"{name}_first_after_serve_s"] = round(healthy + first["shown"], 2)
                out[f"{name}_first_complete_after_serve_s"] = round(healthy + max(first.values()), 2)
                out[f"{name}_serve_healthy_s"] = round(healthy, 2)
                fresh = [visit(b, base, u) for u in group]
                ctx = new_page(b).context
                visit(b, base, group[0], ctx=ctx)  # the app's scripts are now in this context's cache
                ret = [visit(b, base, u, ctx=ctx) for u in group]
                heavy = []  # the same visits with every chart drawn by Plotly on first paint (the old pattern)
                if name in PLOTLY_PAGES:
                    sep = "&" if "?" in group[0] else "?"
                    visit(b, base, group[0] + sep + "charts=plotly", ctx=ctx)
                    heavy = [visit(b, base, u + sep + "charts=plotly", ctx=ctx) for u in group]
                ctx.close()
            finally:
                import os
                import signal

                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            out[f"{name}_fresh_p50_s"], out[f"{name}_fresh_p90_s"] = statistics.median(fresh), pct(fresh, 0.9)
            out[f"{name}_returning_p50_s"], out[f"{name}_returning_p90_s"] = statistics.median(ret), pct(ret, 0.9)
            out[f"{name}_visits"] = len(fresh)
            if heavy:  # what drawing charts on demand bought, measured in this run
                out[f"{name}_plotly_first_paint_returning_p50_s"] = statistics.median(heavy)
                out[f"{name}_bought_by_light_charts_s"] = statistics.median(heavy) - statistics.median(ret)
            log(f"{name}: first {out[f'{name}_first_after_serve_s']} s, fresh p50 {statistics.median(fresh):.2f} s, "
                f"returning p50 {statistics.median(ret):.2f} s")
        b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=str(ROOT / "data" / "demo.duckdb"))
    ap.add_argument("--build", action="store_true", help="build the index first if it is missing")
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--pages", type=int, default=6, help="visits per page kind and context kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--only", default=",".join(PAGES), help=f"the pages to time in the browser (default: all of "
                    f"{','.join(PAGES)})")
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
        log(f"browser: {a.pages} visits of each page")
        only = [p.strip() for p in a.only.split(",") if p.strip()]
        if unknown := set(only) - set(PAGES):
            sys.exit(f"bench/pages.py: error: --only {','.join(sorted(unknown))}: not one of {','.join(PAGES)}")
        result |= browser_side(db, run, pick_units(run, a.pages, a.seed + 1), only)
    result["meets"] = {k: result.get(k, float("inf")) <= v for k, v in TARGETS.items()}
    for page in PAGES:
        for k, v in PAGE_TARGETS.items():
            if f"{page}_{k}" in result:
                result["meets"][f"{page}_{k}"] = result[f"{page}_{k}"] <= v
    result["page_targets"] = PAGE_TARGETS
    print(json.dumps(result, separators=(",", ":")) if a.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
