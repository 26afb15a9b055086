"""Everything a unit (neuron) page shows, gathered from the index in one short read-only visit. No streamlit."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.index import queries
from core.index.db import connect

LOCK_WAIT_S = 2.0


@dataclass
class Example:
    doc_id: int
    position: int
    activation: float
    seq: list[int]
    """Token ids the model saw, from the window start through the last shown token."""
    shown: list[str]
    """Display strings of the shown tokens (the tail of `seq`)."""
    focus: int
    """Index of the example's token within `shown`."""
    values: list[float] = field(default_factory=list)
    """The unit's activation on each shown token (filled by a live pass)."""


@dataclass
class UnitView:
    run: queries.RunInfo
    layer: int
    unit: int
    stats: dict
    top: list[Example]
    intervals: list[dict]
    """[{interval, lo, hi, frac_est, exact, examples: [Example]}]"""


def _example(con, run: queries.RunInfo, doc_id: int, pos: int, act: float, window: int) -> Example:
    T = int(run.config["context_len"])
    ws = queries.window_start(run, pos)
    rows = queries.context(con, run.run_id, doc_id, ws, min(pos + window, ws + T - 1))
    first = max(ws, pos - window)
    shown = [(p, d) for p, _, d in rows if p >= first]
    return Example(doc_id=doc_id, position=pos, activation=float(act), seq=[t for _, t, _ in rows],
                   shown=[d for _, d in shown], focus=[p for p, _ in shown].index(pos))


def unit_view(path, run_id: int, layer: int, unit: int, k: int = 10, window: int = 12) -> UnitView:
    """Raises queries.QueryError for an unknown run / layer / unit, IndexError_ subclasses for the file."""
    con = connect(path, read_only=True, wait_s=LOCK_WAIT_S)
    try:
        run = queries.check_unit(con, run_id, layer, unit)
        stats = queries.unit_stats(con, run_id, layer, unit)
        top = [_example(con, run, t["doc_id"], t["position"], t["activation"], window)
               for t in queries.top_examples(con, run_id, layer, unit, k=k, window=0)]
        ivs = queries.interval_samples(con, run_id, layer, unit)
        for iv in ivs:
            iv["examples"] = [_example(con, run, s["doc_id"], s["position"], s["activation"], window)
                              for s in iv.pop("samples")]
        return UnitView(run=run, layer=layer, unit=unit, stats=stats, top=top, intervals=ivs)
    finally:
        con.close()


def _read(path, query, *args):
    """Run one named query in a short read-only visit to the index."""
    con = connect(path, read_only=True, wait_s=LOCK_WAIT_S)
    try:
        return query(con, *args)
    finally:
        con.close()


def layer_table(path, run_id: int, layer: int) -> list[dict]:
    return _read(path, queries.layer_units, run_id, layer)


def token_search(path, run_id: int, token: str) -> list[dict]:
    return _read(path, queries.search_token, run_id, token)


def interesting(units: list[dict], seed: int) -> int:
    """A random unit among the layer's most selective (dominance >= 0.5, else the top tenth by max)."""
    import random

    pool = [u["unit"] for u in units if (u["dominance"] or 0) >= 0.5]
    if not pool:
        pool = [u["unit"] for u in sorted(units, key=lambda u: -u["max"])[: max(1, len(units) // 10)]]
    return random.Random(seed).choice(pool)
