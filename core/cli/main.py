"""`neuroboard` command line: each command's flags come from its config dataclass (core.cli.args); the commands
call core/ and print. Query commands take --json.

Every core.errors.UserError prints one line `neuroboard: error: ...` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass

from core.cli.args import add_config, config_from, field_docs
from core.cli.autointerp import COMMANDS as AUTOINTERP_COMMANDS
from core.cli.autointerp import PARSERS as AUTOINTERP_PARSERS
from core.cli.circuits import COMMANDS as CIRCUIT_COMMANDS
from core.cli.circuits import PARSERS as CIRCUIT_PARSERS
from core.cli.compare import COMMANDS as COMPARE_COMMANDS
from core.cli.compare import PARSERS as COMPARE_PARSERS
from core.cli.findings import COMMANDS as FINDINGS_COMMANDS
from core.cli.findings import add_parsers as add_findings_parsers
from core.cli.interventions import COMMANDS as INTERVENTION_COMMANDS
from core.cli.interventions import PARSERS as INTERVENTION_PARSERS
from core.cli.progress import Bar, Stages, emit, run_and_print, sae_steps
from core.cli.serve import ServeConfig, cmd_serve
from core.cli.transcoders import COMMANDS as TRANSCODER_COMMANDS
from core.cli.transcoders import PARSERS as TRANSCODER_PARSERS
from core.demo import DemoConfig
from core.errors import UserError
from core.heads.config import HeadsConfig
from core.lens.query import LensQuery
from core.lens.tuned import TunedLensConfig
from core.saes.query import FeaturesQuery, SaeEvalConfig
from core.saes.train import TrainSAEConfig
from core.units.config import ExtractConfig

_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


@dataclass
class TopQuery:
    db: str
    """DuckDB index file."""
    run: int
    """Run id (see `neuroboard runs`)."""
    layer: int
    """Layer (0-based block)."""
    unit: int
    """Unit (neuron) within the layer."""
    k: int = 10
    """Examples to print."""
    window: int = 8
    """Context tokens each side."""


@dataclass
class RunsQuery:
    db: str
    """DuckDB index file."""


class _Parser(argparse.ArgumentParser):
    """Bad arguments (a missing flag, `--alpha abc`) as one line, like every other error: the usage is --help's."""

    def error(self, message: str):
        print(f"neuroboard: error: {self.prog.removeprefix('neuroboard ')}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="neuroboard", description="Index and browse the neurons of language models.")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def command(name: str, cls, help: str, *, json_help: str | None = None, progress: bool = False, **kw):
        p = sub.add_parser(name, help=help)
        add_config(p, cls, **kw)
        if json_help:
            p.add_argument("--json", action="store_true", help=json_help)
        if progress:
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
        return p

    p = command("extract", ExtractConfig, "run a corpus through a model once and index every MLP neuron",
                json_help="print the finished run as JSON", progress=True, skip=("ray",))
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help=field_docs(ExtractConfig)["ray"])
    p.add_argument("--resume", action="store_true", help="continue the unfinished run with the same settings")
    command("train-lens", TunedLensConfig, "train a tuned lens (an affine map per block) into the lens store",
            json_help="print the report as one JSON object", progress=True)
    command("runs", RunsQuery, "list the runs of an index", json_help="print the runs as JSON")
    command("top", TopQuery, "a unit's top activating examples", json_help="print the examples as JSON")
    command("lens", LensQuery, "what the model predicts after each block, for one prompt (logit/tuned lens)",
            json_help="print the trajectory as JSON")
    command("heads", HeadsConfig, "score every attention head (roles, OV copying, ablation) into the index",
            json_help="print one JSON object per head", progress=True)
    command("demo", DemoConfig, "build the demo index for the built-in models if missing, then serve it",
            skip=("serve",)).add_argument("--no-serve", action="store_true", help="build the index only")
    command("serve", ServeConfig, "serve the dashboard")
    command("train-sae", TrainSAEConfig, "train a TopK SAE or transcoder, or a semi-NMF, on a model's activations",
            json_help="print the report (quality on held-out tokens) as one JSON object", progress=True)
    command("sae-eval", SaeEvalConfig, "an SAE's quality on a corpus: FVU, L0, dead latents, CE recovered, KL",
            json_help="print the numbers as one JSON object")
    command("features", FeaturesQuery, "an SAE's features on each token of a text",
            json_help="print one JSON object per token")
    for name, cls, help_, json_help, progress in (INTERVENTION_PARSERS + COMPARE_PARSERS + AUTOINTERP_PARSERS
                                                  + TRANSCODER_PARSERS + CIRCUIT_PARSERS):
        command(name, cls, help_, json_help=json_help, progress=progress)
    add_findings_parsers(sub)
    return ap


