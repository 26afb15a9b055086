"""Reads for the labels of many features at once (an attribution graph's nodes, core.circuits.labels): which run
indexed a transcoder set's layers, their stored explanations and their top examples, one query for all of them."""

from __future__ import annotations


def saes_by_path(con, paths: list[str], names: list[str]) -> list[tuple[int, int, str, str, bool]]:
    """(run_id, sae_id, path, name, run has results) of every indexed SAE whose file is one of `paths` or whose name
    is one of `names`, newest run first."""
    rows = con.execute(
        "SELECT s.run_id, s.sae_id, s.path, s.name, r.results_tokens IS NOT NULL FROM run_saes s "
        "JOIN runs r USING (run_id) WHERE list_contains(?, s.path) OR list_contains(?, s.name) "
        "ORDER BY s.run_id DESC, s.sae_id", [paths, names]).fetchall()
    return [(int(a), int(b), str(c), str(d), bool(e)) for a, b, c, d, e in rows]


def explanations_of(con, run_id: int, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """{(group, unit): its explanation} for (group, unit) pairs (group: a layer, or -s for SAE s) with an 'ok'
    explanation, in one query."""
    if not pairs:
        return {}
    rows = con.execute(
        "SELECT e.layer, e.unit, e.explanation FROM explanations e JOIN (SELECT unnest(?) AS g, unnest(?) AS u) w "
        "ON e.layer = w.g AND e.unit = w.u WHERE e.run_id = ? AND e.status = 'ok' AND e.explanation IS NOT NULL",
        [[g for g, _ in pairs], [u for _, u in pairs], run_id]).fetchall()
    return {(int(g), int(u)): str(e) for g, u, e in rows}


def top_rows(con, run_id: int, pairs: list[tuple[int, int]], k: int) -> list[tuple]:
    """(group, unit, rank, doc_id, position, activation, context) of the top `k` examples with activation > 0 of
    (group, unit) pairs, by group, unit and rank (context: the stored activations around the example, or None), in
    one query."""
    if not pairs:
        return []
    return con.execute(
        "SELECT t.layer, t.unit, t.rank, t.doc_id, t.position, t.activation, t.context FROM top_examples t "
        "JOIN (SELECT unnest(?) AS g, unnest(?) AS u) w ON t.layer = w.g AND t.unit = w.u "
        "WHERE t.run_id = ? AND t.rank < ? AND t.activation > 0 ORDER BY t.layer, t.unit, t.rank",
        [[g for g, _ in pairs], [u for _, u in pairs], run_id, k]).fetchall()
