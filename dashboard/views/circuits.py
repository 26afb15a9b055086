"""What the circuits page reads (no streamlit, no torch): the index's stored graphs, one graph with the direct effects
among its kept nodes (core.circuits.explore.GraphDoc), the transcoder sets a new graph may use, and the indexed
units of a set's features (so a feature node links to its feature page and shows its top examples).

The sets a URL may name come from an allow-list, as models do (dashboard.cache.models): the sets of the index's
stored graphs, the sets whose features a run indexed, and those given in $NEUROBOARD_TRANSCODERS (os.pathsep-
separated). A link can never make the server read an arbitrary folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.circuits.explore import ExploreError, GraphDoc
from core.index import graphs as ig
from core.index import queries
from dashboard.views.units import read_index

SETS_ENV = "NEUROBOARD_TRANSCODERS"


def _list(cur) -> list[ig.GraphInfo]:
    import duckdb

    try:
        return ig.list_graphs(cur)
    except duckdb.CatalogException:  # an index whose schema predates graphs (read-only: not migrated)
        return []


def graphs(path) -> list[ig.GraphInfo]:
    """The index's stored graphs, oldest first."""
    return read_index(path, _list)


def _doc(cur, graph_id: int) -> GraphDoc | None:
    try:
        wire, kept = ig.graph_wire(cur, graph_id), ig.graph_kept_array(cur, graph_id)
    except (ValueError, KeyError) as e:  # a damaged row: its JSON or its safetensors blob
        raise ExploreError(f"the stored graph does not read ({str(e).splitlines()[0][:120]})") from None
    return None if wire is None or kept is None else GraphDoc(wire, kept[0], kept[1])


def graph_doc(path, graph_id: int) -> GraphDoc | None:
    """A stored graph with its kept adjacency; None if the index has no such graph. ExploreError (one line) when
    its file and its adjacency disagree."""
    return read_index(path, _doc, graph_id)


def _same(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def transcoder_sets(path) -> list[str]:
    """The set folders a new graph may use (module docstring), each once."""
    names = [g.transcoders for g in graphs(path)]
    names += [str(Path(s.path).parent) for s in read_index(path, queries.run_saes, None)
              if s.format == "transcoder_set"]
    names += [p for p in os.environ.get(SETS_ENV, "").split(os.pathsep) if p]
    out: list[str] = []
    for n in names:
        if not any(_same(n, o) for o in out):
            out.append(n)
    return out


@dataclass(frozen=True)
class FeatureUnits:
    """Where a set's features are indexed: run and SAE id per layer."""

    run_id: int
    sae_ids: dict[int, int]
    """layer -> the run's SAE id of that layer's transcoder."""


def feature_units(path, transcoders: str) -> FeatureUnits | None:
    """The latest complete run that indexed the features of the set `transcoders` (its layer files), or None."""
    runs = {r.run_id: r for r in read_index(path, queries.list_runs) if r.has_results}
    best: dict[int, dict[int, int]] = {}
    for s in read_index(path, queries.run_saes, None):
        if s.run_id in runs and s.format == "transcoder_set" and _same(str(Path(s.path).parent), transcoders):
            layer = int(s.site.rsplit(".", 1)[-1])
            best.setdefault(s.run_id, {})[layer] = s.sae_id
    if not best:
        return None
    run_id = max(best)
    return FeatureUnits(run_id, best[run_id])


def node_labels(path, wire: dict, transcoders: str, unemb) -> dict:
    """{node id: core.circuits.labels.Label} of the graph's feature nodes (index reads; `unemb` from the model)."""
    from core.circuits.labels import node_labels as labels_of

    return read_index(path, labels_of, wire, transcoders, unemb)


def label_text(lab) -> str:
    """A Label as one short line: what the feature responds to, then what it writes."""
    writes = ", ".join(repr(t) for t in lab.writes[:3])
    return f"{lab.text} → writes {writes}" if lab.text else f"writes {writes}" if writes else ""
