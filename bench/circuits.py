"""Checking a stored attribution graph by intervention, with the model loaded: target ≤ 2 s for one node.

    .venv/bin/python bench/circuits.py --json [--db data/demo.duckdb] [--graph ID] [--nodes 10]

For each stored graph (or --graph), after loading the model and the graph's transcoder set: the time to open the
graph (checks plus the clean pass, once per graph: what the circuits page caches), then zero ablations of its
--nodes most influential feature nodes one at a time (each: the graph's prediction, the frozen replacement model
and its linearised form in one batched pass, the real model in another), and the ten-features table; p50 and p90
of the single-node times, and the bare `model(input_ids)` forward on the same tokens for scale. One JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from core.circuits.interventions import intervene_nodes, intervention_table, node_influence, open_graph
from core.circuits.nodes import from_index
from core.index.db import connect
from core.index.graphs import list_graphs
from core.model.load import load_model
from core.saes.transcoders import load_transcoder_set

TARGET_S = 2.0


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def one_graph(lm, info, db: str, n_nodes: int) -> dict:
    con = connect(db, read_only=True)
    try:
        nodes = from_index(con, info.graph_id)
    finally:
        con.close()
    ts = load_transcoder_set(info.transcoders)
    gm, t_open = timed(lambda: open_graph(lm, ts, nodes))
    infl = node_influence(nodes)
    feats = sorted(nodes.features(), key=lambda i: -float(infl[i]))[:n_nodes]
    times = []
    for i in feats:
        _, t = timed(lambda i=i: intervene_nodes(gm, [nodes.nodes[i].id], "zero"))
        times.append(t)
    table, t_table = timed(lambda: intervention_table(gm))
    ids = torch.tensor([nodes.tokens])
    with torch.inference_mode():
        lm.model(ids)
        _, t_fwd = timed(lambda: lm.model(ids))
    return {"graph_id": info.graph_id, "prompt": info.prompt, "tokens": len(nodes.tokens), "nodes": len(nodes.nodes),
            "open_s": round(t_open, 3), "single_node_p50_s": round(statistics.median(times), 3),
            "single_node_p90_s": round(sorted(times)[int(0.9 * (len(times) - 1))], 3),
            "table_s": round(t_table, 3), "forward_s": round(t_fwd, 3),
            "table_correlation": table.correlation}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="data/demo.duckdb")
    ap.add_argument("--graph", type=int, default=None)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    con = connect(a.db, read_only=True)
    try:
        graphs = [g for g in list_graphs(con) if a.graph in (None, g.graph_id)]
    finally:
        con.close()
    if not graphs:
        print(f"no stored graph in {a.db} (make demo stores some)", file=sys.stderr)
        return 2
    lm = load_model(graphs[0].model, attn="eager")  # as the dashboard loads it
    rows = [one_graph(lm, g, a.db, a.nodes) for g in graphs if g.model == graphs[0].model]
    out = {"model": graphs[0].model, "threads": a.threads, "target_s": TARGET_S, "graphs": rows,
           "single_node_p50_s": statistics.median(r["single_node_p50_s"] for r in rows),
           "met": all(r["single_node_p90_s"] <= TARGET_S for r in rows)}
    print(json.dumps(out, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
