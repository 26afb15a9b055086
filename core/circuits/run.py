"""`neuroboard graph`: the attribution graph of a prompt, written as a graph file and optionally stored in an index.

Everything that can be wrong with the input is checked before anything is written: the thresholds and limits, the
transcoder set (readable, a transcoder for every layer of the model, widths equal to the model's, known hooks), the
model's structure, the prompt (not empty, within the context) and each target (one token).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.circuits.attribute import AttributionConfig, attribute
from core.circuits.graph import Graph, prune, scores
from core.circuits.prompt import GraphError
from core.circuits.wire import VIEWER_INDEX, add_to_viewer_index, node_ids, to_wire, write_wire

log = logging.getLogger(__name__)


@dataclass
class GraphConfig:
    model: str
    """Model: a built-in name (smollm2-135m), a .gguf file, a model folder or a hub id."""
    transcoders: str
    """A transcoder set folder in circuit-tracer's format (config.yaml + layer_{i}.safetensors), one per layer."""
    prompt: str
    """The text whose next-token prediction the graph explains."""
    out: str
    """Where to write the graph file (JSON that Neuronpedia's graph page and circuit-tracer's viewer read)."""
    target: list[str] = field(default_factory=list)
    """A logit target token, e.g. ' Paris' (repeatable; default: the most probable next tokens)."""
    max_logits: int = 10
    """At most this many logit targets when none are given."""
    logit_prob: float = 0.95
    """Logit targets are taken, most probable first, until their probabilities sum to this."""
    max_feature_nodes: int | None = 7500
    """At most this many feature nodes, the most influential first (circuit-tracer's CLI default)."""
    node_threshold: float = 0.8
    """Keep nodes up to this share of cumulative influence (tokens and logits always)."""
    edge_threshold: float = 0.98
    """Keep edges up to this share of cumulative edge influence."""
    batch_size: int = 64
    """Targets per backward pass (copies of the prompt in one forward pass); on smollm2 64 is as fast as 256 and
    holds 1.5 GB less."""
    db: str | None = None
    """Also store the graph in this index (its id is printed)."""
    slug: str | None = None
    """The graph's name in the file (default: the file's name without .json). The file's folder gets
    graph-metadata.json, the list circuit-tracer's viewer reads, and the viewer opens the graph as SLUG.json."""
    threads: int | None = None
    """torch threads (default: torch's)."""


def check_config(cfg: GraphConfig) -> None:
    if cfg.max_feature_nodes is not None and cfg.max_feature_nodes < 1:
        raise GraphError(f"--max-feature-nodes {cfg.max_feature_nodes}: a graph needs at least one feature node")
    for name in ("node_threshold", "edge_threshold", "logit_prob"):
        v = getattr(cfg, name)
        if not 0 < v <= 1:
            raise GraphError(f"--{name.replace('_', '-')} {v}: must be in (0, 1]")
    if cfg.max_logits < 1 or cfg.batch_size < 1:
        raise GraphError("--max-logits and --batch-size must be at least 1")
    out = Path(cfg.out).expanduser()
    if out.is_dir() or not out.parent.is_dir():
        raise GraphError(f"--out {cfg.out}: expected a file in an existing folder")


def slug_of(prompt: str) -> str:
    words = "".join(c if c.isalnum() else "-" for c in prompt.lower()).split("-")
    return "-".join(w for w in words if w)[:48] or "graph"


def load_inputs(cfg: GraphConfig):
    """(model, transcoder set) checked against each other; one-line errors."""
    from core.model.load import load_model
    from core.saes.transcoders import check_set_for_model, load_transcoder_set

    ts = load_transcoder_set(cfg.transcoders)
    lm = load_model(cfg.model)
    check_set_for_model(ts, lm, full=True)
    return lm, ts


def build(lm, ts, cfg: GraphConfig, on_progress: Callable[[int, int], None] | None = None) -> Graph:
    acfg = AttributionConfig(max_logits=cfg.max_logits, logit_prob=cfg.logit_prob,
                             max_features=cfg.max_feature_nodes, batch_size=cfg.batch_size)
    scan = ts.scan or Path(ts.path or cfg.transcoders).name
    return attribute(lm, ts.transcoders, cfg.prompt, acfg, targets=cfg.target or None, on_progress=on_progress,
                     model_name=cfg.model, scan=scan)


