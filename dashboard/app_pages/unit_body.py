"""The body of a unit page (neurons now; SAE features reuse it): stats, histogram, top examples, interval samples,
logit effects and custom text for one unit of any `core.units.sources.UnitSource`. Pages choose the unit; this lays it out.
"""

from __future__ import annotations

import re

import numpy as np
import streamlit as st

from core.index.db import IndexLockedError
from core.index.queries import QueryError, RunInfo
from core.units.kinds import source
from core.units.sources import UnitView
from dashboard.cache.units import effects, view, vocab
from dashboard.render import units as unit_charts
from dashboard.render.tokens import example_html
from dashboard.shell.frame import light, loaded_model
from dashboard.shell.params import md_text
from dashboard.views import units as unit_views


def examples_block(v: UnitView, examples, vocab_: list[str], ctx: int, lm=None, kind: str = "neuron") -> str:
    """All examples as one HTML block; live values (needs `lm`) only for examples the index has no context for."""
    need = [e for e in examples if e.context is None]
    live = dict(zip(map(id, need), source(kind).activations(lm, v.layer, v.unit, [e.seq for e in need]),
                    strict=True)) if need and lm is not None else {}
    vmax = float(v.stats["max"])
    return "".join(example_html([vocab_[t] for t in e.shown_ids()], unit_views.shown_values(e, ctx, live.get(id(e))),
                                vmax, e.focus - e.first_shown, f"{e.activation:.3f} · doc {e.doc_id} pos {e.position}")
                   for e in examples)


def unit_body(kind: str, path, run: RunInfo, layer: int, unit: int, ctx: int, interactive: bool = False,
              label: str = "Layer / unit", effects_caption: str | None = None, key: str = "unit"
              ) -> UnitView | None:
    """Index data at once (stats, histogram, examples, intervals); logit effects when the model is loaded.
    `interactive`: Plotly charts instead of the light inline ones; `key`: the widgets' key prefix (a second unit
    beside the first needs its own). Returns the unit's view (None if unreadable)."""
    try:
        v = view(str(path), kind, run, layer, unit, ctx)
    except QueryError as e:
        st.warning(str(e))
        return None
    except IndexLockedError:
        st.warning("The index is updating; try again in a moment.")
        return None
    voc = vocab(str(path), run.model_id)
    if run.partial:
        st.info(f"Results so far: the first {run.results_tokens:,} of {run.tokens_target or 0:,} tokens. The run is "
                "still extracting; its final results replace these when it completes.", icon=":material/update:")
    s = v.stats
    m = st.columns(5)
    m[0].metric(label, f"{layer} / {unit}")
    m[1].metric("Density", f"{s['density']:.2%}", help=f"{s['count_active']:,} of {s['n_tokens']:,} tokens > 0")
    m[2].metric("Mean", f"{s['mean']:.4f}")
    m[3].metric("Max", f"{s['max']:.4f}")
    m[4].metric("Min", f"{s['min']:.4f}")
    explanation_block(path, run.run_id, -layer if kind.startswith("feature:") else layer, unit)
    if interactive:
        st.plotly_chart(unit_charts.activation_histogram(s["hist"], s["hist_exp"]), key=f"{key}_hist")
    elif kind.startswith("feature:"):  # features are mostly zero: the non-zero part, density in the title
        light(unit_charts.activation_histogram_svg(s["hist"], s["hist_exp"], nonzero=True,
                                                   title=f"non-zero activations · density {s['density']:.3%}"))
    else:
        light(unit_charts.activation_histogram_svg(s["hist"], s["hist_exp"]))

    stored = all(e.context is not None for e in v.top)
    lm = None if stored else loaded_model(run.model, "the context values")
    st.subheader("Top activating examples")
    st.caption("Background: activation as a share of the unit's max; hover a token for its value; the outlined token "
               "is the example. " + ("Values from the index." if stored else "Values recomputed live."))
    st.html(examples_block(v, v.top, voc, ctx, lm, kind))

    st.subheader("Interval samples")
    st.caption("Uniform samples of the active tokens in each tenth of the range; each sample's own token is coloured "
               "by its indexed activation.")
    for iv in reversed(v.intervals):
        title = f"interval {iv['lo']:.3f}–{iv['hi']:.3f}: ≈{iv['frac_est']:.1%} of active tokens"
        box = st.expander(title + ("" if iv["exact"] else " (approximate sample)"), key=f"{key}_iv_{iv['interval']}",
                          on_change="rerun")
        if box.open:  # drawn only when opened: keeps the page light
            with box:
                if iv["examples"]:
                    st.html(examples_block(v, iv["examples"], voc, ctx, kind=kind))
                else:
                    st.caption("no tokens in this interval")

    st.subheader("Logit effects")
    st.caption(effects_caption or "The unit's output direction through the final norm's gain and the unembedding "
               "(direct effect).")
    if loaded_model(run.model, "logit effects") is None:
        return v
    eff = effects(run.model, kind, layer, unit)
    if interactive:
        t1, t2 = st.columns(2)
        t1.dataframe({"promoted": [voc[i] for i in eff.top_ids], "effect": [float(eff.values[i]) for i in eff.top_ids]},
                     key=f"{key}_promoted", hide_index=True)
        t2.dataframe({"suppressed": [voc[i] for i in eff.bottom_ids],
                      "effect": [float(eff.values[i]) for i in eff.bottom_ids]}, key=f"{key}_suppressed",
                     hide_index=True)
        st.plotly_chart(unit_charts.logit_effect_histogram(eff.values), key=f"{key}_logit_hist")
    else:
        light(unit_charts.logit_effects_html(eff, voc))
    return v


