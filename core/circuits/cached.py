"""Graphs the dashboard computes for a prompt no index holds: the circuits page asks for one by model, transcoder set,
prompt and targets (its URL), and the graph lands in $NEUROBOARD_CACHE/graphs/<key>/ — its file (wire.json), the
direct effects among its kept nodes (kept.safetensors, as the index stores them) and meta.json (what it is, its
scores). The served indexes stay read-only. The same URL finds the same folder again (the key is a hash of the four),
so a link to a computed graph reopens it, and a finding of it recomputes it where the cache is gone.

Reading needs NumPy only; computing loads torch (core.circuits.run's build, prune, score and file).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.circuits.explore import ExploreError, GraphDoc


def folder(model: str, transcoders: str, prompt: str, targets: list[str]) -> Path:
    """Where this graph is kept ($NEUROBOARD_CACHE as core.model.load.cache_dir reads it)."""
    blob = json.dumps([model, os.path.abspath(transcoders), prompt, list(targets)], ensure_ascii=False)
    root = Path(os.environ.get("NEUROBOARD_CACHE", Path.home() / ".cache" / "neuroboard"))
    return root / "graphs" / hashlib.sha256(blob.encode()).hexdigest()[:20]


def read(model: str, transcoders: str, prompt: str, targets: list[str]) -> tuple[GraphDoc, dict] | None:
    """(the graph, its meta) if it was computed, else None; ExploreError (one line) for files that do not read."""
    d = folder(model, transcoders, prompt, targets)
    if not (d / "meta.json").is_file():
        return None
    from safetensors.numpy import load_file

    try:
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        wire = json.loads((d / "wire.json").read_text(encoding="utf-8"))
        adjacency = load_file(str(d / "kept.safetensors"))["adjacency"]
    except (OSError, ValueError, KeyError) as e:
        raise ExploreError(f"the computed graph in {d} does not read ({str(e).splitlines()[0][:120]}); "
                           "delete the folder to compute it again") from None
    return GraphDoc(wire, list(meta["ids"]), adjacency), meta


def compute(lm, transcoders: str, prompt: str, targets: list[str], *, model: str | None = None,
            on_progress: Callable[[int, int], None] | None = None, ts=None) -> Path:
    """Build, prune and score the graph (core.circuits.run, its defaults) and keep it in its folder, written to a
    temporary folder first and renamed into place (a failed run leaves nothing). `ts`: the loaded set, if at hand.
    GraphError / SAEError (one line) for a prompt, target or set that does not fit."""
    from core.circuits.graph import prune, scores
    from core.circuits.run import GraphConfig, build, slug_of, wire_of
    from core.circuits.wire import node_ids, write_wire
    from core.saes.transcoders import check_set_for_model, load_transcoder_set

    model = model or lm.name
    d = folder(model, transcoders, prompt, targets)
    if ts is None:
        ts = load_transcoder_set(transcoders)
    check_set_for_model(ts, lm, full=True)
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        cfg = GraphConfig(model=model, transcoders=os.path.abspath(transcoders), prompt=prompt,
                          out=str(tmp / "wire.json"), target=list(targets))
        t0 = time.time()
        graph = build(lm, ts, cfg, on_progress)
        pruned = prune(graph, cfg.node_threshold, cfg.edge_threshold)
        rep, comp = scores(graph)
        doc = wire_of(graph, pruned, lm, ts, slug_of(prompt), cfg, (rep, comp))
        write_wire(doc, tmp / "wire.json")
        kept = [i for i in range(graph.n_nodes) if pruned.nodes[i]]
        shown = {n["node_id"] for n in doc["nodes"]}
        order = [(i, x) for i, x in zip(kept, node_ids(graph, kept), strict=True) if x in shown]
        idx = [i for i, _ in order]
        from safetensors.numpy import save_file

        save_file({"adjacency": graph.adjacency[idx][:, idx].detach().float().numpy().astype(np.float32)},
                  str(tmp / "kept.safetensors"))
        meta = {"model": model, "transcoders": cfg.transcoders, "scan": doc["metadata"]["scan"], "prompt": prompt,
                "targets": list(targets), "ids": [x for _, x in order],
                "scores": {"replacement": rep, "completeness": comp}, "seconds": round(time.time() - t0, 2),
                "created_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        shutil.rmtree(d, ignore_errors=True)
        tmp.replace(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d
