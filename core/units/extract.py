"""The one-pass pipeline: corpus -> model (hooks reduce in place) -> DuckDB index.

Memory is bounded by the model, one batch and the reducers (O(layers * d_mlp)), never by the corpus length. Work is
committed per chunk of whole documents; after each commit the reducers' state is checkpointed (safetensors, atomic
rename) beside the index, so a run killed at any moment resumes with `resume=True` and ends with exactly the index
an uninterrupted run gives (same chunks, same batches, same state).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core.data.corpus import Chunk, Corpus, batches, iter_chunks, text_sha
from core.errors import UserError
from core.faults import point
from core.index import writer
from core.index.db import connect, fold_wal
from core.model.intervene import Edit
from core.model.load import LoadedModel, load_model
from core.model.run import ContextLengthError, check_length, forward_until, pad_batch
from core.model.sites import Site
from core.model.tokens import vocab_strings
from core.units.reduce import LayerReducer, ReduceConfig

log = logging.getLogger(__name__)


class ExtractError(UserError):
    """Bad extraction input; one line."""


@dataclass
class ExtractConfig:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    db: str
    """Path of the DuckDB index (created if missing)."""
    corpus: str = "demo"
    """'demo', a .txt/.jsonl/.csv/.parquet file, or a Hugging Face dataset name."""
    max_tokens: int = 100_000
    """Stop after this many tokens (the last document is cut)."""
    context_len: int = 128
    """Window length T: documents are cut into contiguous slices of at most T tokens."""
    layers: str = "all"
    """Layers to index: 'all', '5', or '0-3,7'."""
    top_k: int = 64
    """Exact top-K activating tokens kept per unit."""
    samples: int = 8
    """Interval samples per interval (S)."""
    hist_bins: int = 128
    """Histogram bins on each side of zero."""
    ctx_examples: int = 16
    """Store each unit's activation around its first this-many top examples (the neuron page colours them)."""
    ctx_window: int = 16
    """Tokens each side of the example's token in that stored context."""
    batch_tokens: int = 4096
    """Padded tokens per forward pass."""
    chunk_tokens: int = 32_768
    """Tokens per commit + checkpoint."""
    preview_tokens: int = 0
    """Also publish per-unit results once the first this-many tokens are indexed (the first chunk ends there), so
    the pages open long before the run ends; 0: results only at the end."""
    include_special: bool = False
    """Count special tokens (BOS/EOS) in unit statistics; they always feed the model as context."""
    sae: list[str] = field(default_factory=list)
    """Also index the features of this SAE (a SAELens or sparsify folder, or a Gemma Scope params.npz), in the same
    pass (repeatable)."""
    sae_map: bool = True
    """Compute each SAE's feature map (UMAP of decoder directions) when the run completes."""
    capture: str = ""
    """Also cache this site's activations (e.g. resid_post.15) on the counted tokens, float16, for `train-sae
    --acts` (an activation cache written in the same pass)."""
    capture_dir: str = ""
    """Folder of that cache (default: INDEX.acts/<model>-<site>)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N or mps (the statistics are kept on the CPU, in float32)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The model's weights and activations."""
    threads: int | None = None
    """torch threads (default: torch's choice; on Ray, each task's --ray-cpus)."""
    ray: str | None = None
    """Run the forward passes as Ray tasks over shards of documents: '' or 'local' starts a local cluster (or joins
    $RAY_ADDRESS), else a cluster address (auto, HOST:6379, ray://HOST:10001). The index equals one process's."""
    shard_chunks: int = 4
    """With --ray: chunks (--chunk-tokens each) per task; the unit of work and of resume."""
    ray_cpus: int = 1
    """With --ray: CPUs per task (its torch threads unless --threads)."""

    def identity(self) -> dict:
        """What must match for --resume to continue a run (with or without --ray: the chunks are the same)."""
        d = asdict(self)
        for k in ("db", "threads", "trust_remote_code", "sae_map", "capture", "capture_dir", "ray", "shard_chunks",
                  "ray_cpus"):
            d.pop(k)
        if not d["preview_tokens"]:  # runs made before the field existed match a config without a preview
            d.pop("preview_tokens")
        if not d["sae"]:  # likewise for runs without SAEs
            d.pop("sae")
        else:
            d["sae"] = [str(Path(p).expanduser().resolve()) for p in d["sae"]]
        if d["device"] == "cpu" and d["dtype"] == "float32":  # and for runs on the defaults
            d.pop("device")
            d.pop("dtype")
        return d


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """'all' | '5' | '0-3,7' -> sorted unique layer indices; ExtractError if malformed or out of range."""
    spec = str(spec).strip().lower()
    if spec == "all":
        return list(range(n_layers))
    out: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", part)
        if not m:
            raise ExtractError(f"--layers {spec!r}: expected 'all', a layer like 5, or ranges like 0-3,7")
        a, b = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if a > b:
            raise ExtractError(f"--layers {spec!r}: range {a}-{b} is reversed")
        if a < 0 or b >= n_layers:
            raise ExtractError(f"--layers {spec!r}: out of range, this model has layers 0-{n_layers - 1}")
        out.update(range(a, b + 1))
    return sorted(out)


