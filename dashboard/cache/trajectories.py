"""Cached computations behind the trajectories page: one forward pass per (model, prompt) feeds the logit lens, the
tuned lens and the residual geometry; prompt-set representations and metrics are computed once per (model, set).
Models come from dashboard.cache.models (st.cache_resource, shared by all sessions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from dashboard.cache.models import model

if TYPE_CHECKING:  # torch comes with the model, not with the page's first paint
    from core.geometry.residual import ResidualGeometry
    from core.lens.logit import LensResult, Stream



@st.cache_resource(max_entries=8, show_spinner=False)  # a Stream keeps (T, vocab) logits: few entries
def stream_of(name: str, prompt: str) -> Stream:
    """Raises ValueError (one line) for an empty prompt or one longer than the model's context."""
    lm = model(name)
    from core.lens.logit import stream
    from core.model.tokens import encode_prompt

    return stream(lm, encode_prompt(lm, prompt))


@st.cache_resource(max_entries=8, show_spinner=False)
def _tuned(name: str, stamp: float):
    from core.lens.store import load_tuned_lens

    return load_tuned_lens(model(name))


def tuned_lens(name: str):
    """The model's tuned lens from the lens store, or None (none stored, or unreadable: `tuned_problem` says why).
    Keyed by the file's modification time, so a lens trained while the server runs appears."""
    from core.lens.tuned import TunedLensError

    try:
        return _tuned(name, lens_stamp(name))
    except TunedLensError as e:
        st.session_state["traj_tuned_problem"] = str(e)
        return None


def lens_stamp(name: str) -> float:
    """Modification time of the model's stored tuned lens (0 if none): part of every cache key that uses it."""
    from core.lens.store import WEIGHTS, store_dir

    path = store_dir(name) / WEIGHTS
    return path.stat().st_mtime if path.is_file() else 0.0


def usable_kind(name: str, kind: str) -> str:
    """`kind`, or "logit" when a tuned lens is asked for and the model has none."""
    return kind if kind == "logit" or tuned_lens(name) is not None else "logit"


def target_of(name: str, target: str) -> tuple[int | None, str | None]:
    """(token id, problem): the id of `target` for this model, or None and a friendly line when it is not one
    token (then each position's own top-1 prediction is the target)."""
    if not target:
        return None, None
    try:
        from core.model.tokens import token_id

        return token_id(model(name), target), None
    except ValueError as e:
        return None, f"{name}: {e}; showing the model's own prediction instead."


def lens_result(name: str, prompt: str, kind: str, target: int | None) -> LensResult:
    return _lens_result(name, prompt, kind, target, lens_stamp(name) if kind == "tuned" else 0.0)


@st.cache_resource(max_entries=64, show_spinner=False)
def _lens_result(name: str, prompt: str, kind: str, target: int | None, stamp: float) -> LensResult:
    translator = tuned_lens(name) if kind == "tuned" else None
    from core.lens.logit import lens_of

    return lens_of(model(name), stream_of(name, prompt), target=target, translator=translator)


@st.cache_resource(max_entries=32, show_spinner=False)
def residual(name: str, prompt: str) -> ResidualGeometry:
    from core.geometry.residual import residual_geometry

    return residual_geometry(stream_of(name, prompt))


def vocab_fn(name: str):
    tok = model(name).tokenizer
    from core.model.tokens import token_texts

    return lambda i: token_texts(tok, [i])[0]


@st.cache_resource(max_entries=8, show_spinner=False)
def _builtin_set(spec: str):
    from core.data.prompt_sets import load_prompt_set

    return load_prompt_set(spec)


def prompt_set(spec: str):
    """A built-in set by name, or an uploaded one by its "upload:<digest>" spec (dashboard.cache.uploads)."""
    from dashboard.cache import uploads

    return uploads.prompt_set(spec) if uploads.is_upload(spec) else _builtin_set(spec)


@st.cache_resource(max_entries=8, show_spinner="Running the prompt set through the model…")
def set_reps(name: str, spec: str) -> np.ndarray:
    from core.data.prompt_sets import layer_representations

    return layer_representations(model(name), prompt_set(spec).texts)  # (L, N, d_model)


@st.cache_data(max_entries=16, show_spinner="Comparing the layers of both models (CKA)…")
def cka(a: str, b: str, spec: str, kind: str) -> dict:
    """core.geometry.cka.CKAResult.as_dict() of models a and b on a prompt set (their cached representations)."""
    from core.geometry.cka import compare_layers

    ps = prompt_set(spec)
    res = compare_layers(model(a), model(b), ps.texts, kind, "last", reps=(set_reps(a, spec), set_reps(b, spec)),
                         set_name=ps.name)
    return res.as_dict()


@st.cache_resource(max_entries=8, show_spinner="Fitting probes and cluster scores per layer…")
def set_metrics(name: str, spec: str):
    from core.geometry.separation import set_geometry

    ps = prompt_set(spec)
    return set_geometry(set_reps(name, spec), ps.labels, groups=ps.groups)  # a group stays in one fold


@st.cache_resource(max_entries=64, show_spinner="Projecting…")
def projection(name: str, spec: str, layer: int, method: str) -> np.ndarray:
    from core.geometry.separation import pca_2d, umap_2d

    X = set_reps(name, spec)[layer]  # (N, d_model)
    return umap_2d(X) if method == "umap" else pca_2d(X)