def cmd_extract(a) -> int:
    from core.units.extract import extract

    cfg = config_from(a, ExtractConfig)
    if cfg.ray is not None:  # say where the shards ran (and how many an earlier attempt had finished)
        logging.getLogger("core.units.shards").setLevel(logging.INFO)
    return run_and_print(a, lambda bar: _run_info(cfg.db, extract(cfg, resume=a.resume, on_progress=_tokens(bar))),
                         lambda r: print(f"run {r['run_id']}: {r['model']} on {r['corpus']}, {r['tokens']} tokens, "
                                         f"layers {_layer_ranges(r['layers'])}, {r['status']} -> {cfg.db}"),
                         "extract", unit="tok", unit_scale=True)


def _tokens(bar):
    """Extraction progress (core.units.extract.Progress) on a token bar: tokens/s and ETA."""
    return lambda p: bar(p.tokens_done, p.tokens_target)


def _run_info(db: str, run_id: int) -> dict:
    from core.index import queries
    from core.index.db import connect

    con = connect(db, read_only=True)
    try:
        return queries.get_run(con, run_id).to_dict()
    finally:
        con.close()


def _layer_ranges(layers: list[int]) -> str:
    from core.index import queries

    return queries.layer_ranges(layers)


def cmd_train_lens(a) -> int:
    from core.lens.store import save_tuned_lens, store_dir
    from core.lens.tuned import train_tuned_lens
    from core.model.load import load_model

    cfg = config_from(a, TunedLensConfig)
    cfg.validate()  # before the model loads
    lm = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)

    def train(bar) -> dict:
        lens, report = train_tuned_lens(lm, cfg, on_progress=lambda step, steps, kl: bar(step, steps, kl=f"{kl:.4f}"))
        return {"path": str(save_tuned_lens(lens, report, cfg.out or store_dir(lm))), **report.to_dict()}
    return run_and_print(a, train, _print_lens_report, "train-lens", unit="step")


def _print_lens_report(r: dict) -> None:
    print(f"tuned lens for {r['model']}: {r['steps']} steps, {r['tokens_trained']} tokens, "
          f"{r['seconds']:.1f} s -> {r['path']}")
    print(f"held-out KL(final || layer), nats, mean over {r['heldout_tokens']} tokens")
    print(f"{'layer':>5} {'logit':>9} {'tuned':>9}")
    for layer, (lo, tu) in enumerate(zip(r["logit_kl"], r["tuned_kl"], strict=True)):
        print(f"{layer:>5} {lo:>9.4f} {tu:>9.4f}")
    k = r["n_layers"] - 1
    logit, tuned = sum(r["logit_kl"][:k]) / k, sum(r["tuned_kl"][:k]) / k
    print(f"{'mean':>5} {logit:>9.4f} {tuned:>9.4f}  (blocks 0..{k - 1})")


def cmd_runs(a) -> int:
    from core.index import queries
    from core.index.db import connect

    con = connect(a.db, read_only=True)
    try:
        runs = [r.to_dict() for r in queries.list_runs(con)]
    finally:
        con.close()
    return emit(a, runs, _print_runs)


def _print_runs(runs: list[dict]) -> None:
    print(f"{'run':>4} {'model':<16} {'status':<9} {'tokens':>9} {'layers':<8} corpus")
    for r in runs:
        print(f"{r['run_id']:>4} {r['model']:<16} {r['status']:<9} {r['tokens']:>9} {_layer_ranges(r['layers']):<8} "
              f"{r['corpus']}")


def cmd_top(a) -> int:
    from core.index import queries
    from core.index.db import connect

    q = config_from(a, TopQuery)
    con = connect(q.db, read_only=True)
    try:
        rows = queries.top_examples(con, q.run, q.layer, q.unit, k=q.k, window=q.window)
    finally:
        con.close()
    return emit(a, rows, _print_top)


def _print_top(rows: list[dict]) -> None:
    for r in rows:
        ctx = (r["left"] + "[[" + r["token"] + "]]" + r["right"]).translate(_ESCAPES)
        print(f"{r['rank']:>3} {r['activation']:9.4f}  doc {r['doc_id']:>5} pos {r['position']:>5}  {ctx}")


def cmd_lens(a) -> int:
    from core.lens.query import lens_json
    from core.model.load import load_model

    q = config_from(a, LensQuery)
    lm = load_model(q.model, trust_remote_code=q.trust_remote_code)
    return emit(a, lens_json(lm, q), lambda out: _print_lens(out, q.lens, lm.name))


def _print_lens(out: dict, lens: str, model: str) -> None:
    print(f"{lens} lens, {model}, position {out['position']} ({out['token']!r}), target {out['target']!r}")
    print(f"{'layer':>5}  {'top token':<18} {'p(top)':>7}  {'p(target)':>9} {'rank':>6}")
    for r in out["layers"]:
        print(f"{r['layer']:>5}  {r['top_token']!r:<18} {r['top_prob']:7.3f}  {r['target_prob']:9.4f} "
              f"{r['target_rank']:>6}")


def cmd_heads(a) -> int:
    from core.heads.score import score_heads

    cfg = config_from(a, HeadsConfig)
    return run_and_print(a, lambda bars: score_heads(cfg, on_progress=bars), lambda out: _print_heads(out, cfg),
                         f"{cfg.model}: head ", stages=True, as_json=lambda out: out[0])  # --json: the rows


