"""Reads for the labels of many features at once (an attribution graph's nodes, core.circuits.labels): which run
indexed a transcoder set's layers, their stored explanations and their top examples, one query per SAE."""

from __future__ import annotations


def saes_by_path(con, paths: list[str], names: list[str]) -> list[tuple[int, int, str, str, bool]]:
    """(run_id, sae_id, path, name, run has results) of every indexed SAE whose file is one of `paths` or whose name
    is one of `names`, newest run first."""
    rows = con.execute(
        "SELECT s.run_id, s.sae_id, s.path, s.name, r.results_tokens IS NOT NULL FROM run_saes s "
        "JOIN runs r USING (run_id) WHERE list_contains(?, s.path) OR list_contains(?, s.name) "
        "ORDER BY s.run_id DESC, s.sae_id", [paths, names]).fetchall()
    return [(int(a), int(b), str(c), str(d), bool(e)) for a, b, c, d, e in rows]


def explanations_of(con, run_id: int, group: int, units: list[int]) -> dict[int, str]:
    """{unit: its explanation} for the units of a group (a layer, or -s for SAE s) with an 'ok' explanation."""
    rows = con.execute("SELECT unit, explanation FROM explanations WHERE run_id = ? AND layer = ? AND status = 'ok' "
                       "AND explanation IS NOT NULL AND list_contains(?, unit)", [run_id, group, units]).fetchall()
    return {int(u): str(e) for u, e in rows}


def top_rows(con, run_id: int, group: int, units: list[int], k: int) -> list[tuple]:
    """(unit, rank, doc_id, position, activation, context) of the units' top `k` examples with activation > 0, by
    unit and rank (context: the stored activations around the example, or None)."""
    return con.execute("SELECT unit, rank, doc_id, position, activation, context FROM top_examples WHERE run_id = ? "
                       "AND layer = ? AND rank < ? AND activation > 0 AND list_contains(?, unit) ORDER BY unit, rank",
                       [run_id, group, k, units]).fetchall()
