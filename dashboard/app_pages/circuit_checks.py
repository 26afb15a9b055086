"""The circuits page's check by intervention (core.circuits.interventions), in a fragment: zero, scale or steer the
clicked node, the pinned subgraph or a supernode, and see the target's change the graph predicts beside the change
measured in the replacement model and the real model, with the tokens gained and lost; and the table over the
graph's ten most influential features with the correlation of predicted and measured. Needs the model (loaded in
the background: frame.loaded_model); a run costs two batched forward passes.
"""

from __future__ import annotations

import streamlit as st

from core.circuits import explore as ex
from core.errors import UserError
from dashboard.cache import circuits as cc
from dashboard.render import circuits as rc
from dashboard.shell import frame

OPS = {"zero": "zero (ablate)", "scale": "scale ×α", "steer": "steer +α × its largest activation"}


def targets(doc: ex.GraphDoc, node: str | None, pinned: list[str], groups: list[tuple[str, list[str]]]
            ) -> dict[str, tuple[str, list[str]]]:
    """{choice label: (supernode name or '', node ids)} of what can be intervened on: feature and error nodes."""
    acts = (ex.FEATURE, ex.ERROR)
    out = {}
    if node and doc.kind(node) in acts:
        out[f"the clicked node {node}"] = ("", [node])
    usable = [x for x in pinned if doc.kind(x) in acts]
    if usable:
        out[f"the pinned subgraph ({len(usable)} nodes)"] = ("", usable)
    for name, ids in groups:
        usable = [x for x in ids if doc.kind(x) in acts]
        if usable:
            out[f"supernode {name} ({len(usable)} nodes)"] = (name, usable)
    return out


@st.fragment
def panel(key: str, doc: ex.GraphDoc, model: str, transcoders: str, state: dict, labels: dict[str, str],
          logit: str) -> None:
    """The panel (module docstring); `logit`: the logit node whose change is read (the page's "Paths into")."""
    st.subheader("Check by intervention")
    st.caption("Ablate, scale or steer features and compare what the graph predicts with what the models do.")
    choices = targets(doc, state["node"], state["pinned"], state["groups"])
    if not choices:
        st.caption("Click a feature or error node, or pin some, to intervene on them.")
        return
    if frame.loaded_model(model, "interventions") is None:
        return
    c1, c2, c3, c4 = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
    what = c1.selectbox("Intervene on", list(choices), key="circuits_iv_what")
    op = c2.selectbox("Operation", list(OPS), format_func=OPS.get, key="circuits_iv_op")
    alpha = c3.number_input("α", value=0.0 if op == "scale" else 1.0, step=0.5, key=f"circuits_iv_alpha_{op}",
                            disabled=op == "zero")
    run = c4.button("Run", key="circuits_iv_run", icon=":material/play_arrow:")
    try:
        gm = cc.graph_model(key, doc, model, transcoders)
    except UserError as e:
        st.warning(f"Interventions are not available for this graph: {str(e).splitlines()[0]}")
        return
    if run:
        from dataclasses import asdict

        from core.circuits.interventions import intervene_nodes

        name, ids = choices[what]
        spec = op if op == "zero" else f"{op}:{alpha:g}"
        try:
            st.session_state["circuits_iv_result"] = (key, asdict(intervene_nodes(gm, ids, spec, name=name, target=logit)))
        except UserError as e:
            st.warning(str(e).splitlines()[0])
    done = st.session_state.get("circuits_iv_result")
    if done and done[0] == key:
        frame.light(rc.effect_html(done[1]))
    if st.toggle("The ten most influential features, each zeroed alone", key="circuits_iv_table"):
        with st.spinner("Twenty forward passes in two batches…"):
            t = cc.intervention_table(key, gm, logit)
        frame.light(rc.table_html(t, lambda x: ex.label(doc, x, labels)))
