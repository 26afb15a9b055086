"""`neuroboard` command line: extract, runs, top, serve. Query commands take --json.

Every known failure prints one line `neuroboard: error: ...` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import fields

from core.cli.heads import HeadsError, cmd_heads, heads_parser
from core.cli.lens import LensError, cmd_lens, lens_parser
from core.cli.progress import Bar
from core.cli.serve import ServeError
from core.data.corpus import CorpusError
from core.index import queries
from core.index.db import IndexError_, IndexLockedError, connect
from core.lens.tuned import TunedLensConfig, TunedLensError
from core.model.load import ModelLoadError
from core.units.extract import ExtractConfig, ExtractError, Progress, extract

DEMO_ABLATION_TOKENS = 128
_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})
USER_ERRORS = (ModelLoadError, CorpusError, ExtractError, IndexError_, queries.QueryError, FileNotFoundError,
               ServeError, LensError, HeadsError, TunedLensError)


def _extract_parser(sub) -> None:
    p = sub.add_parser("extract", help="run a corpus through a model once and index every MLP neuron")
    p.add_argument("--model", required=True, help="built-in name (smollm2-135m, gemma3-270m), .gguf, folder or hub id")
    p.add_argument("--corpus", default="demo", help="demo | file.txt/.jsonl/.csv/.parquet | HF dataset name")
    p.add_argument("--max-tokens", type=int, default=100_000)
    p.add_argument("--context-len", type=int, default=128)
    p.add_argument("--layers", default="all", help="all | 5 | 0-3,7")
    p.add_argument("--db", required=True, help="DuckDB index file (created if missing)")
    p.add_argument("--resume", action="store_true", help="continue the unfinished run with the same settings")
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--samples", type=int, default=8, help="interval samples per interval")
    p.add_argument("--ctx-examples", type=int, default=16, help="top examples whose context activations are stored")
    p.add_argument("--ctx-window", type=int, default=16, help="tokens each side in that stored context")
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--chunk-tokens", type=int, default=32_768, help="tokens per commit and checkpoint")
    p.add_argument("--include-special", action="store_true", help="count BOS/EOS tokens in unit statistics")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own Python code")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the finished run as JSON")
    p.add_argument("--no-progress", action="store_true")


def _train_lens_parser(sub) -> None:
    p = sub.add_parser("train-lens", help="train a tuned lens (an affine map per block) into the lens store")
    p.add_argument("--model", required=True, help="built-in name, .gguf, folder or hub id")
    p.add_argument("--corpus", default="demo", help="demo | file.txt/.jsonl/.csv/.parquet | HF dataset name")
    p.add_argument("--max-tokens", type=int, default=TunedLensConfig.max_tokens, help="training tokens")
    p.add_argument("--heldout-tokens", type=int, default=TunedLensConfig.heldout_tokens,
                   help="the corpus's first tokens, kept out of training to measure the lenses")
    p.add_argument("--context-len", type=int, default=TunedLensConfig.context_len)
    p.add_argument("--batch-tokens", type=int, default=TunedLensConfig.batch_tokens, help="tokens per step")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: one pass over the data)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=TunedLensConfig.optimizer)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 1e-3 adam, 1.0 sgd)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="folder to save into (default: the lens store of the model)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="neuroboard", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _extract_parser(sub)
    _train_lens_parser(sub)
    p = sub.add_parser("runs", help="list the runs of an index")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("top", help="a unit's top activating examples")
    p.add_argument("--db", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--unit", type=int, required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--window", type=int, default=8, help="context tokens each side")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("demo", help="build the demo index for both built-in models if missing, then serve it")
    p.add_argument("--db", default="data/demo.duckdb")
    p.add_argument("--max-tokens", type=int, default=100_000)
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--no-serve", action="store_true")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    lens_parser(sub)
    heads_parser(sub)
    p = sub.add_parser("serve", help="serve the dashboard")
    p.add_argument("--db", required=True, action="append", help="index file; repeat to offer several in the sidebar")
    p.add_argument("--model", action="append", default=[],
                   help="a model the live pages may load besides the built-ins and the indexed ones (repeatable)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    return ap


class _TokenBar(Bar):
    """Extraction progress in tokens, with tokens/s and ETA; called with each core.units.extract.Progress."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled, "extract", unit="tok", unit_scale=True)

    def __call__(self, p: Progress) -> None:
        self.update(p.tokens_done, p.tokens_target)


def cmd_extract(a) -> int:
    names = {f.name for f in fields(ExtractConfig)}
    cfg = ExtractConfig(**{k: v for k, v in vars(a).items() if k in names})
    bar = _TokenBar(not a.no_progress)
    try:
        run_id = extract(cfg, resume=a.resume, on_progress=bar)
    finally:
        bar.close()
    con = connect(a.db, read_only=True)
    try:
        run = queries.get_run(con, run_id)
    finally:
        con.close()
    if a.json:
        print(json.dumps(run.to_dict(), default=str))
    else:
        print(f"run {run.run_id}: {run.model} on {run.corpus}, {run.tokens} tokens, layers "
              f"{queries.layer_ranges(run.layers)}, {run.status} -> {a.db}")
    return 0


