"""Models shared by every page and session, loaded in the background, and which models the URL may name.

The server process starts loading the served indexes' models as it starts (dashboard.server), one after another, so
a page that needs a model usually finds it loaded; one that does not yet shows its index data at once and fills in
its live parts when the model is ready (dashboard.shell.frame.loaded_model). Models are loaded with eager attention:
the heads page reads attention weights, and switching a shared model's implementation per request would race
between sessions. Hooked passes on a shared model are serialised by its lock (core.model.intervene), so sessions
never see each other's activations.

A URL can name a model only from an allow-list: the built-in models, the models of the served indexes (runs and
head scores), and those given to `neuroboard serve --model` ($NEUROBOARD_MODELS, os.pathsep-separated). A link can
never make the server load an arbitrary path or hub id.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from core.errors import first_line
from core.model.load import BUILTIN, LoadedModel, load_model
from dashboard.views import catalog

MODELS_ENV = "NEUROBOARD_MODELS"

_lock = threading.Lock()
_models: dict[str, LoadedModel] = {}
_done: dict[str, threading.Event] = {}
_errors: dict[str, str] = {}
_queue: list[str] = []
_worker: threading.Thread | None = None


def _load(name: str) -> None:
    try:
        lm = load_model(name, attn="eager")
        with _lock:
            _models[name] = lm
    except Exception as e:  # a model that cannot load: its pages say so, the others go on
        with _lock:
            _errors[name] = first_line(e)
    finally:
        _done[name].set()


def _work() -> None:
    global _worker
    while True:
        with _lock:
            if not _queue:
                _worker = None
                return
            name = _queue.pop(0)
        _load(name)


def start(names: Iterable[str]) -> None:
    """Queue models for loading in the background (one at a time, in order); already queued ones keep their place."""
    global _worker
    with _lock:
        for name in names:
            if name not in _done:
                _done[name] = threading.Event()
                _queue.append(name)
        if _queue and _worker is None:
            _worker = threading.Thread(target=_work, name="neuroboard-models", daemon=True)
            _worker.start()


def ready(name: str) -> bool:
    """Loaded (or failed: `error` says why) without waiting."""
    ev = _done.get(name)
    return ev is not None and ev.is_set()


def error(name: str) -> str | None:
    return _errors.get(name)


def model(name: str) -> LoadedModel:
    """The loaded model, waiting for it if needed; raises ModelLoadError (one line) if it cannot load."""
    start([name])
    _done[name].wait()
    if name in _errors:
        from core.model.load import ModelLoadError

        raise ModelLoadError(_errors[name])
    return _models[name]


def index_models() -> list[str]:
    """Models of the served indexes (complete runs and head scores, in run order), then $NEUROBOARD_MODELS."""
    from core.index.heads import head_sets
    from core.index.pool import reading

    names: list[str] = []
    for path in catalog.index_paths():
        try:
            names += [r.model for r in catalog.load_runs(path) if r.status == "complete"]
            with reading(path, wait_s=1.0) as cur:
                names += [s.model for s in head_sets(cur)]
        except Exception:  # a missing or busy index only means nothing to preload from it
            continue
    names += [m for m in os.environ.get(MODELS_ENV, "").split(os.pathsep) if m]
    return list(dict.fromkeys(names))


def allowed_models() -> list[str]:
    """Built-ins, then $NEUROBOARD_MODELS, then the models of complete runs in the served indexes."""
    names = list(BUILTIN) + [m for m in os.environ.get(MODELS_ENV, "").split(os.pathsep) if m]
    for path in catalog.index_paths():
        try:
            names += [r.model for r in catalog.load_runs(path) if r.status == "complete"]
        except Exception:  # a missing or busy index only means fewer choices here
            continue
    return list(dict.fromkeys(names))
