"""An extraction run's state and what makes it durable: the run opened (created in the index, or resumed from its
checkpoint), each chunk committed, the reducers' state checkpointed, the results published (a preview or the final
ones). The one-process pipeline (core.units.extract) and the Ray driver (core.units.shards) both go through it.

Work is committed per chunk of whole documents; after each commit the reducers' state is checkpointed (safetensors,
atomic rename) beside the index, so a run killed at any moment resumes with `resume=True` and ends with exactly the
index an uninterrupted run gives (same chunks, same batches, same state).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from core.data.corpus import Chunk, Corpus, text_sha
from core.faults import point
from core.index import writer
from core.index.db import connect, fold_wal
from core.model.load import LoadedModel
from core.model.sites import Site
from core.model.tokens import vocab_strings
from core.units.config import ExtractConfig, ExtractError
from core.units.reduce import LayerReducer, ReduceConfig


@dataclass
class Progress:
    """What `on_progress` is called with: tokens indexed so far of the target, documents done, seconds."""

    tokens_done: int
    tokens_target: int
    docs_done: int
    elapsed_s: float


def checkpoint_path(db: str | Path, run_id: int) -> Path:
    return Path(str(db) + ".ckpt") / f"run-{run_id}.safetensors"


@dataclass
class RunState:
    """One extraction run as it goes: its ids, the reducers, and how far into the corpus it has committed."""

    run_id: int
    corpus_id: int
    layers: list[int]
    target: int
    reducers: dict[int, LayerReducer]
    """Keyed by unit group: a layer's neurons (>= 0), SAE s's features (-s)."""
    docs_next: int = 0
    tokens_done: int = 0
    special: set[int] = field(default_factory=set)
    saes: dict[int, tuple] = field(default_factory=dict)
    """{-s: (SAE, input Site)}"""
    capture: tuple | None = None
    """(Site, folder) of an activation cache written in the pass."""
    cap_rows: list = field(default_factory=list)
    """The current chunk's cached rows: [(x (n, d) float16, held (n,) uint8)]."""


def open_run(cfg: ExtractConfig, corpus: Corpus, lm: LoadedModel, layers: list[int], rcfg: ReduceConfig,
             resume: bool, saes: list[tuple] = ()) -> RunState:
    """A new run in the index (its model, corpus and SAEs recorded), or with `resume` the unfinished run of the same
    identity, its reducers' state and position read back from its checkpoint (ExtractError if there is none)."""
    ident = cfg.identity()
    dev = lm.device  # the reducers work beside the model (state_dict and finalize give CPU copies)
    reducers = {layer: LayerReducer(lm.parts.d_mlp, layer, rcfg, dev) for layer in layers}
    reducers |= {-s: LayerReducer(sae.d_sae, -s, rcfg, dev) for s, (sae, _) in enumerate(saes, 1)}
    by_group = {-s: pair for s, pair in enumerate(saes, 1)}
    special = set() if cfg.include_special else set(lm.tokenizer.all_special_ids)
    con = connect(cfg.db)
    try:
        if resume:
            match = [r for r in writer.unfinished_runs(con, lm.name) if r[2] == ident]
            if not match:
                raise ExtractError("--resume: no unfinished run with this model and configuration in the index")
            run = RunState(match[0][0], match[0][1], layers, cfg.max_tokens, reducers, special=special, saes=by_group)
            _load_checkpoint(cfg.db, run)
            with writer.transaction(con):
                writer.truncate_run(con, run.run_id, run.docs_next, drop_results=False)  # a preview stays valid
            return run
        with writer.transaction(con):
            model_id = writer.ensure_model(con, lm.info(), vocab_strings(lm.tokenizer))
            corpus_id = writer.ensure_corpus(con, corpus.identity())
            run_id = writer.create_run(con, model_id, corpus_id, ident, layers, cfg.max_tokens)
            for s, (sae, site) in enumerate(saes, 1):
                writer.add_run_sae(con, run_id, s, _sae_row(sae, site, sae.meta["source"]))
        return RunState(run_id, corpus_id, layers, cfg.max_tokens, reducers, special=special, saes=by_group)
    finally:
        con.close()


