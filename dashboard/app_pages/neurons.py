"""Neuron page: /neurons?run=<run_id>&layer=<L>&unit=<U>&ctx=<tokens each side>. All state lives in the URL."""

import streamlit as st

from core.index.db import IndexError_, IndexLockedError
from core.index.queries import QueryError
from core.live import text_activations, unit_activations
from core.logit_effects import logit_effects
from core.models import load_model
from dashboard import charts, data, state
from dashboard.components import token_spans
from dashboard.unit_data import interesting, layer_table, token_search, unit_view


@st.cache_resource(show_spinner="Loading the model…")
def model(name: str):
    return load_model(name)


@st.cache_data(max_entries=64, show_spinner=False)
def view(path: str, run_id: int, layer: int, unit: int, ctx: int):
    return unit_view(path, run_id, layer, unit, k=10, window=ctx)


@st.cache_data(max_entries=256, show_spinner=False)
def layer_units(path: str, run_id: int, layer: int):
    return layer_table(path, run_id, layer)


def show_examples(lm, layer, unit, examples, vmax, live=True):
    """Live: every shown token coloured by a recomputed activation; else only the example token, from the index."""
    vals = unit_activations(lm, layer, unit, [e.seq for e in examples]) if live else [None] * len(examples)
    for e, v in zip(examples, vals, strict=True):
        if v is None:
            shown = [float("nan")] * len(e.shown)
            shown[e.focus] = e.activation
        else:
            shown = v[len(e.seq) - len(e.shown):]
        st.html(f'<div style="font-size:0.8em;color:#888">{e.activation:.3f} · doc {e.doc_id} pos {e.position}</div>'
                + token_spans(e.shown, shown, vmax, focus=e.focus))


st.title("Neurons")
path = data.index_path()
try:
    runs = [r for r in data.load_runs(path) if r.status == "complete"]
except IndexLockedError:
    st.warning("The index is updating (another process is writing to it). Try again in a moment.")
    st.button("Retry", key="neuron_retry")
    st.stop()
except (IndexError_, FileNotFoundError) as e:
    st.info(str(e))
    st.stop()
if not runs:
    st.info("No complete run in this index yet.")
    st.stop()

qp = st.query_params
run_id, p1 = state.choice_param(qp, "run", [r.run_id for r in runs], runs[0].run_id)
run = next(r for r in runs if r.run_id == run_id)
layer, p2 = state.choice_param(qp, "layer", run.layers, run.layers[0])
unit, p3 = state.int_param(qp, "unit", 0, 0, run.d_mlp - 1)
ctx, p4 = state.int_param(qp, "ctx", 12, 1, 64)
for problem in (p1, p2, p3, p4):
    if problem:
        st.warning(problem)

c1, c2, c3, c4 = st.columns([2, 1, 1, 2])
run_id = c1.selectbox("Run", [r.run_id for r in runs], index=[r.run_id for r in runs].index(run_id), key="neuron_run",
                      format_func=lambda i: f"{i}: {next(r.model for r in runs if r.run_id == i)}")
run = next(r for r in runs if r.run_id == run_id)
layer = c2.number_input("Layer", min_value=min(run.layers), max_value=max(run.layers),
                        value=min(max(layer, min(run.layers)), max(run.layers)), key="neuron_layer")
unit = c3.number_input("Unit", min_value=0, max_value=run.d_mlp - 1, value=min(unit, run.d_mlp - 1),
                       key="neuron_unit")
ctx = c4.slider("Context tokens each side", 1, 64, ctx, key="neuron_ctx")
st.query_params.update({"run": str(run_id), "layer": str(layer), "unit": str(unit), "ctx": str(ctx)})

with st.expander("Find neurons", expanded=False):
    units = layer_units(str(path), run_id, int(layer))
    st.caption("Click a column header to sort. Dominance: share of a unit's top examples that are its most common token.")
    st.dataframe(units, key="neuron_table", hide_index=True, height=240)
    f1, f2 = st.columns([3, 1])
    query = f1.text_input("Search by token (exact, e.g. ' Paris' with its leading space)", key="neuron_search")
    if query:
        hits = token_search(str(path), run_id, query)
        if hits:
            st.dataframe(hits, key="neuron_hits", hide_index=True)
        else:
            st.caption("No unit's top examples contain that token.")
    if f2.button("Random interesting neuron", key="neuron_random"):
        import time

        st.query_params["unit"] = str(interesting(units, time.time_ns()))
        st.rerun()

try:
    v = view(str(path), run_id, int(layer), int(unit), int(ctx))
except QueryError as e:
    st.warning(str(e))
    st.stop()
except IndexLockedError:
    st.warning("The index is updating; try again in a moment.")
    st.stop()

s = v.stats
m = st.columns(4)
m[0].metric("Layer / unit", f"{layer} / {unit}")
m[1].metric("Density", f"{s['density']:.2%}")
m[2].metric("Mean", f"{s['mean']:.4f}")
m[3].metric("Max", f"{s['max']:.4f}")
st.plotly_chart(charts.activation_histogram(s["hist"], s["hist_exp"]), key="neuron_hist")

lm = model(run.model)
st.subheader("Top activating examples")
show_examples(lm, int(layer), int(unit), v.top, float(s["max"]))

st.subheader("Interval samples")
st.caption("Each sample's token is coloured by its indexed activation.")
for iv in reversed(v.intervals):
    title = f"interval {iv['lo']:.3f}–{iv['hi']:.3f}: ≈{iv['frac_est']:.1%} of active tokens"
    with st.expander(title + ("" if iv["exact"] else " (approximate sample)"), expanded=False):
        if iv["examples"]:
            show_examples(lm, int(layer), int(unit), iv["examples"], float(s["max"]), live=False)
        else:
            st.caption("no tokens in this interval")

st.subheader("Logit effects")
eff = logit_effects(lm, int(layer), int(unit), k=10)
t1, t2 = st.columns(2)
t1.dataframe({"promoted": [lm.tokenizer.decode([i]) for i in eff.top_ids],
              "effect": [float(eff.values[i]) for i in eff.top_ids]}, key="neuron_promoted", hide_index=True)
t2.dataframe({"suppressed": [lm.tokenizer.decode([i]) for i in eff.bottom_ids],
              "effect": [float(eff.values[i]) for i in eff.bottom_ids]}, key="neuron_suppressed", hide_index=True)
st.plotly_chart(charts.logit_effect_histogram(eff.values), key="neuron_logit_hist")

st.subheader("Custom text")
text = st.text_area("Text", qp.get("text", ""), key="neuron_text", max_chars=2000)
if text:
    st.query_params["text"] = text
    toks, acts = text_activations(lm, int(layer), int(unit), text)
    st.html(token_spans(toks, acts, max(float(s["max"]), float(acts.max(initial=0.0)))))
