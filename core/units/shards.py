"""Extraction on Ray (`neuroboard extract --ray [ADDRESS]`): the forward passes run as Ray tasks, one per shard of
consecutive chunks, each folding its tokens into fresh reducers; the driver merges the shards in corpus order and
writes one index, equal to one process's run of the same corpus.

Why equal, not close: a shard's chunks are the very chunks (so the very batches) one process makes; counts,
histograms, extrema, top-K with its tie order and contexts, and the interval reservoirs merge exactly
(LayerReducer.merge); the float64 sums behind the means are rebuilt by adding each shard's batch sums one by one in
corpus order (`LayerReducer.sum_log`), as one process adds them. Kernels must match too: the same CPU kind and the
same torch threads (a task uses --threads, else its --ray-cpus).

Resume, per shard: a finished shard's result is saved beside the index (safetensors, atomic rename) as soon as it
arrives; the driver merges in order, writing each chunk's token rows and the run's checkpoint after each shard, as
one process does after each chunk. A driver killed at any moment resumes (`--resume`, with or without --ray: the
checkpoint is the same) from the last merged shard and does not run again the shards already saved.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from core.data.corpus import Chunk
from core.errors import UserError
from core.faults import point
from core.units.config import ExtractError
from core.units.forward import forward_chunk, load_saes
from core.units.reduce import LayerReducer, ReduceConfig
from core.units.run_state import Progress, RunState, checkpoint_path, commit_chunk, publish, save_checkpoint

log = logging.getLogger(__name__)
TOKEN_COLS = ("doc_id", "position", "token_id", "counted")
RETRIES = 3
"""Ray runs a task again on another worker this many times when its worker or node dies."""


def check(cfg) -> None:
    """--ray's own input, before anything is written (ExtractError, one line)."""
    if cfg.capture:
        raise ExtractError("--capture writes its activation cache on this machine: run it without --ray")
    if cfg.shard_chunks < 1 or cfg.ray_cpus < 1:
        raise ExtractError("--shard-chunks and --ray-cpus must be positive")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ExtractError("--ray needs Ray: pip install 'neuroboard[ray]'") from None


@dataclass(frozen=True)
class Spec:
    """What a task needs to rebuild the driver's pass: the model, the units, the reduction settings."""

    model: str
    trust_remote_code: bool
    layers: tuple[int, ...]
    rcfg: ReduceConfig
    sae: tuple[str, ...]
    batch_tokens: int
    include_special: bool
    threads: int
    device: str = "cpu"
    dtype: str = "float32"


@dataclass
class Shard:
    chunks: list[Chunk]

    @property
    def tok0(self) -> int:
        return self.chunks[0].tok0

    @property
    def tok_end(self) -> int:
        return self.chunks[-1].tok0 + self.chunks[-1].n_tokens

    @property
    def name(self) -> str:
        return f"tok{self.tok0:012d}-{self.tok_end:012d}"


def shard_dir(db: str | Path, run_id: int) -> Path:
    return checkpoint_path(db, run_id).with_suffix(".shards")


def group(chunks: Iterable[Chunk], n: int) -> Iterator[Shard]:
    """Consecutive chunks, n at a time. A resumed run restarts at a shard boundary (the checkpoint is saved only
    after whole shards), so with the same n it regroups into the same shards."""
    cur: list[Chunk] = []
    for c in chunks:
        cur.append(c)
        if len(cur) == n:
            yield Shard(cur)
            cur = []
    if cur:
        yield Shard(cur)


# ---------------------------------------------------------------- task (runs on a Ray worker)
_CACHE: dict = {}


def shard_task(spec: Spec, chunks: list[Chunk]) -> dict:
    """One shard's forward passes into fresh reducers that keep their batch sums: {'state': {group: tensors},
    'rows': [(tokens, norms)] per chunk, 'host': ...}. The model and SAEs are loaded once per worker process."""
    from core.model.load import load_model

    torch.set_num_threads(spec.threads)
    key = (spec.model, spec.trust_remote_code, spec.sae, spec.device, spec.dtype)
    if _CACHE.get("key") != key:
        _CACHE.clear()
        lm = load_model(spec.model, trust_remote_code=spec.trust_remote_code, dtype=spec.dtype, device=spec.device)
        _CACHE.update(key=key, lm=lm, saes=load_saes(list(spec.sae), lm))
    lm, saes = _CACHE["lm"], _CACHE["saes"]
    reducers = _reducers(spec, lm.parts.d_mlp, [sae.d_sae for sae, _ in saes], lm.device)
    for r in reducers.values():
        r.sum_log = []
    by_group = {-s: pair for s, pair in enumerate(saes, 1)}
    rows = [forward_chunk(lm, c, reducers, batch_tokens=spec.batch_tokens, include_special=spec.include_special,
                          saes=by_group) for c in chunks]
    state = {g: {**r.state_dict(), "sum_log": torch.stack(r.sum_log).cpu() if r.sum_log else torch.zeros(
        0, r.d, dtype=torch.float64)} for g, r in reducers.items()}
    return {"state": state, "rows": rows, "host": f"{socket.gethostname()}:{os.getpid()}"}