def _sae_row(sae, site: Site, path: str) -> dict:
    nb = sae.meta.get("neuroboard") or {}
    name = sae.meta.get("name") or (Path(path).name if Path(path).name not in ("params.npz", "") else
                                    Path(path).parent.name)
    return {"name": name, "path": str(Path(path).expanduser().resolve()), "site": str(site),
            "out_site": sae.out_site if sae.transcoder else None, "d_in": sae.d_in, "d_sae": sae.d_sae,
            "activation": sae.activation, "k": sae.k, "format": sae.meta.get("format"), "quality": nb.get("quality")}


def commit_chunk(db: str, run: RunState, chunk: Chunk, tokens: dict, norms: np.ndarray) -> None:
    """A chunk's documents, token rows and norms into the index with the run's progress, in one transaction."""
    run.tokens_done, run.docs_next = chunk.tok0 + chunk.n_tokens, chunk.docs[-1][0] + 1
    con = connect(db)
    try:
        writer.write_chunk(con, run.run_id, run.corpus_id, [(d, t, text_sha(t)) for d, t, _ in chunk.docs],
                           _run_docs(chunk), tokens, norms, (run.tokens_done, run.docs_next))
    finally:
        con.close()
    point("committed")  # the fault matrix: killed with the chunk committed, its checkpoint not saved


def _run_docs(chunk: Chunk) -> dict:
    starts = np.cumsum([0] + [len(ids) for _, _, ids in chunk.docs[:-1]]) + chunk.tok0
    return {"doc_id": np.array([d for d, _, _ in chunk.docs], np.int32), "tok0": starts.astype(np.int64),
            "n_tokens": np.array([len(ids) for _, _, ids in chunk.docs], np.int32)}


def save_checkpoint(db: str, run: RunState) -> None:
    path = checkpoint_path(db, run.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{layer}.{k}": v for layer, red in run.reducers.items() for k, v in red.state_dict().items()}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(state, str(tmp), metadata={"docs_next": str(run.docs_next), "tokens_done": str(run.tokens_done)})
    point("checkpoint")  # the fault matrix: killed with the new checkpoint written beside the old, not moved in
    os.replace(tmp, path)


def _load_checkpoint(db: str, run: RunState) -> None:
    from safetensors import safe_open

    path = checkpoint_path(db, run.run_id)
    if not path.exists():  # killed before the first checkpoint: start the run over
        return
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    for layer, red in run.reducers.items():
        red.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(layer)})
    run.docs_next, run.tokens_done = int(meta["docs_next"]), int(meta["tokens_done"])


def _feature_maps(cfg: ExtractConfig, run: RunState) -> dict[int, np.ndarray]:
    """{sae_id: each SAE's feature map (core.saes.features.feature_map)} for --sae-map, else {}."""
    from core.saes.features import feature_map

    if not (cfg.sae_map and run.saes):
        return {}
    return {-group: feature_map(sae) for group, (sae, _) in run.saes.items() if sae.d_sae >= 4}


def publish(cfg: ExtractConfig, run: RunState, *, complete: bool) -> None:
    """Write every unit's results from the reducers' state (which goes on unchanged) in one transaction: the
    run's final results (`complete`, with its SAEs' feature maps: a run is never complete without them), or a
    preview covering the tokens indexed so far."""
    maps = _feature_maps(cfg, run) if complete else {}
    con = connect(cfg.db)
    try:
        tok0, doc_ids = writer.doc_offsets(con, run.run_id)

        def doc_of(tok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            i = np.searchsorted(tok0, tok, side="right") - 1
            return doc_ids[i], (tok - tok0[i]).astype(np.int32)

        with writer.transaction(con):
            writer.truncate_run(con, run.run_id, run.docs_next)
            for group in run.reducers:  # neuron layers, then SAEs' features (group -s)
                writer.write_layer(con, run.run_id, run.reducers[group].finalize(), doc_of, cfg.hist_bins)
                point("publish")  # the fault matrix: killed mid-finalize
            for sae_id, xy in maps.items():
                writer.set_sae_umap(con, run.run_id, sae_id, xy)
                point("umap")  # the fault matrix: killed writing the feature maps
            if complete:
                writer.complete_run(con, run.run_id, run.tokens_done, run.docs_next)
            else:
                writer.publish_results(con, run.run_id, run.tokens_done)
    finally:
        con.close()
    if not complete:
        return
    fold_wal(cfg.db, wait_s=2.0)  # the finished run into the file (core.index.db: durability)
    ckpt = checkpoint_path(cfg.db, run.run_id)
    ckpt.unlink(missing_ok=True)
    try:
        ckpt.parent.rmdir()  # only when no other run's checkpoint is in it
    except OSError:
        pass
