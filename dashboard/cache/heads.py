"""What the heads page reads: stored scores from the index (shared read-only connection, one query per model)
and live attention patterns for the head shown (computed only for the prompt on screen)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.index.heads import HeadSet, head_score_arrays
from core.index.heads import head_sets as _head_sets
from core.index.pool import reading
from dashboard.cache.models import model

PROBE_HALF_MAX = 32
"""The probe shown repeats at most this many tokens (the scores' probe may be longer)."""
MAX_PATTERN_TOKENS = 200
"""A pattern heatmap shows at most this many tokens (T x T cells)."""


@st.cache_data(ttl=5, show_spinner=False)
def head_sets(path: str) -> list[HeadSet]:
    with reading(path) as cur:
        return _head_sets(cur)


@st.cache_resource(max_entries=16, show_spinner=False)
def scores(path: str, model_id: int, created_at: str) -> dict[str, np.ndarray]:
    """Every role's (L, H) scores, in the page's order; `created_at` keys re-scored models apart."""
    from dashboard.render.heads import ROLE_TITLES

    with reading(path) as cur:
        arrays = head_score_arrays(cur, model_id)
    order = [r for r in ROLE_TITLES if r in arrays] + [r for r in arrays if r not in ROLE_TITLES]
    return {r: arrays[r] for r in order}


@st.cache_resource(max_entries=32, show_spinner=False)
def prompt_pattern(name: str, layer: int, prompt: str) -> tuple[list[str], np.ndarray]:
    """(tokens, (H, T, T) attention of every head of the layer) on the prompt's first MAX_PATTERN_TOKENS tokens;
    ValueError (one line) for an empty prompt or one longer than the model's context."""
    lm = model(name)
    from core.model.tokens import encode_prompt, token_texts
    from core.units.live import attention_pattern

    ids = encode_prompt(lm, prompt)[:MAX_PATTERN_TOKENS]

    return token_texts(lm.tokenizer, ids), attention_pattern(lm, layer, ids)


@st.cache_resource(max_entries=32, show_spinner=False)
def probe_pattern(name: str, layer: int, half_len: int) -> tuple[list[str], np.ndarray]:
    """The same on one repeated-random-token sequence built as the scores' probe (core.heads.roles.probe_ids, seed 0),
    at most PROBE_HALF_MAX tokens repeated."""
    from core.heads.roles import bos_id, probe_ids, vocab_size

    lm = model(name)
    n = min(half_len, PROBE_HALF_MAX)
    ids = probe_ids(vocab_size(lm), 1, n, 0, bos_id(lm), exclude=lm.tokenizer.all_special_ids)[0].tolist()
    from core.model.tokens import token_texts
    from core.units.live import attention_pattern

    return token_texts(lm.tokenizer, ids), attention_pattern(lm, layer, ids)