def cmd_train_lens(a) -> int:
    from core.lens.store import save_tuned_lens, store_dir
    from core.lens.tuned import train_tuned_lens
    from core.model.load import load_model

    names = {f.name for f in fields(TunedLensConfig)}
    cfg = TunedLensConfig(**{k: v for k, v in vars(a).items() if k in names})
    cfg.validate()  # before the model loads
    lm = load_model(cfg.model)
    bar = Bar(not a.no_progress, "train-lens", unit="step")
    try:
        lens, report = train_tuned_lens(lm, cfg, on_progress=lambda step, steps, kl: bar.update(step, steps,
                                                                                               kl=f"{kl:.4f}"))
    finally:
        bar.close()
    folder = save_tuned_lens(lens, report, cfg.out or store_dir(lm))
    if a.json:
        print(json.dumps({"path": str(folder), **report.to_dict()}))
        return 0
    print(f"tuned lens for {report.model}: {report.steps} steps, {report.tokens_trained} tokens, "
          f"{report.seconds:.1f} s -> {folder}")
    print(f"held-out KL(final || layer), nats, mean over {report.heldout_tokens} tokens")
    print(f"{'layer':>5} {'logit':>9} {'tuned':>9}")
    for layer, (lo, tu) in enumerate(zip(report.logit_kl, report.tuned_kl, strict=True)):
        print(f"{layer:>5} {lo:>9.4f} {tu:>9.4f}")
    k = report.n_layers - 1
    logit, tuned = sum(report.logit_kl[:k]) / k, sum(report.tuned_kl[:k]) / k
    print(f"{'mean':>5} {logit:>9.4f} {tuned:>9.4f}  (blocks 0..{k - 1})")
    return 0


def cmd_runs(a) -> int:
    con = connect(a.db, read_only=True)
    try:
        runs = queries.list_runs(con)
    finally:
        con.close()
    if a.json:
        print(json.dumps([r.to_dict() for r in runs], default=str))
        return 0
    print(f"{'run':>4} {'model':<16} {'status':<9} {'tokens':>9} {'layers':<8} corpus")
    for r in runs:
        print(f"{r.run_id:>4} {r.model:<16} {r.status:<9} {r.tokens:>9} {queries.layer_ranges(r.layers):<8} {r.corpus}")
    return 0


def cmd_top(a) -> int:
    con = connect(a.db, read_only=True)
    try:
        rows = queries.top_examples(con, a.run, a.layer, a.unit, k=a.k, window=a.window)
    finally:
        con.close()
    if a.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        ctx = (r["left"] + "[[" + r["token"] + "]]" + r["right"]).translate(_ESCAPES)
        print(f"{r['rank']:>3} {r['activation']:9.4f}  doc {r['doc_id']:>5} pos {r['position']:>5}  {ctx}")
    return 0


def cmd_demo(a) -> int:
    """Extract every built-in model that has no complete demo run yet (resuming an interrupted one)."""
    os.makedirs(os.path.dirname(os.path.abspath(a.db)), exist_ok=True)
    for model in [m.strip() for m in a.models.split(",") if m.strip()]:
        cfg = ExtractConfig(model=model, db=a.db, corpus="demo", max_tokens=a.max_tokens)
        done, unfinished = False, False
        if os.path.exists(a.db):
            con = connect(a.db)  # a writing open: brings an older index up to the current schema
            try:
                for r in queries.list_runs(con):
                    same = r.model == model and r.config == cfg.identity()
                    done |= same and r.status == "complete"
                    unfinished |= same and r.status == "running"
            finally:
                con.close()
        if done:
            print(f"demo: {model} already indexed in {a.db}", file=sys.stderr)
            continue
        print(f"demo: indexing {a.max_tokens} tokens of the demo corpus with {model}", file=sys.stderr)
        bar = _TokenBar(True)
        try:
            extract(cfg, resume=unfinished, on_progress=bar)
        finally:
            bar.close()
    _demo_heads(a)
    if a.no_serve:
        return 0
    return cmd_serve(a)


def _demo_heads(a) -> None:
    """Score the heads of every demo model that has no head scores in the index yet (a small ablation sample)."""
    from core.cli.heads import score_heads
    from core.index.heads import head_sets

    con = connect(a.db)
    try:
        have = {s.model for s in head_sets(con)}
    finally:
        con.close()
    for model in [m.strip() for m in a.models.split(",") if m.strip() and m.strip() not in have]:
        print(f"demo: scoring the attention heads of {model}", file=sys.stderr)
        score_heads(model, a.db, ablation_tokens=DEMO_ABLATION_TOKENS)


def cmd_serve(a) -> int:
    from core.cli.serve import serve

    dbs = a.db if isinstance(a.db, list) else [a.db]
    for db in dbs:
        if not os.path.exists(db):
            raise FileNotFoundError(f"index not found: {db} (build one with `neuroboard extract` or `make demo`)")
        try:  # the dashboard reads only: upgrade an older index's schema now (a brief writing open)
            connect(db, wait_s=1.0).close()
        except IndexLockedError:
            pass  # an extraction is writing it, and has upgraded it
    return serve(dbs, host=a.host, port=a.port, models=getattr(a, "model", None) or [])


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s")
    if not a.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return {"extract": cmd_extract, "train-lens": cmd_train_lens, "runs": cmd_runs, "top": cmd_top,
                "demo": cmd_demo, "serve": cmd_serve, "lens": cmd_lens, "heads": cmd_heads}[a.cmd](a)
    except USER_ERRORS as e:
        print(f"neuroboard: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuroboard: interrupted (an extraction can continue with --resume)", file=sys.stderr)
        return 130

