"""What the steering and patching pages compute or read: live interventions on a loaded model (cached per input,
so a copied link redraws without recomputing) and stored sweeps from the index (shared read-only connection)."""

from __future__ import annotations

import streamlit as st

from core.index.pool import reading
from dashboard.cache.models import model


@st.cache_resource(max_entries=16, show_spinner=False)
def patch_result(name: str, clean: str, corrupted: str, answer: str, foil: str) -> dict:
    """core.interventions.patching.patch_grid as a dict; PatchError (one line) for unusable input."""
    from core.interventions.patching import patch_grid

    return patch_grid(model(name), clean, corrupted, answer, foil).as_dict()


@st.cache_data(ttl=5, max_entries=32, show_spinner=False)
def stored_patch(path: str, name: str, clean: str, corrupted: str, answer: str, foil: str) -> dict | None:
    """The grids of this input stored in the index (core.index.patch_grids: the demo stores its default pair's) by
    this server's package versions, as patch_result gives them; None when there are none, or the index cannot be
    read just now (an older schema, a writer holding it): the page then computes them live."""
    import duckdb

    from core.index import patch_grids
    from core.index.db import IndexFileError

    pair = {"clean": clean, "corrupted": corrupted, "answer": answer, "foil": foil}
    try:
        with reading(path) as cur:
            return patch_grids.get(cur, name, pair, patch_grids.package_versions())
    except (duckdb.CatalogException, IndexFileError):
        return None


@st.cache_resource(max_entries=16, show_spinner=False)
def backpatch_result(name: str, prompt: str, answer: str) -> dict:
    from core.interventions.patching import backpatch

    return backpatch(model(name), prompt, answer).as_dict()


@st.cache_resource(max_entries=32, show_spinner=False)
def direction(name: str, spec: str, layer: int):
    """core.interventions.directions.Direction; DirectionError (one line) when it cannot be made. A spec naming an
    upload (`METHOD:upload:<digest>` for a prompt set, `file:upload:<digest>` for a vector: dashboard.cache.uploads)
    is made from what this server holds; UploadError (one line) when it no longer holds it."""
    from core.interventions.directions import METHODS, from_prompt_set, from_spec, from_vector
    from dashboard.cache import uploads

    kind, _, rest = spec.partition(":")
    if not uploads.is_upload(rest):
        return from_spec(model(name), spec, layer)
    if kind == "file":
        return from_vector(model(name), uploads.vector(rest), layer, {"method": "file", "upload": rest})
    if kind in METHODS:
        position = "last"
        if rest.endswith((":last", ":mean")):
            rest, position = rest.rsplit(":", 1)
        return from_prompt_set(model(name), rest, layer, kind, position, ps=uploads.prompt_set(rest))
    return from_spec(model(name), spec, layer)  # its own one-line error


@st.cache_resource(max_entries=32, show_spinner=False)
def steer_result(name: str, spec: str, layer: int, alpha: float, prompt: str, tokens: int) -> dict:
    from core.interventions.steer import steer

    d = direction(name, spec, layer)
    return steer(model(name), prompt, layer, d.vector, alpha, tokens).as_dict()


@st.cache_resource(max_entries=32, show_spinner=False)
def ablate_result(name: str, spec: str, layer: int, prompt: str, tokens: int) -> dict:
    from core.interventions.steer import ablate

    d = direction(name, spec, layer)
    return ablate(model(name), prompt, d.vector, tokens).as_dict()


@st.cache_data(ttl=5, show_spinner=False)
def sweeps(path: str, name: str) -> list:
    import duckdb

    from core.index.sweeps import list_sweeps

    try:
        with reading(path) as cur:
            return list_sweeps(cur, name)
    except duckdb.CatalogException:  # an index of an older schema, opened read-only: no sweeps yet
        return []


@st.cache_data(max_entries=16, show_spinner=False)
def sweep(path: str, sweep_id: int) -> dict | None:
    from core.index.sweeps import sweep_result

    with reading(path) as cur:
        return sweep_result(cur, sweep_id)
