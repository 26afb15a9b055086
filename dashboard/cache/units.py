"""Cached reads behind unit pages (shared by all sessions): a unit's view, a model's vocabulary, logit effects.

cache_resource, not cache_data: the same read-only objects are handed out, never pickled per rerun.
"""

from __future__ import annotations

import streamlit as st

from core.units.kinds import source
from core.units.sources import UnitView
from dashboard.views import units as unit_views


def view(path: str, kind: str, run, layer: int, unit: int, ctx: int) -> UnitView:
    """A unit's view of `run` (a RunInfo); a run's newer results (a preview, then the final ones) are a new key."""
    return _view(path, kind, run.run_id, run.results_tokens, layer, unit, ctx)


@st.cache_resource(max_entries=128, show_spinner=False)
def _view(path: str, kind: str, run_id: int, results_tokens: int, layer: int, unit: int, ctx: int) -> UnitView:
    return unit_views.unit_view(path, kind, run_id, layer, unit, k=10, window=ctx)


@st.cache_resource(max_entries=8, show_spinner=False)
def vocab(path: str, model_id: int) -> list[str]:
    return unit_views.vocab(path, model_id)


@st.cache_resource(max_entries=128, show_spinner=False)
def effects(name: str, kind: str, layer: int, unit: int):
    from core.units.logit_effects import direction_effects  # torch: only once a model is in use
    from dashboard.cache.models import model

    lm = model(name)
    return direction_effects(lm, source(kind).direction(lm, layer, unit), k=10)


@st.cache_data(max_entries=64, show_spinner=False)
def layer_units(path: str, run_id: int, layer: int):
    return unit_views.layer_table(path, run_id, layer)
