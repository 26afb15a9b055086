"""What `make demo` builds: an index of the demo corpus for each built-in model, a small TopK SAE for the first model
(trained on one middle layer's residual stream, then its features indexed), then the models' head scores, a steering
sweep, the patching page's default grids and explained units, as a list of jobs recorded in the index (Home shows
their live progress while the dashboard is already serving). Each job is skipped when its result is already there;
an interrupted extraction resumes. The first model's run publishes a preview of its results early, so its neuron
pages open within a minute of the start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class DemoConfig:
    db: str = "data/demo.duckdb"
    """The demo index (created if missing)."""
    max_tokens: int = 65_536
    """Demo-corpus tokens indexed per model."""
    models: list[str] = field(default_factory=lambda: ["smollm2-135m", "gemma3-270m"])
    """Models to index, in order (repeat the flag, or separate names by commas)."""
    preview_tokens: int = 16_384
    """The first model's run publishes its results after this many tokens, so its pages open early (0: off)."""
    ablation_tokens: int = 128
    """Corpus tokens for each head's ablation effect (a small sample keeps the demo quick; 0: no ablation)."""
    sae_site: str = "resid_post.15"
    """Site of the first model's demo SAE ('' : no SAE)."""
    sae_tokens: int = 200_000
    """Training tokens of the demo SAE (the demo corpus's training windows, read again as needed)."""
    sae_latents: int = 4608
    """Width of the demo SAE."""
    sae_k: int = 32
    """Active latents per token of the demo SAE."""
    sae_batch: int = 1024
    """Tokens per step of the demo SAE (a short run needs more, smaller steps)."""
    sae_lr: float | None = 3e-3
    """Learning rate of the demo SAE (None: train-sae's 2e-4/√(latents/2^14), 3.8e-4 at 4,608 latents). 3e-3 because
    smollm2's residual stream (norm ~170, one dimension holding 98% of the variance) moves too slowly at the default
    for a 200k-token run: on the demo's own activation cache, held-out dead share 78% -> 13% and FVU 0.010 -> 0.0024
    (1x, 4x, 8x and 16x the default tried; 16x: dead 17%)."""
    sweep: str = "diffmeans:sentiment"
    """Direction of the first model's demo steering sweep ('' : no sweep), made at its middle block and swept over
    every third block at α -0.5..0.5 on 16 held-out prompts, 8 tokens each."""
    patch: bool = True
    """Store each model's grids of the patching page's default prompt pair (its first visit reads them)."""
    explain_units: int = 24
    """Units the demo explains with the built-in model, so search works at once: two thirds the demo SAE's
    features, the rest the SAE layer's neurons (explain_picks; 0: none)."""
    explain_scored: int = 24
    """How many of them are also scored (detection, fuzzing, control), so the pages show what the built-in model's
    explanations are worth."""
    circuits: bool = True
    """Train a transcoder set for the first model, index its features and store attribution graphs of a few prompts
    (core.circuits.demo), after every other job."""
    transcoder_tokens: int = 131_072
    """Training tokens of each layer's transcoder (the demo corpus's training windows, read again as needed)."""
    transcoder_latents: int = 2048
    """Width of each layer's transcoder."""
    transcoder_k: int = 16
    """Active latents per token of each transcoder."""
    transcoder_batch: int = 512
    """Tokens per step of the transcoders (a short run needs more, smaller steps)."""
    transcoder_lr: float | None = 3e-3
    """Learning rate of the transcoders (None: train-transcoders' default, 5.7e-4 at 2,048 latents). On layers 0, 14
    and 29 of smollm2 after 65,536 tokens, held-out FVU 0.35 / 0.64 / 0.80 at 3e-3 and batch 512, against 0.48 /
    0.73 / 0.91 at batch 1,024 and about 1.0 at the defaults."""
    serve: bool = True
    """Serve the dashboard while the index is built (it fills in as jobs finish)."""
    port: int = 8501
    """TCP port of the dashboard."""
    host: str = "127.0.0.1"
    """Address the dashboard listens on (127.0.0.1: this machine only)."""

    def __post_init__(self) -> None:
        self.models = [m.strip() for item in self.models for m in item.split(",") if m.strip()]