def _print_heads(out: tuple[list[dict], dict], cfg: HeadsConfig) -> None:
    rows, config = out
    L, H = rows[-1]["layer"] + 1, rows[-1]["head"] + 1
    print(f"{cfg.model}: {L} layers x {H} heads scored into {cfg.db} ({config['seconds']} s)")
    for role in [k for k in rows[0] if k not in ("layer", "head")]:
        best = max(rows, key=lambda r: r[role] if role != "entropy" else -r[role])
        print(f"  {role:<16} strongest: layer {best['layer']:>2} head {best['head']:>2}  {best[role]:.3f}")


def cmd_demo(a) -> int:
    """Serve the dashboard at once (unless --no-serve), then run the demo's jobs (index each model that has no
    complete demo run, resuming an interrupted one; score the heads of those without scores) while it serves: Home
    shows their progress and the pages fill in. Then keep serving until Ctrl-C."""
    from core.cli import serve as dashboard
    from core.demo import build, plan

    cfg = config_from(a, DemoConfig, serve=not a.no_serve)
    proc = None
    if cfg.serve:
        plan(cfg)  # creates the index (or upgrades its schema) before the server opens it
        proc = dashboard.start(cfg.db, host=cfg.host, port=cfg.port, models=cfg.models,
                               findings=os.path.join(os.path.dirname(os.path.abspath(cfg.db)), "findings.duckdb"))
        print(f"demo: the dashboard is at http://{cfg.host}:{cfg.port} and fills in as the jobs below finish",
              file=sys.stderr)
    bars: list = []  # each job's bar, closed when the jobs end

    def keep(bar):
        bars.append(bar)
        return bar
    try:
        failures = build(cfg, lambda _: _tokens(keep(Bar(True, "extract", unit="tok", unit_scale=True))),
                         lambda h: keep(Stages(True, f"{h.model}: head ")), say=lambda s: print(s, file=sys.stderr),
                         on_train=lambda t: sae_steps(keep(Bar(True, f"train {getattr(t, 'site', 'transcoders')}",
                                                                unit="tok", unit_scale=True))))
    except BaseException:
        if proc is not None:
            proc.terminate()
        raise
    finally:
        for bar in bars:
            bar.close()
    for f in failures:
        print(f"neuroboard: error: {f}", file=sys.stderr)
    if proc is None:
        return 2 if failures else 0
    print(f"demo: done; serving http://{cfg.host}:{cfg.port} (Ctrl-C stops)", file=sys.stderr)
    return dashboard.wait(proc)


def cmd_train_sae(a) -> int:
    from core.saes.train import train_sae

    cfg = config_from(a, TrainSAEConfig)
    return run_and_print(a, lambda bar: train_sae(cfg, on_step=sae_steps(bar)), _print_sae_report,
                         f"{cfg.method} {cfg.site}", unit="it" if cfg.method == "snmf" else "tok",
                         unit_scale=cfg.method != "snmf")


def _print_sae_report(report: dict) -> None:
    q = report["quality"]
    shape = (f"{report['latents']} latents, k={report['k']}" if report["method"] == "topk" else
             f"semi-NMF, {report['latents']} factors of {report['neurons_per_factor']} units")
    print(f"{shape}, {report['tokens']} tokens at "
          f"{report['tokens_per_s']:.0f} tok/s -> {report['out']}\n"
          f"held-out ({q['tokens']} tokens): FVU {q['fvu']:.4f}, L0 {q['l0']:.1f}, dead {100 * q['dead_frac']:.1f}%, "
          f"CE recovered {q['ce_recovered']:.3f}, KL {q['kl']:.4f}")


def cmd_sae_eval(a) -> int:
    from core.saes.query import sae_eval

    return emit(a, sae_eval(config_from(a, SaeEvalConfig)), lambda out: print(" ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items())))


def cmd_features(a) -> int:
    from core.saes.query import features

    return emit(a, features(config_from(a, FeaturesQuery)), _print_features)


def _print_features(rows: list[dict]) -> None:
    for r in rows:
        top = ", ".join(f"{f['feature']}:{f['activation']:.3g}" for f in r["features"][:8])
        print(f"{r['position']:4d} {r['token'].translate(_ESCAPES)!r:>16} {top}")


COMMANDS = {"extract": cmd_extract, "train-lens": cmd_train_lens, "runs": cmd_runs, "top": cmd_top,
            "demo": cmd_demo, "serve": cmd_serve, "lens": cmd_lens, "heads": cmd_heads, "train-sae": cmd_train_sae,
            "sae-eval": cmd_sae_eval, "features": cmd_features}
COMMANDS |= (INTERVENTION_COMMANDS | COMPARE_COMMANDS | FINDINGS_COMMANDS | AUTOINTERP_COMMANDS
             | TRANSCODER_COMMANDS | CIRCUIT_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    try:
        a = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or bad arguments already reported in one line
        return int(e.code or 0)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s")
    if not a.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return COMMANDS[a.cmd](a)
    except UserError as e:
        print(f"neuroboard: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuroboard: interrupted (an extraction can continue with --resume)", file=sys.stderr)
        return 130
