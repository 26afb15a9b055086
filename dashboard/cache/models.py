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

import logging
import os
import threading
from collections.abc import Iterable

from core.errors import first_line
from core.index.db import IndexFileError
from core.model.builtin import BUILTIN
from dashboard.cache.worker import Serial
from dashboard.views import catalog

log = logging.getLogger(__name__)

MODELS_ENV = "NEUROBOARD_MODELS"

_lock = threading.Lock()
_models: dict = {}  # name -> core.model.load.LoadedModel
_done: dict[str, threading.Event] = {}
_errors: dict[str, str] = {}
_loads = Serial("neuroboard-models")


def _load(name: str) -> None:
    from core.model.load import load_model

    try:
        lm = load_model(name, attn="eager")
        with _lock:
            _models[name] = lm
    except Exception as e:  # a model that cannot load: its pages say so, the others go on
        with _lock:
            _errors[name] = first_line(e)
    finally:
        _done[name].set()


def start(names: Iterable[str]) -> None:
    """Queue models for loading in the background (one at a time, in order); already queued ones keep their place."""
    with _lock:
        new = [name for name in names if name not in _done]
        for name in new:
            _done[name] = threading.Event()
    for name in new:
        _loads.submit(lambda name=name: _load(name))


START_DELAY_S = 1.5
_requested: list[str] = []
_preloaded = False


def request(name: str) -> None:
    """Ask for a model to be loaded once the current page's script run ends (`start_requested`): loading competes
    for the CPU and the interpreter, so it waits until the page has sent what it can show without the model."""
    if name not in _done and name not in _requested:
        _requested.append(name)


def start_requested() -> None:
    """After a script run (dashboard/app.py): load what pages asked for, then, once per server process, the served
    indexes' models (so the next pages find them loaded)."""
    global _preloaded
    names = list(_requested)
    _requested.clear()
    if not _preloaded:
        _preloaded = True
        names += index_models()
    if names:  # a moment later: the run's last messages go out first (loading holds the interpreter a while)
        timer = threading.Timer(START_DELAY_S, start, (names,))
        timer.daemon = True
        timer.start()


def ready(name: str) -> bool:
    """Loaded (or failed: `error` says why) without waiting."""
    ev = _done.get(name)
    return ev is not None and ev.is_set()


def error(name: str) -> str | None:
    return _errors.get(name)


def model(name: str):
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
        except Exception as e:  # a missing or busy index only means nothing to preload from it
            _unread(path, e)
            continue
    names += [m for m in os.environ.get(MODELS_ENV, "").split(os.pathsep) if m]
    return list(dict.fromkeys(names))


def allowed_models() -> list[str]:
    """Built-ins, then $NEUROBOARD_MODELS, then the models of complete runs in the served indexes."""
    names = list(BUILTIN) + [m for m in os.environ.get(MODELS_ENV, "").split(os.pathsep) if m]
    for path in catalog.index_paths():
        try:
            names += [r.model for r in catalog.load_runs(path) if r.status == "complete"]
        except Exception as e:  # a missing or busy index only means fewer choices here
            _unread(path, e)
            continue
    return list(dict.fromkeys(names))


def _unread(path, e: Exception) -> None:
    """Log an index whose models could not be read: a missing, busy or foreign one quietly (debug), anything else
    as a warning with its traceback."""
    if isinstance(e, IndexFileError):
        log.debug("models of %s not read: %s", path, first_line(e))
    else:
        log.warning("models of %s not read", path, exc_info=e)
