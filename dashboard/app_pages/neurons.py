"""Neuron page: /neurons?run=<run_id>&layer=<L>&unit=<U>&ctx=<tokens each side>&find=<0|1>&text=<custom text>
&cmp=<run>:<layer>&cmp_unit=<U2> (another run's layer: this neuron's best matches there, the chosen one beside it).

All state lives in the URL; the sidebar chooses index, model and run (dashboard.shell.frame); the body is the generic
unit page (dashboard.app_pages.unit_body) over the "neuron" unit source.
"""

import time

import streamlit as st

from dashboard.app_pages import unit_body
from dashboard.app_pages.explain_search import search_box
from dashboard.app_pages.unit_compare import compare_target
from dashboard.cache.units import layer_units
from dashboard.shell import frame, params
from dashboard.views.units import interesting, token_search

st.title("Neurons")
path = frame.choose_index()
runs, run = frame.choose_run(path)
qp = st.query_params
layer, p1 = params.choice_param(qp, "layer", run.layers, run.layers[0])
unit, p2 = params.int_param(qp, "unit", 0, 0, run.d_mlp - 1)
W = int(run.config.get("ctx_window", 0)) if run.config.get("ctx_examples", 0) else 64  # older runs: live values
ctx, p3 = params.int_param(qp, "ctx", min(12, W), 1, W)
for problem in (p1, p2, p3):
    if problem:
        st.warning(problem)

c1, c2, c3 = st.columns([1, 1, 2])
layer = frame.url_widget(c1.selectbox, "neuron_layer", "layer", layer, label="Layer", options=run.layers)
unit = frame.url_widget(c2.number_input, "neuron_unit", "unit", unit, label="Unit", min_value=0,
                        max_value=run.d_mlp - 1, step=1)
ctx = frame.url_widget(c3.slider, "neuron_ctx", "ctx", ctx, label="Context tokens each side", min_value=1,
                       max_value=W)

find = frame.url_widget(st.toggle, "neuron_find", "find", qp.get("find") == "1", label="Find neurons")
st.query_params["find"] = "1" if find else "0"
if find:
    units = layer_units(str(path), run.run_id, int(layer))
    st.caption(f"All {len(units):,} units of layer {layer}. Click a column header to sort. Dominance: share of a "
               "unit's top examples that are its most common token (1.0 = one token only). Detection and fuzzing: "
               "the balanced accuracy of the unit's explanation (`neuroboard explain`; 0.5 = chance).")
    if any(u["detection"] is not None for u in units):
        least = st.slider("Only units whose explanation scores at least (detection)", 0.0, 1.0, 0.0, 0.05,
                          key="neuron_min_detection")
        if least > 0:
            units = [u for u in units if u["detection"] is not None and u["detection"] >= least]
    st.dataframe(units, key="neuron_table", hide_index=True, height=240)
    f1, f2 = st.columns([3, 1])
    query = f1.text_input("Search by token (exact, e.g. ' Paris' with its leading space)", key="neuron_search")
    if query:
        hits = token_search(str(path), run.run_id, query)
        if hits:
            st.dataframe(hits, key="neuron_hits", hide_index=True)
        else:
            st.caption("No unit's top examples contain that token.")
    search_box(path, "neuron_explain_search")
    if f2.button("Random interesting neuron", key="neuron_random"):
        st.query_params["unit"] = str(interesting(units, time.time_ns()))
        st.rerun()

interactive = frame.url_widget(st.toggle, "neuron_plotly", "charts", qp.get("charts") == "plotly",
                               label="Interactive charts (Plotly: zoom and pan; slower to load)")
st.query_params["charts"] = "plotly" if interactive else "light"
cmp = compare_target("neurons", run, runs, f"neurons.{int(layer)}", int(unit))
if cmp:
    main, beside = st.columns(2)
    with beside:
        st.markdown(f"**Beside it: run {cmp.run.run_id} layer {cmp.group}, unit {cmp.unit}** "
                    f"(correlation {dict(cmp.matches).get(cmp.unit, float('nan')):.3f})")
        unit_body.unit_body("neuron", path, cmp.run, cmp.group, cmp.unit, int(ctx), interactive=interactive, key="cmp")
    with main:
        unit_body.unit_body("neuron", path, run, int(layer), int(unit), int(ctx), interactive=interactive)
else:
    unit_body.unit_body("neuron", path, run, int(layer), int(unit), int(ctx), interactive=interactive)

@st.fragment
def custom_text_section() -> None:
    """A fragment: typing text re-runs only this part of the page (the URL still follows)."""
    st.subheader("Custom text")
    text = st.text_area("Type text to see this neuron's activation on every token", qp.get("text", ""),
                        key="neuron_text", max_chars=2000)
    if text:
        st.query_params["text"] = text
        unit_body.custom_text("neuron", run, int(layer), int(unit), 0.0, text)
    elif "text" in st.query_params:
        del st.query_params["text"]


custom_text_section()
