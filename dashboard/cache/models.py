"""Models shared by every page and session (st.cache_resource), and which models the URL may name.

A URL can name a model only from an allow-list: the built-in models, the models of the served indexes (runs and
head scores), and those given to `neuroboard serve --model` ($NEUROBOARD_MODELS, os.pathsep-separated). A link can
never make the server load an arbitrary path or hub id. Hooked passes on a shared model are serialised by the lock
that core.model.parts.capture holds, so sessions never see each other's activations.
"""

from __future__ import annotations

import os

import streamlit as st

from core.model.load import BUILTIN, load_model
from dashboard.views import catalog

MODELS_ENV = "NEUROBOARD_MODELS"


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def model(name: str):
    """Loaded once with eager attention: the heads page reads attention weights, and switching the shared
    model's implementation per request would race between sessions."""
    return load_model(name, attn="eager")


def allowed_models() -> list[str]:
    """Built-ins, then $NEUROBOARD_MODELS, then the models of complete runs in the served indexes."""
    names = list(BUILTIN) + [m for m in os.environ.get(MODELS_ENV, "").split(os.pathsep) if m]
    for path in catalog.index_paths():
        try:
            names += [r.model for r in catalog.load_runs(path) if r.status == "complete"]
        except Exception:  # a missing or busy index only means fewer choices here
            continue
    return list(dict.fromkeys(names))
