"""SAE features at scale, one JSON object:

1. Peak RSS of `extract()` with a wide SAE's features indexed in the same pass: fresh processes (`--rss-child`)
   extract --tokens tokens of smollm2-135m, layer --layer's neurons, with no SAE, a 4,608-latent and a 65,536-latent
   TopK SAE at resid_post.<layer> (random unit-norm decoder rows, k=32: memory does not depend on what the weights
   learned). `rss_added_mb_65536` is what the widest SAE adds; the stated bound is the dense per-batch codes
   (batch tokens × latents × 4 bytes) plus the reducer's state (per latent: top-K, reservoir, histogram).
2. The feature page's server-side gather on an index with >= 16,384 features over >= 1,048,576 tokens: a 16,384-
   latent TopK SAE trained on smollm2's resid_post.0 (train-sae, 131,072 tokens), indexed over 1,048,576 tokens of
   bench/pages.py's corpus (Python's docs and standard library) with layer 0's neurons (`--build-features`, about
   25 min on 2 cores when the index is missing). Timed as the server reads: a cursor on the shared read-only
   connection, for --units random features; target p50 <= 50 ms.

    .venv/bin/python bench/features_scale.py --json [--skip-rss] [--skip-gather] [--build-features]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"feature_gather_p50_ms": 50.0}
GATHER_TOKENS, GATHER_LATENTS, SAE_TRAIN_TOKENS = 1_048_576, 16_384, 131_072


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def random_sae(d: int, latents: int, site: str, folder: Path) -> Path:
    from core.saes.formats import save_saelens
    from core.saes.sae import SAE

    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(latents, d, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    return save_saelens(SAE(W_dec.T.clone(), torch.zeros(latents), W_dec, torch.zeros(d), activation="topk", k=32,
                            site=site), folder)


def rss_child(model: str, tokens: int, layer: int, sae: str) -> dict:
    from core.units.config import ExtractConfig
    from core.units.extract import extract

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        extract(ExtractConfig(model=model, db=str(Path(tmp) / "rss.duckdb"), corpus="demo", max_tokens=tokens,
                              layers=str(layer), sae=[sae] if sae else []))
        return {"seconds": round(time.perf_counter() - t, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def rss(model: str, tokens: int, layer: int) -> dict:
    from core.model.load import load_model
    from core.units.config import ExtractConfig

    d = load_model(model).parts.d_model
    batch = ExtractConfig(model=model, db="x").batch_tokens
    out: dict = {"rss_tokens": tokens, "rss_batch_tokens": batch}
    with tempfile.TemporaryDirectory() as tmp:
        for latents in (0, 4608, 65_536):
            sae = str(random_sae(d, latents, f"resid_post.{layer}", Path(tmp) / f"s{latents}")) if latents else ""
            p = subprocess.run([sys.executable, __file__, "--rss-child", str(tokens), "--model", model, "--layer",
                                str(layer), "--sae", sae], capture_output=True, text=True, check=True)
            got = json.loads(p.stdout)
            out[f"peak_rss_mb_{latents}"], out[f"rss_seconds_{latents}"] = got["peak_rss_mb"], got["seconds"]
            log(f"rss: {latents} latents: {got}")
    out["rss_added_mb_4608"] = round(out["peak_rss_mb_4608"] - out["peak_rss_mb_0"], 1)
    out["rss_added_mb_65536"] = round(out["peak_rss_mb_65536"] - out["peak_rss_mb_0"], 1)
    out["rss_dense_codes_mb_65536"] = round(batch * 65_536 * 4 / 2 ** 20, 1)
    return out


def build_features(db: Path, model: str) -> None:
    exe = Path(sys.executable).with_name("neuroboard")
    sys.path.insert(0, str(ROOT / "bench"))
    from pages import write_corpus

    corpus = ROOT / "data" / "bench-corpus.jsonl"
    if not corpus.exists():
        write_corpus(corpus)
    sae = db.parent / "bench-features-sae"
    if not (sae / "cfg.json").exists():
        t = time.perf_counter()
        subprocess.run([str(exe), "train-sae", "--model", model, "--site", "resid_post.0", "--out", str(sae),
                        "--corpus", str(corpus), "--tokens", str(SAE_TRAIN_TOKENS), "--latents",
                        str(GATHER_LATENTS), "--k", "32", "--batch", "4096", "--no-progress"], check=True, stdout=sys.stderr)
        log(f"trained the SAE in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    subprocess.run([str(exe), "extract", "--model", model, "--corpus", str(corpus), "--max-tokens",
                    str(GATHER_TOKENS), "--layers", "0", "--sae", str(sae), "--db", str(db), "--no-progress"],
                   check=True, stdout=sys.stderr)
    log(f"indexed in {time.perf_counter() - t:.0f} s")


def gather(db: Path, units: int, seed: int) -> dict:
    from core.index import queries
    from core.index.db import connect
    from dashboard.views.catalog import load_runs
    from dashboard.views.units import unit_view

    connect(db).close()  # a writing open brings an older schema up to date
    con = connect(db, read_only=True)
    runs = [r for r in queries.list_runs(con) if r.status == "complete"]
    best = max(((r, s) for r in runs for s in queries.run_saes(con, r.run_id)), key=lambda p: (p[1].d_sae, p[0].tokens),
               default=None)
    con.close()
    if best is None:
        sys.exit(f"bench/features_scale.py: error: {db} indexes no SAE (add --build-features)")
    run, sae = best
    rng = random.Random(seed)
    times, empty = [], 0
    for _ in range(units):
        f = rng.randrange(sae.d_sae)
        t = time.perf_counter()
        load_runs(db)
        v = unit_view(db, f"feature:{sae.path}", run.run_id, sae.sae_id, f, 10, 12)
        times.append((time.perf_counter() - t) * 1e3)
        empty += not v.top
    times.sort()
    return {"features_db": str(db), "features_db_mb": round(db.stat().st_size / 2 ** 20, 1),
            "features_tokens": run.tokens, "features_indexed": sae.d_sae, "feature_gather_n": units,
            "feature_gather_p50_ms": statistics.median(times), "feature_gather_p90_ms": times[int(0.9 * len(times))],
            "feature_gather_max_ms": times[-1], "features_without_examples": empty}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=16_384, help="tokens of each RSS run")
    ap.add_argument("--layer", type=int, default=15, help="the layer of the RSS runs")
    ap.add_argument("--db", default=str(ROOT / "data" / "bench-features.duckdb"))
    ap.add_argument("--build-features", action="store_true", help="build the gather index if it is missing")
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-gather", action="store_true")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sae", default="", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    if a.rss_child:
        print(json.dumps(rss_child(a.model, a.rss_child, a.layer, a.sae)))
        return
    result: dict = {"model": a.model, "targets": TARGETS}
    if not a.skip_rss:
        result |= rss(a.model, a.tokens, a.layer)
    if not a.skip_gather:
        db = Path(a.db)
        if not db.exists():
            if not a.build_features:
                sys.exit(f"bench/features_scale.py: error: no index at {db}; add --build-features (about 25 min)")
            build_features(db, a.model)
        result |= gather(db, a.units, a.seed)
        result["meets"] = {k: result[k] <= v for k, v in TARGETS.items()}
    print(json.dumps(result, separators=(",", ":")) if a.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
