"""The circuits page's snapshot, computed from its URL alone (core.findings.views dispatches here):

    /circuits?graph=ID&logit&pinned&groups              a graph stored in the index (--db)
    /circuits?graph=new&model&set&prompt&target&...     a graph the page computed (core.circuits.cached; computed
                                                        again with the model when the cache no longer holds it)

The snapshot is the subgraph of the pinned nodes and supernodes (with nothing pinned, the nodes on the strongest
paths into the chosen logit) as core.circuits.explore.snapshot gives it: the nodes as the graph file has them, every
direct effect among them, the supernodes with their summed effects, and the strongest paths. Its recheck reads the
same graph again: a stored graph replaced, or a computed graph that comes out differently, shows as a difference.
"""

from __future__ import annotations

from collections.abc import Callable

from core.circuits import cached
from core.circuits.explore import ExploreError, GraphDoc, view_state
from core.circuits.explore import snapshot as explore_snapshot
from core.findings.manifest import manifest


def _stored(db: str | None, raw: str) -> tuple[GraphDoc, dict]:
    from core.index.db import connect
    from core.index.graphs import graph_info, graph_kept_array, graph_wire

    if not db:
        raise ExploreError("this view reads an index: give the index file (--db)")
    try:
        graph_id = int(raw)
    except ValueError:
        raise ExploreError(f"graph={raw!r} is not a graph id") from None
    con = connect(db, read_only=True)
    try:
        info, wire, kept = graph_info(con, graph_id), graph_wire(con, graph_id), graph_kept_array(con, graph_id)
    finally:
        con.close()
    if info is None or wire is None or kept is None:
        raise ExploreError(f"the index stores no graph {graph_id}")
    meta = {"graph_id": graph_id, "model": info.model, "transcoders": info.transcoders, "prompt": info.prompt,
            "targets": info.config.get("target") or [], "scores": info.scores, "created_at": info.created_at}
    return GraphDoc(wire, kept[0], kept[1]), meta


def _computed(params: dict, load: Callable | None) -> tuple[GraphDoc, dict]:
    model, tset, prompt = params.get("model"), params.get("set"), params.get("prompt", "")
    if not model or not tset or not prompt.strip():
        raise ExploreError("a new graph's view needs model=, set= and prompt= (or graph=ID of a stored one)")
    targets = [params["target"]] if params.get("target") else []
    got = cached.read(model, tset, prompt, targets)
    if got is None:
        if load is None:
            from core.model.load import load_model as load
        cached.compute(load(model), tset, prompt, targets, model=model)
        got = cached.read(model, tset, prompt, targets)
    doc, meta = got
    return doc, {k: meta[k] for k in ("model", "transcoders", "prompt", "targets", "scores", "created_at")} | {
        "graph_id": None}


def snapshot(params: dict, db: str | None = None, load: Callable | None = None) -> tuple[dict, dict]:
    """(snapshot, manifest) of a circuits URL (module docstring); ExploreError (one line) when it names no graph."""
    raw = params.get("graph")
    doc, meta = _stored(db, raw) if raw not in (None, "", "new") else _computed(params, load)
    state, _ = view_state(doc, params)
    snap = explore_snapshot(doc, state) | {"graph": meta}
    return snap, manifest("circuits", params) | {"graph": meta}