@dataclass
class Progress:
    tokens_done: int
    tokens_target: int
    docs_done: int
    elapsed_s: float


def checkpoint_path(db: str | Path, run_id: int) -> Path:
    return Path(str(db) + ".ckpt") / f"run-{run_id}.safetensors"


@dataclass
class _Run:
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
    run = _open_run(cfg, corpus, lm, layers, rcfg, resume, saes)
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

        tokens, norms = _forward_chunk(lm, chunk, run, cfg.batch_tokens, cfg.include_special, batch_done)
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


def commit_chunk(db: str, run: _Run, chunk: Chunk, tokens: dict, norms: np.ndarray) -> None:
    """A chunk's documents, token rows and norms into the index with the run's progress, in one transaction."""
    run.tokens_done, run.docs_next = chunk.tok0 + chunk.n_tokens, chunk.docs[-1][0] + 1
    con = connect(db)
    try:
        writer.write_chunk(con, run.run_id, run.corpus_id, [(d, t, text_sha(t)) for d, t, _ in chunk.docs],
                           _run_docs(chunk), tokens, norms, (run.tokens_done, run.docs_next))
    finally:
        con.close()
    point("committed")  # the fault matrix: killed with the chunk committed, its checkpoint not saved


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


def _write_capture(run: _Run, chunk: Chunk) -> None:
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


def load_saes(paths: list[str], lm: LoadedModel) -> list[tuple]:
    """[(SAE, input Site)] for --sae, each checked against this model (SAEError, one line, before any write)."""
    from core.saes.formats import load_sae
    from core.saes.sae import check_for_model

    out = []
    for path in paths:
        sae = load_sae(path)
        site = check_for_model(sae, lm)[0]
        out.append((sae.to(lm.device), site))
    return out


def _open_run(cfg: ExtractConfig, corpus: Corpus, lm: LoadedModel, layers: list[int], rcfg: ReduceConfig,
              resume: bool, saes: list[tuple] = ()) -> _Run:
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
            run = _Run(match[0][0], match[0][1], layers, cfg.max_tokens, reducers, special=special, saes=by_group)
            _load_checkpoint(cfg.db, run)
            with writer.transaction(con):
                writer.truncate_run(con, run.run_id, run.docs_next, drop_results=False)  # a preview stays valid
            return run
        with writer.transaction(con):
            model_id = writer.ensure_model(con, lm.info(), vocab_strings(lm.tokenizer))
            corpus_id = writer.ensure_corpus(con, corpus.identity())
            run_id = writer.create_run(con, model_id, corpus_id, ident, layers, cfg.max_tokens)
            for s, (sae, site) in enumerate(saes, 1):
                writer.add_run_sae(con, run_id, s, _sae_row(sae, site, cfg.sae[s - 1]))
        return _Run(run_id, corpus_id, layers, cfg.max_tokens, reducers, special=special, saes=by_group)
    finally:
        con.close()


def _sae_row(sae, site: Site, path: str) -> dict:
    nb = sae.meta.get("neuroboard") or {}
    name = Path(path).name if Path(path).name not in ("params.npz", "") else Path(path).parent.name
    return {"name": name, "path": str(Path(path).expanduser().resolve()), "site": str(site),
            "out_site": sae.out_site if sae.transcoder else None, "d_in": sae.d_in, "d_sae": sae.d_sae,
            "activation": sae.activation, "k": sae.k, "format": sae.meta.get("format"), "quality": nb.get("quality")}