def explanation_block(path, run_id: int, group: int, unit: int) -> None:
    """The unit's explanation (`neuroboard explain`) with its scores beside the control's, and the prompt."""
    try:
        e = unit_views.explanation(str(path), run_id, group, unit)
    except (QueryError, IndexLockedError):
        return
    if e is None:
        return
    if e["status"] != "ok":
        st.caption(f"No explanation: {e['reason'] or 'the explainer reply had none'} ({e['explainer']}).")
        return
    st.markdown(f"**Explanation:** {md_text(e['explanation'])}")
    sc = e["scores"] or {}

    def b(k, m="bacc"):
        v = (sc.get(k) or {}).get(m)
        return "–" if v is None else f"{v:.2f}"
    kept = re.search(r"\[candidate \d+, ([a-z ]+) \(kept\)", e["reply"] or "")
    how = {"token list": " (the top-token list: no model reply explained the examples better)",
           "completion": " (a plain completion naming what the frequent tokens share)"}.get(kept and kept.group(1), "")
    who = (f"Written by rules, not a model: most tokens marked in its examples are of this class ({e['explainer']}'s "
           "candidates are in the reply below)" if kept and kept.group(1) == "token class"
           else f"Written by {e['explainer']}{how}")
    st.caption(f"{who}. " + (
        f"Balanced accuracy on {sc.get('positives', 0)} held-out activating and {sc.get('negatives', 0)} "
        f"non-activating windows (0.5 = chance): detection **{b('detection')}** (control, another unit's "
        f"explanation: {b('control_detection')}), fuzzing **{b('fuzzing')}** (control {b('control_fuzzing')}); "
        f"judge {sc.get('judge')}. Embedding score (AUC, all-MiniLM-L6-v2, no judge): **{b('embedding', 'auc')}** "
        f"(control {b('control_embedding', 'auc')})." if sc else "Not scored."))
    with st.expander("The explainer's prompt and reply"):
        st.text(e["prompt"] + "\n\n--- reply ---\n" + (e["reply"] or ""))



def custom_text(kind: str, run: RunInfo, layer: int, unit: int, vmax: float, text: str) -> None:
    """The unit's activation on every token of `text`, recomputed live (once the model is loaded)."""
    from core.model.tokens import token_texts, tokenize

    lm = loaded_model(run.model, "values on your text")
    if lm is None:
        return
    ids = tokenize(lm.tokenizer, text)
    if not ids:
        st.caption("No tokens.")
        return
    (acts,) = source(kind).activations(lm, layer, unit, [ids])
    toks = token_texts(lm.tokenizer, ids)
    top = float(np.max(acts, initial=0.0))
    st.html(example_html(toks, acts, max(vmax, top), None, f"max {top:.3f} over {len(toks)} tokens"))
