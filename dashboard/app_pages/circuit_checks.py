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
            ) -> dict[str, tuple[str, str, list[str]]]:
    """{URL value: (choice label, supernode name or '', node ids)} of what can be intervened on (feature and error
    nodes): `node` (the clicked node), `pinned` (the subgraph), `group:NAME` (a supernode)."""
    acts = (ex.FEATURE, ex.ERROR)
    out = {}
    if node and doc.kind(node) in acts:
        out["node"] = (f"the clicked node {node}", "", [node])
    usable = [x for x in pinned if doc.kind(x) in acts]
    if usable:
        out["pinned"] = (f"the pinned subgraph ({len(usable)} nodes)", "", usable)
    for name, ids in groups:
        usable = [x for x in ids if doc.kind(x) in acts]
        if usable:
            out[f"group:{name}"] = (f"supernode {name} ({len(usable)} nodes)", name, usable)
    return out


def _alpha(op: str) -> float:
    qp = st.query_params
    try:
        return float(qp.get("iv_alpha", 0.0 if op == "scale" else 1.0))
    except ValueError:
        st.warning(f"`iv_alpha={str(qp.get('iv_alpha'))[:20]}` is not a number; 1 is used.")
        return 1.0


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
    qp = st.query_params
    c1, c2, c3, c4 = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
    what = frame.url_widget(c1.selectbox, "circuits_iv_what", "iv_on", frame.param_choice("iv_on", list(choices),
                            next(iter(choices))), label="Intervene on", options=list(choices),
                            format_func=lambda c: choices[c][0])
    op = frame.url_widget(c2.selectbox, "circuits_iv_op", "iv_op", frame.param_choice("iv_op", list(OPS), "zero"),
                          label="Operation", options=list(OPS), format_func=OPS.get)
    alpha = frame.url_widget(c3.number_input, "circuits_iv_alpha", "iv_alpha", _alpha(op), label="α", step=0.5,
                             disabled=op == "zero")
    run = c4.button("Run", key="circuits_iv_run", icon=":material/play_arrow:")
    if run:
        qp["iv"] = "1"  # the result is part of the view: a copied link shows it again
    table = st.session_state.get("circuits_iv_table", False)
    gm = None
    if qp.get("iv") == "1" or table:  # the graph is opened for interventions when one is asked for (a pass)
        try:
            gm = cc.graph_model(key, doc, model, transcoders)
        except UserError as e:
            st.warning(f"Interventions are not available for this graph: {str(e).splitlines()[0]}")
            return
    if gm is not None and qp.get("iv") == "1":
        _, name, ids = choices[what]
        spec = op if op == "zero" else f"{op}:{alpha:g}"
        try:
            frame.light(rc.effect_html(cc.intervention(key, gm, tuple(ids), spec, name, logit)))
        except UserError as e:
            st.warning(str(e).splitlines()[0])
    if st.toggle("The ten most influential features, each zeroed alone", key="circuits_iv_table") and gm is not None:
        with st.spinner("Twenty forward passes in two batches…"):
            t = cc.intervention_table(key, gm, logit)
        frame.light(rc.table_html(t, lambda x: ex.label(doc, x, labels)))