def _feature_maps(cfg: ExtractConfig, run: _Run) -> dict[int, np.ndarray]:
    """{sae_id: each SAE's feature map (core.saes.features.feature_map)} for --sae-map, else {}."""
    from core.saes.features import feature_map

    if not (cfg.sae_map and run.saes):
        return {}
    return {-group: feature_map(sae) for group, (sae, _) in run.saes.items() if sae.d_sae >= 4}


def _run_docs(chunk: Chunk) -> dict:
    starts = np.cumsum([0] + [len(ids) for _, _, ids in chunk.docs[:-1]]) + chunk.tok0
    return {"doc_id": np.array([d for d, _, _ in chunk.docs], np.int32), "tok0": starts.astype(np.int64),
            "n_tokens": np.array([len(ids) for _, _, ids in chunk.docs], np.int32)}


def forward_chunk(lm: LoadedModel, chunk: Chunk, reducers: dict[int, LayerReducer], *, batch_tokens: int = 4096,
                  include_special: bool = False, saes: dict[int, tuple] | None = None):
    """The extraction forward pass alone (no index writes, no checkpoint): folds `chunk` into `reducers`
    ({layer: LayerReducer}, and {-s: ...} for `saes` {-s: (SAE, input Site)}) exactly as `extract` does and returns
    the chunk's (tokens, norms). For benchmarks and for Ray tasks (core.units.shards)."""
    special = set() if include_special else set(lm.tokenizer.all_special_ids)
    run = _Run(run_id=0, corpus_id=0, layers=sorted(g for g in reducers if g >= 0), target=0, reducers=reducers,
               special=special, saes=saes or {})
    return _forward_chunk(lm, chunk, run, batch_tokens, include_special)


