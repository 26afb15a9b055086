"""What unit pages read, each on a cursor of the shared read-only connection (core.index.pool). No streamlit."""

from __future__ import annotations

import random

import numpy as np

from core.index import queries
from core.index.pool import reading
from core.units.kinds import source
from core.units.sources import Example, UnitView

LOCK_WAIT_S = 2.0


def read_index(path, query, *args):
    """Run one named query on a cursor of the shared read-only connection (core.index.pool: closed when reads
    pause, so an extraction in another process gets its write lock)."""
    with reading(path, wait_s=LOCK_WAIT_S) as cur:
        return query(cur, *args)


def unit_view(path, kind: str, run_id: int, layer: int, unit: int, k: int = 10, window: int = 12) -> UnitView:
    """Raises queries.QueryError for an unknown run / layer / unit, IndexFileError subclasses for the file."""
    return read_index(path, source(kind).gather, run_id, layer, unit, k, window)


def vocab(path, model_id: int) -> list[str]:
    return read_index(path, queries.vocab, model_id)


def layer_table(path, run_id: int, layer: int) -> list[dict]:
    return read_index(path, queries.layer_units, run_id, layer)


def explanation(path, run_id: int, group: int, unit: int) -> dict | None:
    """The unit's stored explanation and scores (core.index.explanations; group -s for SAE s), or None."""
    from core.index.explanations import get_one

    return read_index(path, get_one, run_id, group, unit)


def explanation_count(path) -> int:
    from core.index.explanations import count

    return read_index(path, count)


def search_explanations(path, query: str, k: int = 20) -> list[dict]:
    """Explanations matching `query` by meaning and keyword (core.autointerp.search)."""
    from core.autointerp.search import search

    return read_index(path, search, query, k)


def token_search(path, run_id: int, token: str) -> list[dict]:
    return read_index(path, queries.search_token, run_id, token)


def shown_values(ex: Example, window: int, live: np.ndarray | None = None) -> list[float]:
    """The unit's activation on each shown token of `ex` (core.units.sources.Example.shown_values)."""
    return ex.shown_values(live)


def interesting(units: list[dict], seed: int) -> int:
    """A random unit among the layer's most selective (dominance >= 0.5, else the top tenth by max)."""
    pool = [u["unit"] for u in units if (u["dominance"] or 0) >= 0.5]
    if not pool:
        pool = [u["unit"] for u in sorted(units, key=lambda u: -u["max"])[: max(1, len(units) // 10)]]
    return random.Random(seed).choice(pool)
