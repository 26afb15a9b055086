"""Extraction speed and memory: reducers on every layer's MLP neurons vs a bare forward vs an nnsight capture.

    .venv/bin/python bench/extract.py --json [--tokens 16384] [--skip-rss] [--also-gemma]

All timed paths run in one process over the same batches (core.data.corpus: demo documents -> chunks -> batches) with
2 torch threads. Peak RSS of a small and a large `extract()` run is read in fresh subprocesses
(`--rss-child N`). One JSON object goes to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from core.data.corpus import Corpus, batches, iter_chunks
from core.model.load import LoadedModel, load_model
from core.model.run import pad_batch
from core.model.tokens import tokenize
from core.units.config import ExtractConfig
from core.units.extract import extract
from core.units.forward import forward_chunk
from core.units.reduce import LayerReducer, ReduceConfig
from core.units.run_state import Progress

log = logging.getLogger("bench.extract")
THREADS, CONTEXT_LEN, BATCH_TOKENS = 2, 128, 4096
TARGETS = {"ratio_vs_bare": 1.10, "rss_growth": 0.10}


def make_chunks(lm: LoadedModel, tokens: int, chunk_tokens: int) -> list:
    return list(iter_chunks(Corpus("demo").documents(), lm.tokenizer, max_tokens=tokens, context_len=CONTEXT_LEN,
                            chunk_tokens=chunk_tokens))


def padded(batch) -> torch.Tensor:
    """Right-padded (B, T) ids, as core.units.extract packs them (core.model.run.pad_batch)."""
    return pad_batch([w.ids for w in batch])[0]


def each_batch(forward):
    """A chunk runner: `forward(ids)` on every batch of the chunk, under inference mode."""
    @torch.inference_mode()
    def run(chunk) -> None:
        for b in batches(chunk.windows, BATCH_TOKENS):
            forward(padded(b))
    return run


def nnsight_forward(lm: LoadedModel):
    """(forward(ids) saving every layer's down_proj input with nnsight, version), or (None, why not)."""
    try:
        import nnsight
        from nnsight import NNsight
    except ImportError as e:
        return None, f"nnsight is not installed ({e})"
    base = lm.parts.base
    names = {m: n for n, m in base.named_modules()}
    traced = NNsight(base)  # the base model, like the extraction: no unembedding

    def envoy(path: str):
        e = traced
        for part in path.split("."):
            e = e[int(part)] if part.isdigit() else getattr(e, part)
        return e

    downs = [envoy(names[m]) for m in lm.parts.mlp_down]

    def forward(ids: torch.Tensor) -> None:
        with traced.trace(ids):
            acts = nnsight.save([d.input for d in downs])  # (B, T, d_mlp) per layer, saved only
        assert len(acts) == len(downs)

    return forward, nnsight.__version__


def compare(lm: LoadedModel, tokens: int, chunk_tokens: int) -> dict:
    """bare / extraction / nnsight on the same chunks and batches, interleaved chunk by chunk so that load from
    other processes hits all three alike; wall and process CPU seconds per chunk."""
    chunks = make_chunks(lm, tokens, chunk_tokens)
    n_tok = sum(c.n_tokens for c in chunks)
    n_batches = sum(len(batches(c.windows, BATCH_TOKENS)) for c in chunks)
    first = padded(batches(chunks[0].windows, BATCH_TOKENS)[0])
    log.info("%s: %d tokens, %d chunks, %d batches", lm.name, n_tok, len(chunks), n_batches)
    reducers = {layer: LayerReducer(lm.parts.d_mlp, layer, ReduceConfig()) for layer in range(lm.n_layers)}

    def run_extract(chunk) -> None:
        forward_chunk(lm, chunk, reducers, batch_tokens=BATCH_TOKENS)
        for r in reducers.values():  # extract() flushes pending reservoir candidates at each checkpoint
            r.flush()

    nn_forward, version = nnsight_forward(lm)
    runners = {"bare": each_batch(lm.model), "extract": run_extract}  # bare: full causal LM with unembedding
    if nn_forward:
        runners["nnsight"] = each_batch(nn_forward)
    with torch.inference_mode():  # warm-up; nnsight's one-time tracing set-up stays out of the timing
        lm.model(first)
        if nn_forward:
            nn_forward(first[:1, :16])
    wall: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    load0 = os.getloadavg()[0]
    for i, c in enumerate(chunks):
        for k, run in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run(c)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
        log.info("chunk %d/%d: %s", i + 1, len(chunks), {k: round(v[-1], 1) for k, v in wall.items()})
    reducers.clear()
    ext, bare, nns = wall["extract"], wall["bare"], wall.get("nnsight")

    def ratio(a, b):
        return round(sum(a) / sum(b), 3) if a and b and sum(b) > 0 else None

    out = {"model": lm.name, "tokens": n_tok, "batches": n_batches, "chunks": len(chunks),
           "chunk_tokens": chunk_tokens, "batch_tokens": BATCH_TOKENS, "context_len": CONTEXT_LEN,
           "layers": lm.n_layers, "d_mlp": lm.parts.d_mlp,
           "bare_s": round(sum(bare), 3), "extract_s": round(sum(ext), 3),
           "nnsight_s": round(sum(nns), 3) if nns else None,
           "ratio_vs_bare": ratio(ext, bare), "ratio_vs_bare_steady": ratio(ext[1:], bare[1:]),
           "ratio_vs_bare_late": ratio(ext[len(ext) // 2:], bare[len(bare) // 2:]),
           "ratio_vs_nnsight": ratio(ext, nns), "ratio_vs_nnsight_steady": ratio(ext[1:], nns[1:] if nns else None),
           "ratio_vs_bare_cpu": ratio(cpu["extract"], cpu["bare"]),
           "ratio_vs_bare_steady_cpu": ratio(cpu["extract"][1:], cpu["bare"][1:]),
           "tokens_per_s": round(n_tok / sum(ext), 1), "bare_tokens_per_s": round(n_tok / sum(bare), 1),
           "per_chunk_wall_s": {k: [round(x, 2) for x in v] for k, v in wall.items()},
           "per_chunk_cpu_s": {k: [round(x, 2) for x in v] for k, v in cpu.items()},
           "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
           "bare_note": "lm.model(ids): full causal LM incl. unembedding; extraction runs the base model "
                        "(no unembedding) and stops after the last hooked layer",
           "steady_note": "steady: chunks 2..; late: the second half of the chunks. Reservoir refills per token fall "
                          "like 1/tokens seen, so the reducers' share shrinks as a run goes on"}
    if nn_forward:
        out["nnsight_version"] = version
        out["nnsight_note"] = ("nnsight wraps the base model (no unembedding) and only saves every layer's "
                               "down_proj input; it does no reductions and no residual norms")
    else:
        out["nnsight_reason"] = version
    return out


def end_to_end(lm: LoadedModel, tokens: int, tmp: Path) -> dict:
    cfg = ExtractConfig(model=lm.name, db=str(tmp / "e2e.duckdb"), max_tokens=tokens, threads=THREADS)
    done: list[Progress] = []
    t0 = time.perf_counter()
    extract(cfg, lm=lm, on_progress=done.append)
    dt = time.perf_counter() - t0
    log.info("end to end %.1fs", dt)
    return {"end_to_end_s": round(dt, 3), "end_to_end_tokens_per_s": round(done[-1].tokens_done / dt, 1),
            "end_to_end_note": f"core.units.extract.extract() into a fresh DuckDB, default config (chunk_tokens="
                               f"{cfg.chunk_tokens}): vocab, DB writes, checkpoints and finalize included"}


def write_corpus(lm: LoadedModel, tokens: int, path: Path) -> None:
    """Demo documents (inner blank lines dropped, so each stays one document) repeated to >= `tokens` tokens."""
    docs = ["\n".join(line for line in d.splitlines() if line.strip()) for d in Corpus("demo").documents()]
    have = sum(len(tokenize(lm.tokenizer, d)) for d in docs)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(math.ceil(tokens / have) + 1):
            f.writelines(d + "\n\n" for d in docs)


def rss_child(model: str, corpus: str, tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ExtractConfig(model=model, db=str(Path(tmp) / "rss.duckdb"), corpus=corpus, max_tokens=tokens,
                            threads=THREADS)
        done: list[Progress] = []
        t0 = time.perf_counter()
        extract(cfg, on_progress=done.append)
        dt = time.perf_counter() - t0
    return {"tokens": done[-1].tokens_done, "seconds": round(dt, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def rss(lm: LoadedModel, small: int, large: int, tmp: Path) -> dict:
    corpus = tmp / "corpus.txt"
    write_corpus(lm, max(small, large), corpus)
    res = {}
    for label, n in (("small", small), ("large", large)):
        log.info("peak RSS, %s: extract() over %d tokens in a subprocess", label, n)
        p = subprocess.run([sys.executable, __file__, "--rss-child", str(n), "--model", lm.name, "--corpus",
                            str(corpus)], stdout=subprocess.PIPE, text=True, check=True)
        res[label] = json.loads(p.stdout)
        log.info("%s: %s", label, res[label])
    s, g = res["small"]["peak_rss_mb"], res["large"]["peak_rss_mb"]
    return {"peak_rss_mb_small": s, "peak_rss_mb_large": g, "rss_growth": round((g - s) / s, 4),
            "rss_tokens_small": res["small"]["tokens"], "rss_tokens_large": res["large"]["tokens"],
            "rss_seconds": {"small": res["small"]["seconds"], "large": res["large"]["seconds"]},
            "rss_note": "ru_maxrss of a fresh process running extract() (default config) over the demo documents "
                        "repeated into a .txt corpus"}


def git_rev() -> str | None:
    p = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parents[1],
                       capture_output=True, text=True)
    return p.stdout.strip() or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the result as one compact JSON line")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=49152, help="tokens of the timed comparison")
    ap.add_argument("--chunk-tokens", type=int, default=4096,
                    help="chunk size of the timed comparison (several chunks, so a steady state exists)")
    ap.add_argument("--small-tokens", type=int, default=20_000)
    ap.add_argument("--large-tokens", type=int, default=200_000)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--also-gemma", action="store_true", help="also time gemma3-270m (no RSS)")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(THREADS)
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # stray prints must not spoil the JSON
        if args.rss_child:
            result = rss_child(args.model, args.corpus, args.rss_child)
        else:
            lm = load_model(args.model)
            result = {"git": git_rev(), "torch": torch.__version__, "threads": THREADS, "targets": TARGETS,
                      **compare(lm, args.tokens, args.chunk_tokens)}
            with tempfile.TemporaryDirectory() as tmp:
                result.update(end_to_end(lm, args.tokens, Path(tmp)))
                if args.skip_rss:
                    result["rss_note"] = "skipped (--skip-rss)"
                else:
                    result.update(rss(lm, args.small_tokens, args.large_tokens, Path(tmp)))
            if args.also_gemma and args.model != "gemma3-270m":
                del lm
                result["gemma3-270m"] = compare(load_model("gemma3-270m"), args.tokens, args.chunk_tokens)
    print(json.dumps(result, separators=(",", ":")) if args.json else json.dumps(result, indent=2), file=stdout)


if __name__ == "__main__":
    main()