@torch.inference_mode()
def _forward_chunk(lm: LoadedModel, chunk: Chunk, run: _Run, batch_tokens: int, include_special: bool,
                   on_batch: Callable[[int], None] | None = None):
    """Every window of the chunk through the model once; hooks fold MLP activations into the reducers.

    Returns the chunk's token rows (document order) and their residual norms (n_tokens, n_layers).
    """
    layers = run.layers
    any_red = next(iter(run.reducers.values()))
    W = any_red.cfg.ctx_window if any_red.cfg.ctx_examples else None
    n = chunk.n_tokens
    norms = np.zeros((n, len(layers)), np.float32)
    sel: dict[str, torch.Tensor] = {}

    def fold(layer: int) -> Edit:  # neurons: (B, T, d_mlp) -> the layer's reducer
        def fn(x: torch.Tensor) -> None:
            a = x.reshape(-1, x.shape[-1])  # (B*T, d_mlp); the reducer takes it as float32 on its device
            ctx = (a, sel["ctx"]) if "ctx" in sel else None
            run.reducers[layer].update(a if sel["all"] else a[sel["rows"]], sel["tok"], ctx)
        return fn

    def norm(j: int) -> Edit:  # resid_post: (B, T, d_model) -> each real token's L2 norm
        def fn(h: torch.Tensor) -> None:
            norms[sel["dst"], j] = torch.linalg.vector_norm(h.float(), dim=-1).reshape(-1).cpu()[sel["valid"]].numpy()
        return fn

    def fold_sae(group: int) -> Edit:  # an SAE's input site (B, T, ...) -> its features (B*T, d_sae) -> reducer
        sae = run.saes[group][0]

        def fn(x: torch.Tensor) -> None:
            f = sae.encode(x.reshape(-1, sae.d_in).float())  # (B*T, d_sae); padding rows are never selected
            ctx = (f, sel["ctx"]) if "ctx" in sel else None
            run.reducers[group].update(f if sel["all"] else f[sel["rows"]], sel["tok"], ctx)
        return fn

    edits: dict[Site, list[Edit]] = {}
    for layer in layers:
        edits.setdefault(Site("neurons", layer), []).append(fold(layer))
    for j, layer in enumerate(layers):
        edits.setdefault(Site("resid_post", layer), []).append(norm(j))
    for group, (_, site) in run.saes.items():
        edits.setdefault(site, []).append(fold_sae(group))
    extra = [site.layer for _, site in run.saes.values()]
    if run.capture:  # an activation cache: the counted tokens' rows (float16) and whether their window is held out
        from core.saes.acts import held_out

        cap_site = run.capture[0]
        run.cap_rows = []

        def keep(x: torch.Tensor) -> None:
            a = x.reshape(x.shape[0] * x.shape[1], -1).cpu()[sel["rows"]].to(torch.float16)  # (n, d)
            run.cap_rows.append((a, sel["held"][sel["rows"] // x.shape[1]]))

        edits.setdefault(cap_site, []).append(keep)
        extra.append(cap_site.layer)
    last = max(list(layers) + extra)
    red_dev = any_red.device
    done = 0
    for batch in batches(chunk.windows, batch_tokens):
        ids, valid, counted, tok = _pack(batch, run.special, include_special)
        sel["valid"] = valid.reshape(-1).nonzero().squeeze(1)
        sel["dst"] = (tok.reshape(-1)[sel["valid"]] - chunk.tok0).numpy()
        rows = counted.reshape(-1).nonzero().squeeze(1)
        sel["all"] = rows.numel() == counted.numel()
        sel["rows"], sel["tok"] = rows, tok.reshape(-1)[rows]
        if run.capture:
            sel["held"] = torch.tensor([held_out(w.doc_id, w.start) for w in batch], dtype=torch.uint8)
        if W is not None:
            sel["ctx"] = _context_rows(valid, rows, W)
        if red_dev.type != "cpu":  # once per batch, not once per layer
            sel["tok"] = sel["tok"].to(red_dev)
            if W is not None:
                sel["ctx"] = sel["ctx"].to(red_dev)
        forward_until(lm, ids, last, edits=edits)  # no unembedding: it is not needed here
        done += int(valid.sum())
        point("batch")  # the fault matrix: killed mid-chunk
        if on_batch:
            on_batch(done)
    token_ids = np.concatenate([np.asarray(ids, np.int32) for _, _, ids in chunk.docs])
    tokens = {"doc_id": np.concatenate([np.full(len(ids), d, np.int32) for d, _, ids in chunk.docs]),
              "position": np.concatenate([np.arange(len(ids), dtype=np.int32) for _, _, ids in chunk.docs]),
              "token_id": token_ids,
              "counted": np.ones(n, bool) if include_special else ~np.isin(token_ids, list(run.special))}
    return tokens, norms


def _context_rows(valid: torch.Tensor, rows: torch.Tensor, W: int) -> torch.Tensor:
    """(n, 2W+1) flat (B*T) row of each counted token's neighbours at offsets -W..W; -1 outside its window."""
    B, T = valid.shape
    lens = valid.sum(1)  # (B,) right padding: window b holds positions 0..lens[b]-1
    t = (rows % T)[:, None] + torch.arange(-W, W + 1)  # (n, 2W+1) position within the window
    inside = (t >= 0) & (t < lens[rows // T][:, None])
    return torch.where(inside, (rows // T * T)[:, None] + t, -1)


def _pack(batch, special: set[int], include_special: bool):
    """Right-padded (B, T) ids and valid mask (core.model.run.pad_batch), each token's global index (B, T) and
    whether it is counted in unit statistics (B, T)."""
    ids, valid = pad_batch([w.ids for w in batch])
    tok = torch.zeros(ids.shape, dtype=torch.long)
    for i, w in enumerate(batch):
        tok[i, : len(w.ids)] = torch.arange(w.tok0, w.tok0 + len(w.ids))
    counted = valid if include_special or not special else valid & ~torch.isin(ids, torch.tensor(sorted(special)))
    return ids, valid, counted, tok


def save_checkpoint(db: str, run: _Run) -> None:
    path = checkpoint_path(db, run.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{layer}.{k}": v for layer, red in run.reducers.items() for k, v in red.state_dict().items()}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(state, str(tmp), metadata={"docs_next": str(run.docs_next), "tokens_done": str(run.tokens_done)})
    point("checkpoint")  # the fault matrix: killed with the new checkpoint written beside the old, not moved in
    os.replace(tmp, path)


def _load_checkpoint(db: str, run: _Run) -> None:
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


def publish(cfg: ExtractConfig, run: _Run, *, complete: bool) -> None:
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