@dataclass
class Job:
    name: str
    """What Home shows, e.g. 'index smollm2-135m'."""
    kind: str
    """extract | heads | train-sae | sweep | explain | patch | train-transcoders | graphs"""
    config: object
    """ExtractConfig, HeadsConfig, TrainSAEConfig, SweepConfig, DemoExplain, store_patch's arguments (a dict),
    TrainTranscodersConfig or DemoGraphs."""
    resume: bool = False
    job_id: int = 0


def _same_run(run, ecfg) -> bool:
    """A demo run of this model over the same tokens (settings that change no result, like the preview, aside)."""
    want = ecfg.identity()
    return run.model == ecfg.model and all(run.config.get(k) == want.get(k)
                                           for k in ("corpus", "max_tokens", "context_len", "layers", "sae"))


def _safe(model: str) -> str:
    """A model name (a built-in name, or a path or hub id) as one folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("_.")[-80:] or "model"


def acts_dir(cfg: DemoConfig, model: str) -> str:
    """Where the first model's extraction caches the demo SAE's activations."""
    return os.path.join(os.path.dirname(os.path.abspath(cfg.db)), "demo-acts", f"{_safe(model)}-{cfg.sae_site}")


def sae_dir(cfg: DemoConfig, model: str) -> str:
    """Where the demo SAE of `model` is written (beside the index)."""
    return os.path.join(os.path.dirname(os.path.abspath(cfg.db)), "demo-sae", f"{_safe(model)}-{cfg.sae_site}")


def plan(cfg: DemoConfig) -> tuple[list[Job], list[str]]:
    """(the jobs still to do, in order: extractions then head scores; lines about what is already there)."""
    from core.heads.config import HeadsConfig
    from core.index import queries
    from core.index.db import connect
    from core.index.heads import head_sets
    from core.saes.train import TrainSAEConfig
    from core.units.config import ExtractConfig

    os.makedirs(os.path.dirname(os.path.abspath(cfg.db)), exist_ok=True)
    con = connect(cfg.db)  # a writing open: creates the index or brings an older one up to the current schema
    try:
        runs, scored = queries.list_runs(con), {s.model for s in head_sets(con)}
    finally:
        con.close()
    jobs, notes = [], []
    for i, model in enumerate(cfg.models):
        ecfg = ExtractConfig(model=model, db=cfg.db, corpus="demo", max_tokens=cfg.max_tokens,
                             preview_tokens=cfg.preview_tokens if i == 0 else 0)
        if i == 0 and cfg.sae_site:  # the demo SAE trains on activations cached in this same pass
            ecfg.capture, ecfg.capture_dir = cfg.sae_site, acts_dir(cfg, model)
        same = [r for r in runs if _same_run(r, ecfg)]
        if any(r.status == "complete" for r in same):
            notes.append(f"demo: {model} already indexed in {cfg.db}")
        else:
            resume = any(r.status == "running" and r.config == ecfg.identity() for r in same)
            jobs.append(Job(f"index {model}", "extract", ecfg, resume))
        if i == 0 and cfg.sae_site:
            cached = any(j.config is ecfg for j in jobs)  # this extraction will write the activation cache
            jobs += _sae_jobs(cfg, model, runs, TrainSAEConfig, ExtractConfig, notes, cached)
    for model in cfg.models:
        if model in scored:
            notes.append(f"demo: the heads of {model} are already scored")
        else:
            jobs.append(Job(f"score the heads of {model}", "heads",
                            HeadsConfig(model=model, db=cfg.db, ablation_tokens=cfg.ablation_tokens)))
    if cfg.sweep and cfg.models:
        jobs += _sweep_jobs(cfg, notes)
    if cfg.patch:
        jobs += _patch_jobs(cfg, notes)
    if cfg.explain_units and cfg.models and cfg.sae_site:
        from core.autointerp.demo import explain_job

        ex = explain_job(cfg, notes)
        jobs += [Job(f"explain {cfg.explain_units} units of {cfg.models[0]}", "explain", ex)] if ex else []
    if cfg.circuits and cfg.models:
        from core.circuits.demo import circuit_jobs

        jobs += [Job(name, kind.removesuffix("-resume"), c, kind.endswith("-resume"))
                 for name, kind, c in circuit_jobs(cfg, runs, notes)]
    return jobs, notes


def _sweep_jobs(cfg: DemoConfig, notes: list[str]) -> list[Job]:
    """The first model's steering sweep (direction made at the middle block; every third block swept)."""
    from core.index.db import connect
    from core.index.sweeps import list_sweeps
    from core.interventions.sweep import SweepConfig

    model, name = cfg.models[0], f"demo: {cfg.sweep}"
    con = connect(cfg.db, read_only=True)
    try:
        done = any(s.name == name for s in list_sweeps(con, model))
    finally:
        con.close()
    if done:
        notes.append(f"demo: the steering sweep of {model} is already stored")
        return []
    return [Job(f"steering sweep of {model} ({cfg.sweep})", "sweep",
                SweepConfig(model=model, direction=cfg.sweep, db=cfg.db, layers="every:3",
                            alphas="-0.5,-0.25,0,0.25,0.5",
                            n_prompts=16, tokens=8, neutral_tokens=256, name=name))]


