"""The one-pass pipeline: corpus -> model (hooks reduce in place) -> DuckDB index.

Memory is bounded by the model, one batch and the reducers (O(layers * d_mlp)), never by the corpus length. The
run's state, its per-chunk commits and checkpoints, and its published results are core.units.run_state's; the
forward pass is core.units.forward's; with --ray the passes run as Ray tasks (core.units.shards).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.data.corpus import Chunk, Corpus, iter_chunks
from core.model.load import LoadedModel, load_model
from core.model.run import ContextLengthError, check_length
from core.model.sites import Site
from core.units.config import ExtractConfig, ExtractError, parse_layers
from core.units.forward import fold_chunk, load_saes
from core.units.reduce import ReduceConfig
from core.units.run_state import Progress, RunState, commit_chunk, open_run, publish, save_checkpoint


def extract(cfg: ExtractConfig, *, resume: bool = False, lm: LoadedModel | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> int:
    """Run (or resume) an extraction; returns the run_id. Validates all input before writing anything."""
    corpus = Corpus(cfg.corpus)
    corpus.validate()
    for name in ("max_tokens", "context_len", "top_k", "samples", "hist_bins", "batch_tokens"):
        if getattr(cfg, name) < 1:
            raise ExtractError(f"--{name.replace('_', '-')} must be positive (got {getattr(cfg, name)})")
    if cfg.ctx_examples < 0 or cfg.ctx_window < 0:
        raise ExtractError("--ctx-examples and --ctx-window must be >= 0")
    if cfg.ray is not None:
        from core.units import shards

        shards.check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    lm = lm or load_model(cfg.model, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype, device=cfg.device)
    layers = parse_layers(cfg.layers, lm.n_layers)
    try:
        check_length(lm.model, cfg.context_len, f"--context-len {cfg.context_len}: a window")
    except ContextLengthError as e:
        raise ExtractError(str(e)) from None
    rcfg = ReduceConfig(top_k=cfg.top_k, samples=cfg.samples, hist_bins=cfg.hist_bins,
                        ctx_examples=cfg.ctx_examples, ctx_window=cfg.ctx_window)
    saes = load_saes(cfg.sae, lm)
    cap = _capture_site(cfg, lm)
    cluster = shards.connect(cfg) if cfg.ray is not None else None  # unreachable: one line, nothing written
    run = open_run(cfg, corpus, lm, layers, rcfg, resume, saes)
    run.capture = cap
    t0 = time.monotonic()
    if on_progress:
        on_progress(Progress(run.tokens_done, run.target, run.docs_next, 0.0))
    chunks = iter_chunks(corpus.documents(), lm.tokenizer, max_tokens=cfg.max_tokens, context_len=cfg.context_len,
                         chunk_tokens=cfg.chunk_tokens, start_doc=run.docs_next, start_tok=run.tokens_done,
                         first_chunk_tokens=cfg.preview_tokens or None)
    preview = bool(cfg.preview_tokens) and run.tokens_done < cfg.preview_tokens
    if cfg.ray is not None:
        shards.run(cluster, cfg, run, chunks, preview=preview, on_progress=on_progress)
        chunks = ()
    for chunk in chunks:
        def batch_done(n: int, tok0: int = chunk.tok0) -> None:  # progress inside a chunk, per batch
            if on_progress:
                on_progress(Progress(tok0 + n, run.target, run.docs_next, time.monotonic() - t0))

        tokens, norms = fold_chunk(lm, chunk, run, cfg.batch_tokens, cfg.include_special, batch_done)
        _write_capture(run, chunk)
        commit_chunk(cfg.db, run, chunk, tokens, norms)
        save_checkpoint(cfg.db, run)
        if preview and run.tokens_done >= cfg.preview_tokens and run.tokens_done < run.target:
            publish(cfg, run, complete=False)  # the pages can open this run now
            preview = False
        if on_progress:
            on_progress(Progress(run.tokens_done, run.target, run.docs_next, time.monotonic() - t0))
    publish(cfg, run, complete=True)
    if run.capture:
        (Path(run.capture[1]) / "complete").write_text(str(run.tokens_done))
    return run.run_id


def _capture_site(cfg: ExtractConfig, lm: LoadedModel) -> tuple | None:
    """(Site, folder) for --capture, checked against the model, the folder started with its description."""
    if not cfg.capture:
        return None
    import json

    from core.model.sites import check_site
    from core.saes.sae import site_width

    site = check_site(Site.parse(cfg.capture), lm.n_layers, lm.parts.heads[0])
    folder = Path(cfg.capture_dir or f"{cfg.db}.acts/{lm.name}-{site}".replace("/", os.sep))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "complete").unlink(missing_ok=True)
    (folder / "cache.json").write_text(json.dumps({"model": lm.name, "site": str(site), "corpus": cfg.corpus,
                                                   "context_len": cfg.context_len, "d": site_width(site, lm)}))
    return site, str(folder)


def _write_capture(run: RunState, chunk: Chunk) -> None:
    """The chunk's cached activations into one file named by its first token (a resumed run rewrites it)."""
    if not run.capture:
        return
    rows, run.cap_rows = run.cap_rows, []
    x = torch.cat([r[0] for r in rows]) if rows else torch.zeros(0)
    held = torch.cat([r[1] for r in rows]) if rows else torch.zeros(0, dtype=torch.uint8)
    path = Path(run.capture[1]) / f"tok{chunk.tok0:012d}.safetensors"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"x": x.contiguous(), "held": held.contiguous()}, str(tmp))
    os.replace(tmp, path)
