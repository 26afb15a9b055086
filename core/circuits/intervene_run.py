"""`neuroboard graph-intervene`: ablate, scale or steer nodes of a graph (a graph file, or a graph stored in an
index) and print the target logit's change the graph predicts beside the changes measured in the frozen replacement
model and in the real model (core.circuits.interventions).

Everything the user gives is checked before the model loads where it can be (the op, the graph, the node ids), and
the graph against the model and transcoder set after (core.circuits.interventions.open_graph). Nothing is written.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.circuits.interventions import intervene_nodes, intervention_table, open_graph, parse_op
from core.circuits.nodes import GraphNodes, from_index, from_wire
from core.circuits.prompt import GraphError
from core.circuits.wire import read_wire


@dataclass
class GraphInterveneConfig:
    graph: str
    """A graph file (.json, as `neuroboard graph` writes it) or, with --db, the id of a graph stored in that index."""
    nodes: str = ""
    """The node ids to intervene on together, comma-separated (the graph file's node_id values, e.g. 3_1207_5)."""
    op: str = "zero"
    """zero (ablate), scale:A (activation or error vector times A) or steer:A (activation plus A times the feature's
    largest activation in the graph)."""
    db: str | None = None
    """The index holding the graph (then --graph is its id)."""
    model: str | None = None
    """The model (default: the one the graph names)."""
    transcoders: str | None = None
    """The transcoder set folder (default: the one a stored graph names; a graph file names only its set's scan)."""
    table: bool = False
    """Also zero the graph's ten most influential features one at a time: predicted vs measured, and correlations."""
    top: int = 5
    """How many tokens gained and lost to list."""
    threads: int | None = None
    """torch threads (default: torch's)."""


def node_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def load_nodes(cfg: GraphInterveneConfig) -> GraphNodes:
    """The graph's nodes from the index (--db) or the graph file; GraphError (one line) for a bad reference."""
    if cfg.db:
        if not cfg.graph.strip().isdigit():
            raise GraphError(f"--graph {cfg.graph!r}: with --db, give a stored graph's id (a number)")
        from core.index.db import connect

        con = connect(cfg.db, read_only=True)
        try:
            return from_index(con, int(cfg.graph))
        finally:
            con.close()
    if cfg.graph.strip().isdigit() and not Path(cfg.graph).exists():
        raise GraphError(f"--graph {cfg.graph}: a stored graph's id needs --db INDEX")
    return from_wire(read_wire(Path(cfg.graph).expanduser()))


def sources(cfg: GraphInterveneConfig, nodes: GraphNodes) -> tuple[str, str]:
    """(model, transcoder set folder): the flags, else what the graph names."""
    model = cfg.model or nodes.model
    if not model:
        raise GraphError("the graph does not name its model: give --model")
    tset = cfg.transcoders or nodes.transcoders
    if not tset or not Path(tset).expanduser().is_dir():
        raise GraphError(f"the graph names its transcoder set {tset!r}, which is not a folder here: give "
                         "--transcoders DIR")
    return model, str(Path(tset).expanduser())


def load(model: str, tset: str):
    """(model, transcoder set) checked against each other; one-line errors."""
    from core.model.load import load_model
    from core.saes.transcoders import check_set_for_model, load_transcoder_set

    ts = load_transcoder_set(tset)
    lm = load_model(model)
    check_set_for_model(ts, lm, full=True)
    return lm, ts


def run_intervention(cfg: GraphInterveneConfig) -> dict:
    """The intervention (and the table with --table) as one dict, what --json prints."""
    ids, op = node_list(cfg.nodes), parse_op(cfg.op)
    if not ids and not cfg.table:
        raise GraphError("give --nodes ID,ID (node ids of the graph) or --table")
    if cfg.top < 1:
        raise GraphError("--top must be at least 1")
    nodes = load_nodes(cfg)
    if ids:
        nodes.select(ids)
    model, tset = sources(cfg, nodes)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    lm, ts = load(model, tset)
    t1 = time.perf_counter()
    gm = open_graph(lm, ts, nodes)
    t2 = time.perf_counter()
    effect = intervene_nodes(gm, ids, op, top=cfg.top) if ids else None
    t3 = time.perf_counter()
    table = intervention_table(gm) if cfg.table else None
    seconds = {"load": t1 - t0, "prepare": t2 - t1, "intervention": t3 - t2}
    if table:
        seconds["table"] = time.perf_counter() - t3
    return {"graph": cfg.graph, "model": model, "transcoders": tset, "edges": nodes.edges,
            "effect": asdict(effect) if effect else None, "table": asdict(table) if table else None,
            "seconds": {k: round(v, 3) for k, v in seconds.items()}}


def describe(out: dict) -> list[str]:
    """The result as lines for a person."""
    lines = []
    e = out["effect"]
    if e:
        t = e["target"]
        lines.append(f"{e['op']} {', '.join(e['nodes'])}: target {t['token']!r} logit (minus the mean) changes by "
                     f"{t['predicted']:+.4f} predicted ({out['edges']}), {t['linearised']:+.4f} linearised, "
                     f"{t['replacement']:+.4f} replacement model, {t['real']:+.4f} real model")
        lines.append("gained: " + ", ".join(f"{s['token']!r} {s['p_before']:.3f}->{s['p_after']:.3f}"
                                            for s in e["gained"]))
        lines.append("lost: " + ", ".join(f"{s['token']!r} {s['p_before']:.3f}->{s['p_after']:.3f}"
                                          for s in e["lost"]))
    tb = out["table"]
    if tb:
        lines.append(f"zero each of the {len(tb['rows'])} most influential features; target {tb['target']!r}:")
        lines += [f"  {r['node']:>16} influence {r['influence']:.3f}  predicted {r['predicted']:+.4f}  "
                  f"replacement {r['replacement']:+.4f}  real {r['real']:+.4f}" for r in tb["rows"]]
        lines.append("correlation with the prediction: " + ", ".join(
            f"{k} {'-' if v is None else format(v, '.3f')}" for k, v in tb["correlation"].items()))
    return lines

