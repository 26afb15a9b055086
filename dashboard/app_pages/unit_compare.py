"""'Compare with' on unit pages: another run's layer of neurons (neuron page) or another SAE (feature page); the
current unit's best matches there by activation correlation on the same tokens (core.units.match.best_matches, on
the current run's corpus), as links, and the chosen match's unit page beside the current one.

URL: `cmp=<run>:<layer>` (neurons) or `cmp=<run>:sae<s>` (features), `cmp_unit=<unit>` (default: the best match).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.errors import UserError
from core.index.queries import RunInfo
from dashboard.shell import frame

NONE = "none"
MATCH_TOKENS = 4096


@dataclass
class Target:
    run: RunInfo
    group: int
    """The layer (neurons) or SAE number (features) in that run."""
    kind: str
    """The unit source kind: 'neuron' or 'feature:<path>'."""
    spec: str
    """The unit-set spec for matching: neurons.L or sae:PATH."""
    unit: int
    matches: list[tuple[int, float]]


@st.cache_data(max_entries=64, show_spinner="Correlating with the other unit set on the same tokens…")
def _matches(model_a: str, spec_a: str, model_b: str, spec_b: str, unit: int, corpus: str, ctx_len: int
             ) -> list[tuple[int, float]]:
    from core.units.match import MatchQuery, best_matches
    from dashboard.cache.models import model

    q = MatchQuery(a=spec_a, b=spec_b, model=[model_a, model_b], corpus=corpus, tokens=MATCH_TOKENS,
                   context_len=ctx_len, one_to_one=False)
    return best_matches(q, unit, k=8, load=model)


def compare_target(page: str, run: RunInfo, runs: list[RunInfo], spec_a: str, unit: int, saes: list | None = None
                   ) -> Target | None:
    """The 'Compare with' selector (and its match list); the unit to show beside the current one, or None."""
    options = [NONE]
    labels = {NONE: "nothing"}
    kinds: dict[str, tuple] = {}
    if saes is None:  # neurons: every layer of every run with results
        for r in runs:
            if r.has_results:
                for L in r.layers:
                    key = f"{r.run_id}:{L}"
                    options.append(key)
                    labels[key] = f"run {r.run_id} ({r.model}) layer {L}"
                    kinds[key] = (r, L, "neuron", f"neurons.{L}")
    else:
        for s in saes:
            r = next((x for x in runs if x.run_id == s.run_id), None)
            if r is not None and r.has_results:
                key = f"{s.run_id}:sae{s.sae_id}"
                options.append(key)
                labels[key] = f"run {s.run_id} ({r.model}) SAE {s.sae_id} · {s.name} · {s.site}"
                kinds[key] = (r, s.sae_id, f"feature:{s.path}", f"sae:{s.path}")
    choice = frame.url_widget(st.selectbox, f"cmp_{spec_a[:3]}", "cmp", frame.param_choice("cmp", options, NONE),
                              label="Compare with (best matches by activation correlation, shown beside)",
                              options=options, format_func=labels.get)
    if choice == NONE:
        return None
    r2, group, kind, spec_b = kinds[choice]
    models = [run.model] + ([r2.model] if r2.model != run.model else [])
    if any(frame.loaded_model(m, "the matches") is None for m in models):
        return None
    try:
        found = _matches(run.model, spec_a, r2.model, spec_b, unit, run.corpus, int(run.config.get("context_len", 128)))
    except (UserError, ValueError) as e:
        st.warning(f"Cannot match: {str(e).splitlines()[0]}")
        return None
    ids = [j for j, _ in found]
    try:
        cur = int(st.query_params.get("cmp_unit", ids[0]))
    except ValueError:
        cur = ids[0]
    from urllib.parse import urlencode

    from dashboard.render.features import links_table

    keep = {k: st.query_params[k] for k in st.query_params}
    st.caption(f"Correlation of this unit's activations with each unit of {labels[choice]} over {MATCH_TOKENS:,} "
               f"tokens of {run.corpus} (special tokens left out); click one to show it beside.")
    frame.light(links_table([(f"{page}?{urlencode(keep | {'cmp_unit': str(j)})}", f"unit {j}", f"{c:.3f}")
                             for j, c in found], ("best matches", "correlation")))
    return Target(r2, group, kind, spec_b, cur, found)