def _patch_jobs(cfg: DemoConfig, notes: list[str]) -> list[Job]:
    """The patching grids of the page's default prompt pair for each model it suits (the built-in ones), unless
    stored already (a job's config: core.interventions.patching.store_patch's arguments)."""
    from core.index import patch_grids as pg
    from core.index.db import connect

    models = [m for m in cfg.models if m in pg.DEFAULT_PAIR_MODELS]
    con = connect(cfg.db, read_only=True)
    try:  # stored by these package versions (else the page would not read them)
        done = {m for m in models if pg.get(con, m, pg.DEFAULT_PAIR, pg.package_versions()) is not None}
    finally:
        con.close()
    notes += [f"demo: the patching grids of {m} are already stored" for m in models if m in done]
    return [Job(f"patching grids of {m}", "patch", {"db": cfg.db, "model": m, "pair": dict(pg.DEFAULT_PAIR)})
            for m in models if m not in done]


def _sae_jobs(cfg: DemoConfig, model: str, runs, TrainSAEConfig, ExtractConfig, notes: list[str],
              cached: bool) -> list[Job]:
    """Train the demo SAE (unless its files exist; from the activations the model's extraction caches, or streamed
    from the model when that extraction ran before), then index its features with that layer's neurons."""
    from core.saes.acts import cache_info

    out, jobs = sae_dir(cfg, model), []
    if os.path.exists(os.path.join(out, "cfg.json")):
        notes.append(f"demo: the SAE {out} is already trained")
    else:
        jobs.append(Job(f"train an SAE on {model} {cfg.sae_site}", "train-sae",
                        TrainSAEConfig(model=model, site=cfg.sae_site, out=out, tokens=cfg.sae_tokens,
                                       latents=cfg.sae_latents, k=cfg.sae_k, eval_tokens=8192, batch=cfg.sae_batch,
                                       lr=cfg.sae_lr,
                                       acts=acts_dir(cfg, model) if cached or cache_info(acts_dir(cfg, model))
                                       else "")))
    layer = cfg.sae_site.rsplit(".", 1)[-1]
    ecfg = ExtractConfig(model=model, db=cfg.db, corpus="demo", max_tokens=cfg.max_tokens, layers=layer, sae=[out])
    same = [r for r in runs if _same_run(r, ecfg)]
    if any(r.status == "complete" for r in same):
        notes.append(f"demo: the SAE's features are already indexed in {cfg.db}")
    else:
        resume = any(r.status == "running" and r.config == ecfg.identity() for r in same)
        jobs.append(Job(f"index the SAE features of {model}", "extract", ecfg, resume))
    return jobs