def _reducers(spec: Spec, d_mlp: int, d_saes: list[int], device: torch.device) -> dict[int, LayerReducer]:
    out = {layer: LayerReducer(d_mlp, layer, spec.rcfg, device) for layer in spec.layers}
    return out | {-s: LayerReducer(d, -s, spec.rcfg, device) for s, d in enumerate(d_saes, 1)}


# ---------------------------------------------------------------- shard files
def save_result(folder: Path, shard: Shard, result: dict) -> None:
    tensors = {f"s.{g}.{k}": v.contiguous() for g, st in result["state"].items() for k, v in st.items()}
    for j, (tokens, norms) in enumerate(result["rows"]):
        tensors |= {f"c.{j}.{k}": torch.from_numpy(np.array(tokens[k])) for k in TOKEN_COLS}
        tensors[f"c.{j}.norms"] = torch.from_numpy(np.array(norms, np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shard.name}.safetensors"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"chunks": str(len(shard.chunks)), "host": result["host"]})
    os.replace(tmp, path)


def load_result(folder: Path, shard: Shard) -> dict | None:
    """A shard's saved result, or None when there is none for exactly these chunks."""
    path = folder / f"{shard.name}.safetensors"
    if not path.exists():
        return None
    with safe_open(str(path), "pt") as f:
        if f.metadata().get("chunks") != str(len(shard.chunks)):
            return None
        host = f.metadata().get("host", "")
    t = load_file(str(path))
    state: dict[int, dict] = {}
    for k, v in t.items():
        if k.startswith("s."):
            _, g, name = k.split(".", 2)
            state.setdefault(int(g), {})[name] = v
    rows = [({c: t[f"c.{j}.{c}"].numpy() for c in TOKEN_COLS}, t[f"c.{j}.norms"].numpy())
            for j in range(len(shard.chunks))]
    return {"state": state, "rows": rows, "host": host}


# ---------------------------------------------------------------- driver
def connect(cfg) -> tuple:
    """(the ray module, whether this call started it): joins the cluster at `cfg.ray` ('' or 'local': $RAY_ADDRESS,
    else a new local cluster), before anything is written. A host:port nobody listens on is an ExtractError after a
    5 s probe (Ray itself would wait for minutes); so is a cluster without room for one task."""
    import ray

    ray_, started = _join(ray, cfg.ray)
    have = ray.cluster_resources()
    gpus = _gpus(cfg)
    if cfg.ray_cpus > have.get("CPU", 0) or gpus > have.get("GPU", 0):  # Ray would wait for such a worker for ever
        if started:
            ray.shutdown()
        raise ExtractError(f"--ray-cpus {cfg.ray_cpus}{' and a GPU' if gpus else ''} per task: the cluster has "
                              f"{int(have.get('CPU', 0))} CPUs and {int(have.get('GPU', 0))} GPUs in all")
    return ray_, started


def _gpus(cfg) -> int:
    """GPUs a task asks Ray for: one when the model runs on CUDA."""
    return 1 if cfg.device.startswith("cuda") else 0


def _join(ray, address: str) -> tuple:
    if ray.is_initialized():
        return ray, False
    addr = None if address in ("", "local") else address
    hostport = (addr or "").removeprefix("ray://")
    if ":" in hostport:
        host, _, port = hostport.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise ExtractError(f"--ray {address}: no Ray cluster answers there ({e})") from None
    try:
        ray.init(address=addr, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=False)
    except Exception as e:  # ConnectionError, a bad address (ValueError), a cluster of another Ray version
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "; a cluster with token authentication needs RAY_AUTH_MODE=token here too" if addr else ""
        raise ExtractError(f"--ray {address or 'local'}: cannot start or reach the Ray cluster ({msg}{hint})") from None
    return ray, True


def _result(ray, ref) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, UserError):  # e.g. the model or an SAE file is missing on that machine
            raise ExtractError(f"a Ray task failed: {cause}") from None
        raise
    except ray.exceptions.RayError as e:  # a worker or node lost after Ray's retries, the cluster gone
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ExtractError(f"a Ray task failed after {RETRIES} retries ({type(e).__name__}: {msg}); the shards "
                              "finished so far are saved: --resume continues from them") from None


