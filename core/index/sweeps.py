"""Steering sweeps in the index (migration 006): written once by `neuroboard sweep`, read by the steering page."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class SweepInfo:
    sweep_id: int
    model: str
    name: str
    config: dict
    created_at: str
    direction_layer: int | None = None
    """The block the swept direction was made at (where the steering page opens it)."""


def add_sweep(con, model_id: int, name: str, config: dict, result: dict) -> int:
    """Store a finished sweep in one statement; its id."""
    sweep_id = con.execute("SELECT coalesce(max(sweep_id), 0) + 1 FROM sweeps").fetchone()[0]
    con.execute("INSERT INTO sweeps (sweep_id, model_id, name, config, result) VALUES (?, ?, ?, ?, ?)",
                [sweep_id, model_id, name, json.dumps(config), json.dumps(result)])
    return int(sweep_id)


def list_sweeps(con, model: str | None = None) -> list[SweepInfo]:
    rows = con.execute("SELECT s.sweep_id, m.name, s.name, s.config, CAST(s.created_at AS VARCHAR), "
                       "TRY_CAST(json_extract(s.result, '$.direction_layer') AS INTEGER) FROM sweeps s "
                       "JOIN models m USING (model_id) WHERE ? IS NULL OR m.name = ? ORDER BY s.sweep_id",
                       [model, model]).fetchall()
    return [SweepInfo(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]


def sweep_result(con, sweep_id: int) -> dict | None:
    row = con.execute("SELECT result FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchone()
    return json.loads(row[0]) if row else None