def make_graph(cfg: GraphConfig, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Build, prune, score, write (and store) the graph; a summary dict (what --json prints)."""
    check_config(cfg)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    lm, ts = load_inputs(cfg)
    return write_and_store(cfg, lm, build(lm, ts, cfg, on_progress), ts=ts)


def wire_of(graph: Graph, pruned, lm, ts, slug: str, cfg: GraphConfig, score: tuple[float, float]) -> dict:
    """The graph's file, with the tokens each kept feature writes (so opening it needs no unembedding product)."""
    from core.circuits.labels import graph_writes, unembedding

    kept = [i for i in range(graph.n_nodes) if pruned.nodes[i]]
    return to_wire(graph, pruned, slug=slug, node_threshold=cfg.node_threshold, edge_threshold=cfg.edge_threshold,
                   scores=score, writes=graph_writes(graph, kept, ts, unembedding(lm)))


def write_and_store(cfg: GraphConfig, lm, graph: Graph, note: str | None = None, ts=None) -> dict:
    """Prune and score `graph`, write its file, store it when cfg.db (with `note`: why the model is right). `ts`:
    the graph's transcoder set when loaded (else read from cfg.transcoders)."""
    from core.saes.transcoders import load_transcoder_set

    pruned = prune(graph, cfg.node_threshold, cfg.edge_threshold)
    rep, comp = scores(graph)
    out = Path(cfg.out).expanduser()
    slug = cfg.slug or out.stem
    doc = wire_of(graph, pruned, lm, ts if ts is not None else load_transcoder_set(cfg.transcoders), slug, cfg,
                  (rep, comp))
    out = write_wire(doc, out)
    viewer = add_to_viewer_index(out.parent, doc["metadata"])
    if viewer is None:
        log.warning("%s is not a graph list circuit-tracer's viewer reads; left as it is", out.parent / VIEWER_INDEX)
    summary = {"out": str(out), "slug": slug, "prompt_tokens": graph.token_strs,
               "targets": [{"token": s, "id": i, "prob": float(p)}
                           for s, i, p in zip(graph.logit_strs, graph.logit_ids, graph.logit_probs, strict=True)],
               "active_features": len(graph.activations), "feature_nodes": graph.n_features,
               "kept_nodes": len(doc["nodes"]), "links": len(doc["links"]), "replacement_score": rep,
               "completeness_score": comp, "seconds": graph.settings["seconds_total"],
               "batch_size": cfg.batch_size, "graph_id": None,
               "viewer_index": str(viewer) if viewer else None}
    if cfg.db:
        score = {"replacement": rep, "completeness": comp}
        summary["graph_id"] = store(cfg, lm, graph, pruned, doc, score, note)
    return summary


def store(cfg: GraphConfig, lm, graph: Graph, pruned, doc: dict, score: dict, note: str | None = None) -> int:
    """The graph into the index (migration 009), in one transaction; its id."""
    from core.index import writer
    from core.index.db import connect, transaction
    from core.index.graphs import add_graph
    from core.model.tokens import vocab_strings

    kept = [i for i in range(graph.n_nodes) if pruned.nodes[i]]
    ids = {n["node_id"] for n in doc["nodes"]}
    by_index = {i: node for i, node in zip(kept, node_ids(graph, kept), strict=True) if node in ids}
    order = list(by_index)
    config = asdict(cfg) | {"settings": graph.settings, "n_layers": graph.n_layers, "tokens": graph.tokens,
                            "note": note}
    con = connect(cfg.db)
    try:
        with transaction(con):
            model_id = writer.ensure_model(con, lm.info(), vocab_strings(lm.tokenizer))
            return add_graph(con, model_id, transcoders=os.path.abspath(cfg.transcoders), scan=doc["metadata"]["scan"],
                             prompt=cfg.prompt, config=config, scores=score, wire=doc,
                             kept_ids=[by_index[i] for i in order],
                             kept_adjacency=graph.adjacency[order][:, order])
    finally:
        con.close()
