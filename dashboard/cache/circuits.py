"""The circuits page's cached reads and its background graph jobs (shared by every session).

A stored graph is read once per (index, graph, creation time) and kept. A new graph (model, transcoder set, prompt,
targets) is computed by a worker thread of the server process — one graph at a time, on the shared loaded model
(dashboard.cache.models), its hooked passes serialised by the model's lock — into the graph cache
(core.circuits.cached), never into a served index. A page polls `job()` for progress and opens the graph from the
cache once it is there; every session asking for the same graph shares one job.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from core.circuits import cached
from core.circuits.explore import GraphDoc
from core.errors import first_line
from dashboard.cache.worker import Serial
from dashboard.views import circuits as cv


@st.cache_resource(max_entries=16, show_spinner=False)
def stored_doc(path: str, graph_id: int, created_at: str) -> GraphDoc | None:
    """A stored graph (`created_at` tells a replaced index's graph of the same id apart)."""
    return cv.graph_doc(path, graph_id)


@st.cache_resource(max_entries=16, show_spinner=False)
def computed_doc(model: str, transcoders: str, prompt: str, targets: tuple[str, ...], stamp: float):
    """(graph, meta) of a computed graph, or None; `stamp`: its folder's modification time."""
    return cached.read(model, transcoders, prompt, list(targets))


def computed(model: str, transcoders: str, prompt: str, targets: list[str]):
    d = cached.folder(model, transcoders, prompt, targets)
    try:
        stamp = (d / "meta.json").stat().st_mtime
    except OSError:
        return None
    return computed_doc(model, transcoders, prompt, tuple(targets), stamp)


@st.cache_resource(max_entries=8, show_spinner=False)
def labels(path: str, key: str, _doc: GraphDoc, transcoders: str, model: str) -> tuple[dict[str, str], str | None]:
    """({node id: label} of the graph's feature nodes, None) (core.circuits.labels: explanation or token-list
    label, and what it writes); call once the model is loaded. `key` names the graph. ({}, why) when the set's
    files do not read."""
    from core.errors import UserError

    try:
        got = cv.node_labels(path, _doc.wire, transcoders, unembedding(model))
    except (UserError, OSError) as e:
        return {}, first_line(e)
    return {x: cv.label_text(lab) for x, lab in got.items()}, None


@st.cache_resource(max_entries=4, show_spinner=False)
def unembedding(model: str):
    from core.circuits.labels import unembedding as make
    from dashboard.cache.models import model as loaded

    return make(loaded(model))


@dataclass
class GraphJob:
    model: str
    transcoders: str
    prompt: str
    targets: tuple[str, ...]
    status: str = "waiting"
    """waiting | running | done | failed"""
    done: int = 0
    total: int = 0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple:
        return (self.model, self.transcoders, self.prompt, self.targets)

    def label(self) -> str:
        what = f"{self.prompt!r} → {', '.join(map(repr, self.targets)) or 'the most probable tokens'}"
        if self.status == "running" and self.total:
            return f"Computing the graph of {what}: {self.done} / {self.total} batches"
        if self.status == "failed":
            return f"The graph of {what} could not be computed: {self.error}"
        return f"Graph of {what}: {self.status} ({time.monotonic() - self.started:.0f} s)"


_lock = threading.Lock()
_jobs: dict[tuple, GraphJob] = {}
_graphs = Serial("neuroboard-graphs")


def job(model: str, transcoders: str, prompt: str, targets: list[str]) -> GraphJob | None:
    return _jobs.get((model, transcoders, prompt, tuple(targets)))


def start(model: str, transcoders: str, prompt: str, targets: list[str]) -> GraphJob:
    """Queue the graph (once: a failed one is tried again); the worker thread computes queued graphs in order."""
    j = GraphJob(model, transcoders, prompt, tuple(targets))
    with _lock:
        old = _jobs.get(j.key)
        if old is not None and old.status != "failed":
            return old
        _jobs[j.key] = j
    _graphs.submit(lambda: _run(j))
    return j


def _run(j: GraphJob) -> None:
    from dashboard.cache.models import model

    def progress(done: int, total: int) -> None:
        j.done, j.total = done, total

    try:
        lm = model(j.model)
        j.status = "running"
        from core.circuits.labels import transcoder_set

        cached.compute(lm, j.transcoders, j.prompt, list(j.targets), model=j.model, on_progress=progress,
                       ts=transcoder_set(j.transcoders))
        j.status = "done"
    except Exception as e:  # noqa: BLE001 - any failure is the job's message, the server goes on
        j.error, j.status = first_line(e), "failed"


@st.cache_resource(max_entries=2, show_spinner=False)
def graph_model(key: str, _doc: GraphDoc, model: str, transcoders: str):
    """The graph opened with its model and transcoder set for interventions (core.circuits.interventions: checked
    against each other, its clean pass made), once per graph `key`; GraphError (one line) when they do not fit."""
    from core.circuits.interventions import open_graph
    from core.circuits.labels import transcoder_set
    from core.circuits.nodes import from_wire
    from dashboard.cache.models import model as loaded

    nodes = from_wire(_doc.wire, (_doc.ids, _doc.adjacency), model=model, transcoders=transcoders)
    return open_graph(loaded(model), transcoder_set(transcoders), nodes)


@st.cache_resource(max_entries=4, show_spinner=False)
def intervention_table(key: str, _gm, target: str) -> dict:
    """Zero each of the graph's ten most influential features alone: predicted vs measured change of the logit node
    `target` (JSON-ready)."""
    from dataclasses import asdict

    from core.circuits.interventions import intervention_table as table

    return asdict(table(_gm, target=target))


@st.cache_resource(max_entries=16, show_spinner=False)
def intervention(key: str, _gm, ids: tuple[str, ...], spec: str, name: str, target: str) -> dict:
    """One intervention's predicted and measured effect (JSON-ready), once per (graph, nodes, op, logit): a link
    that names it reopens the same numbers without a model pass."""
    from dataclasses import asdict

    from core.circuits.interventions import intervene_nodes

    return asdict(intervene_nodes(_gm, list(ids), spec, name=name, target=target))