def run(cluster: tuple, cfg, run: RunState, chunks: Iterable[Chunk], *, preview: bool,
        on_progress: Callable | None = None) -> dict:
    """Every chunk from the run's position on, as Ray tasks over shards of `cfg.shard_chunks` chunks, merged in
    order into `run`'s reducers (token rows written, checkpoint saved after each shard). `cluster`: connect()'s.
    Returns counts: {'shards', 'ran', 'reused', 'workers', 'hosts'}."""
    ray, started = cluster
    try:
        return _drive(ray, cfg, run, chunks, preview, on_progress)
    finally:
        if started:
            ray.shutdown()


def _slim(shard: Shard) -> list[Chunk]:
    """The shard's chunks without document texts (a task needs only token ids)."""
    return [replace(c, docs=[(d, "", ids) for d, _, ids in c.docs]) for c in shard.chunks]


def _drive(ray, cfg, run: RunState, chunks, preview: bool, on_progress) -> dict:
    rcfg = next(iter(run.reducers.values())).cfg
    spec = Spec(model=cfg.model, trust_remote_code=cfg.trust_remote_code, layers=tuple(run.layers), rcfg=rcfg,
                sae=tuple(cfg.sae), batch_tokens=cfg.batch_tokens, include_special=cfg.include_special,
                threads=cfg.threads or cfg.ray_cpus, device=cfg.device, dtype=cfg.dtype)
    task = ray.remote(shard_task).options(num_cpus=cfg.ray_cpus, num_gpus=_gpus(cfg), max_retries=RETRIES)
    folder = shard_dir(cfg.db, run.run_id)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    cap = max(2, 2 * cpus // cfg.ray_cpus)  # tasks in flight: each worker has the next one queued
    shards: list[Shard | None] = []
    refs: dict = {}  # ObjectRef -> shard index
    done: dict[int, dict | None] = {}  # finished, not merged: the result, or None (read back from its file)
    it, more, nxt = group(chunks, cfg.shard_chunks), True, 0
    counts = {"shards": 0, "ran": 0, "reused": 0, "workers": set()}
    t0 = time.monotonic()
    while True:
        while more and len(refs) < cap and len(shards) - nxt < 4 * cap:
            sh = next(it, None)
            if sh is None:
                more = False
                break
            shards.append(sh)
            i = len(shards) - 1
            if (folder / f"{sh.name}.safetensors").exists():  # finished by an earlier, killed attempt
                done[i] = None
                counts["reused"] += 1
                continue
            refs[task.remote(spec, _slim(sh))] = i
            counts["ran"] += 1
        while nxt in done:
            sh = shards[nxt]
            res = done.pop(nxt) or load_result(folder, sh)
            if res is None:  # a file from another grouping: run it again
                refs[task.remote(spec, _slim(sh))] = nxt
                counts["ran"] += 1
                break
            _merge(cfg, run, sh, res, folder)
            counts["workers"].add(res["host"])
            shards[nxt], nxt = None, nxt + 1
            if preview and run.tokens_done >= cfg.preview_tokens and run.tokens_done < run.target:
                publish(cfg, run, complete=False)
                preview = False
            if on_progress:
                on_progress(Progress(run.tokens_done, run.target, run.docs_next, time.monotonic() - t0))
        if not refs:
            if more or nxt in done:
                continue
            break
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            i = refs.pop(ref)
            res = _result(ray, ref)
            save_result(folder, shards[i], res)
            point("shard")  # the fault matrix: killed with a shard's result saved, not merged
            done[i] = res if i == nxt else None  # a shard that must wait for earlier ones waits on disk
    counts["shards"] = len(shards)
    for f in folder.glob("*.safetensors"):  # results of another grouping, never merged
        f.unlink()
    if folder.exists():
        folder.rmdir()
    workers = counts.pop("workers") - {""}
    counts |= {"workers": len(workers), "hosts": len({w.rsplit(":", 1)[0] for w in workers})}
    log.info("ray: %d shards, %d run as tasks, %d reused from an earlier attempt; %d worker processes on %d hosts",
             counts["shards"], counts["ran"], counts["reused"], counts["workers"], counts["hosts"])
    return counts


def _merge(cfg, run: RunState, shard: Shard, res: dict, folder: Path) -> None:
    """A shard into the run: its chunks' rows into the index, its reducers into the run's, then the checkpoint
    (the shard's file goes only after it: a kill in between merges it again from the checkpoint before)."""
    for chunk, (tokens, norms) in zip(shard.chunks, res["rows"], strict=True):
        commit_chunk(cfg.db, run, chunk, tokens, norms)
    for g, red in run.reducers.items():
        st = dict(res["state"][g])
        log_ = st.pop("sum_log")
        part = LayerReducer(red.d, red.layer, red.cfg)
        part.load_state_dict(st)
        part.sum_log = list(log_.unbind(0))
        red.merge(part)
    save_checkpoint(cfg.db, run)
    (folder / f"{shard.name}.safetensors").unlink(missing_ok=True)