def record(cfg: DemoConfig, jobs: list[Job]) -> None:
    """The planned jobs into the index (waiting), replacing an earlier demo's list."""
    from core.index import writer
    from core.index.db import connect
    from core.index.jobs import add_job, clear_jobs

    con = connect(cfg.db)
    try:
        with writer.transaction(con):
            clear_jobs(con)
            for j in jobs:
                unit = {"extract": "tokens", "train-sae": "tokens", "train-transcoders": "tokens", "sweep": "cells",
                        "explain": "units", "patch": "layers", "graphs": "graphs"}.get(j.kind, "passes")
                total = {"extract": getattr(j.config, "max_tokens", None),
                         "train-sae": getattr(j.config, "tokens", None),
                         "train-transcoders": getattr(j.config, "tokens", None)}.get(j.kind)
                j.job_id = add_job(con, j.name, j.kind, total=total, unit=unit)
    finally:
        con.close()


def _extract(j: Job, track, hooks) -> None:
    from core.units.extract import extract

    shown = hooks["extract"](j.config) if hooks.get("extract") else None

    def progress(p):
        track.progress(p.tokens_done, p.tokens_target)
        if shown:
            shown(p)

    extract(j.config, resume=j.resume, on_progress=progress)
    track.finish(j.config.max_tokens)


def _train(j: Job, track, hooks) -> None:
    """train-sae or train-transcoders: both report TrainSAE-like steps (tokens, target)."""
    if j.kind == "train-sae":
        from core.saes.train import train_sae as train
    else:
        from core.saes.train_transcoders import train_transcoders as train
    shown = hooks["train"](j.config) if hooks.get("train") else None

    def step(s):
        track.progress(s.tokens, s.target)
        if shown:
            shown(s)

    train(j.config, on_step=step)
    track.finish(j.config.tokens)


def _heads(j: Job, track, hooks) -> None:
    from core.heads.score import score_heads

    shown = hooks["heads"](j.config) if hooks.get("heads") else None

    def stage(name, done, total):
        track.progress(done, total)
        if shown:
            shown(name, done, total)

    score_heads(j.config, on_progress=stage)
    track.finish()


def _counted(run: Callable, name: str) -> Callable:
    """A runner for jobs that report (done, total) through the keyword `name`."""
    def runner(j: Job, track, _hooks) -> None:
        out = run(j.config, **{name: lambda d, t: track.progress(d, t)})
        track.finish(len(out["resid"]) if isinstance(out, dict) and "resid" in out else None)
    return runner


def _runners() -> dict[str, Callable]:
    from core.autointerp.demo import run_explain
    from core.circuits.demo import run_graphs
    from core.interventions.patching import store_patch
    from core.interventions.sweep import run_sweep

    return {"extract": _extract, "train-sae": _train, "train-transcoders": _train, "heads": _heads,
            "sweep": _counted(run_sweep, "on_cell"), "explain": _counted(run_explain, "on_unit"),
            "patch": _counted(lambda c, on_layer: store_patch(**c, on_layer=on_layer), "on_layer"),
            "graphs": _counted(run_graphs, "on_graph")}


def build(cfg: DemoConfig, on_extract: Callable[[object], Callable] | None = None,
          on_heads: Callable[[object], Callable] | None = None, say: Callable[[str], None] = lambda s: None,
          on_train: Callable[[object], Callable] | None = None) -> list[str]:
    """Run every missing demo job in order, recording each one's progress in the index; returns the failures'
    one-line reasons (a failed job does not stop the next). `on_extract(ExtractConfig)` / `on_heads(HeadsConfig)` /
    `on_train(config)` return a job's progress callback for the terminal; `say` gets one line per job."""
    from core.errors import UserError
    from core.index.db import fold_wal
    from core.index.jobs import Tracker

    jobs, notes = plan(cfg)
    for n in notes:
        say(n)
    record(cfg, jobs)
    runners, hooks = _runners(), {"extract": on_extract, "heads": on_heads, "train": on_train}
    failures = []
    for j in jobs:
        say(f"demo: {j.name}")
        track = Tracker(cfg.db, j.job_id)
        track.start()
        try:
            runners[j.kind](j, track, hooks)
        except UserError as e:
            track.fail(str(e))
            failures.append(f"{j.name}: {e}")
        except BaseException as e:  # Ctrl-C or a crash: say so in the index, then stop as asked
            track.fail("interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}")
            raise
        fold_wal(cfg.db, wait_s=2.0)  # each finished job's writes into the file (core.index.db: durability)
    return failures
