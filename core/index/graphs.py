"""Attribution graphs in the index (migration 009): written once by `neuroboard graph --db`, read by pages and
findings."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


@dataclass
class GraphInfo:
    graph_id: int
    model: str
    transcoders: str
    scan: str
    prompt: str
    config: dict
    scores: dict
    created_at: str


def add_graph(con, model_id: int, *, transcoders: str, scan: str, prompt: str, config: dict, scores: dict,
              wire: dict, kept_ids: list[str], kept_adjacency) -> int:
    """Store a graph in one statement; its id. `kept_adjacency` (n, n) float32 [target, source] over `kept_ids`."""
    from safetensors.torch import save as st_save

    blob = st_save({"adjacency": kept_adjacency.float().contiguous()},
                   metadata={"node_ids": json.dumps(kept_ids)})
    graph_id = con.execute("SELECT coalesce(max(graph_id), 0) + 1 FROM graphs").fetchone()[0]
    con.execute("INSERT INTO graphs (graph_id, model_id, transcoders, scan, prompt, config, scores, wire, kept) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [graph_id, model_id, transcoders, scan, prompt, json.dumps(config), json.dumps(scores),
                 json.dumps(wire, allow_nan=False), blob])
    return int(graph_id)


def list_graphs(con, model: str | None = None) -> list[GraphInfo]:
    rows = con.execute("SELECT g.graph_id, m.name, g.transcoders, g.scan, g.prompt, g.config, g.scores, "
                       "CAST(g.created_at AS VARCHAR) FROM graphs g JOIN models m USING (model_id) "
                       "WHERE ? IS NULL OR m.name = ? ORDER BY g.graph_id", [model, model]).fetchall()
    return [GraphInfo(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7]) for r in rows]


def graph_info(con, graph_id: int) -> GraphInfo | None:
    return next((g for g in list_graphs(con) if g.graph_id == graph_id), None)


def graph_wire(con, graph_id: int) -> dict | None:
    row = con.execute("SELECT wire FROM graphs WHERE graph_id = ?", [graph_id]).fetchone()
    return json.loads(row[0]) if row else None


def graph_kept(con, graph_id: int):
    """(kept node ids, (n, n) torch adjacency among them) of a stored graph."""
    import torch

    kept = graph_kept_array(con, graph_id)
    return None if kept is None else (kept[0], torch.from_numpy(kept[1]))


def graph_kept_array(con, graph_id: int) -> tuple[list[str], np.ndarray] | None:
    """(kept node ids, (n, n) float32 adjacency [target, source] among them) without torch (pages read it)."""
    from safetensors.numpy import load as np_load

    row = con.execute("SELECT kept FROM graphs WHERE graph_id = ?", [graph_id]).fetchone()
    if not row:
        return None
    raw = bytes(row[0])
    n = int.from_bytes(raw[:8], "little")  # safetensors: an 8-byte header length, then the JSON header
    ids = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["node_ids"])
    return ids, np_load(raw)["adjacency"]
