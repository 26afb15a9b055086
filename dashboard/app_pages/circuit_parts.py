"""Parts of the circuits page (dashboard/app_pages/circuits.py lays them out): the new-graph form and its job's
progress, the clicked node's panel, and the pinned-nodes and supernodes editor. Every change of state is written to
the URL (core.circuits.explore's forms), then the page reruns from it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import streamlit as st

from core.circuits import explore as ex
from dashboard.cache import circuits as cc
from dashboard.render import circuits as rc
from dashboard.render.svg import esc
from dashboard.shell import frame, params
from dashboard.views import circuits as cv

EXAMPLES = 5
STATE_PARAMS = ("node", "pinned", "groups", "logit")


def link_to(**change) -> str:
    """This page's URL with `change` applied (None removes a param; `charts=light`, the default, is left out: the
    graph holds one such link per node)."""
    keep = {k: st.query_params[k] for k in st.query_params} | change
    return "circuits?" + urlencode({k: v for k, v in keep.items() if v is not None and (k, v) != ("charts", "light")})


def set_params(**change) -> None:
    """Write `change` to the URL (None removes) and rerun the page from it."""
    for k, v in change.items():
        if v is None or v == "":
            st.query_params.pop(k, None)
        else:
            st.query_params[k] = v
    st.rerun()


def new_graph(path) -> tuple[ex.GraphDoc, dict] | None:
    """The form for a graph no index holds (model, transcoder set, prompt, target; kept in the URL), its job's
    progress while it is computed, and the graph once it is in the cache: (graph, meta) or None."""
    from dashboard.cache.models import allowed_models

    sets = frame.read_or_stop(cv.transcoder_sets, path)
    if not sets:
        st.info("No transcoder set to compute a graph with: this index stores no graph and indexed no set's "
                "features. `neuroboard graph --db INDEX` stores one, `neuroboard extract --sae SET` indexes a set's "
                "features, and set folders named in $NEUROBOARD_TRANSCODERS when `neuroboard serve` starts are offered.")
        return None
    models = allowed_models()
    c1, c2 = st.columns(2)
    model = frame.url_widget(c1.selectbox, "circuits_model", "model", frame.param_choice("model", models, models[0]),
                             label="Model", options=models)
    tset = frame.url_widget(c2.selectbox, "circuits_set", "set", frame.param_choice("set", sets, sets[0]),
                            label="Transcoder set", options=sets)
    c1, c2 = st.columns([3, 1])
    prompt = frame.url_widget(c1.text_input, "circuits_prompt", "prompt", st.query_params.get("prompt", ""),
                              label="Prompt", max_chars=500, placeholder="The capital of Germany is")
    target = frame.url_widget(c2.text_input, "circuits_target", "target", st.query_params.get("target", ""),
                              label="Target token", max_chars=40, placeholder="' Berlin' (empty: the most probable)",
                              help="One token, with its leading space; empty: the model's most probable tokens")
    if not prompt.strip():
        st.caption("Type a prompt: its graph is computed in the background (the page stays usable meanwhile).")
        return None
    targets = [target] if target else []
    try:
        got = cc.computed(model, tset, prompt, targets)
    except ex.ExploreError as e:
        st.warning(str(e))
        return None
    if got is not None:
        return got
    job = cc.job(model, tset, prompt, targets)
    if job is None or job.status == "failed":
        if job is not None:
            st.warning(job.label())
        if st.button("Compute the graph", key="circuits_compute", icon=":material/hub:"):
            cc.start(model, tset, prompt, targets)
            st.rerun()
        return None
    progress(job)
    return None


@st.fragment(run_every=1.0)
def progress(job: cc.GraphJob) -> None:
    """The job's progress, refreshed every second; the whole page reruns when it ends."""
    if job.status in ("done", "failed"):
        st.rerun()
    st.progress(job.done / job.total if job.total else 0.0, text=job.label())


def node_panel(path, doc: ex.GraphDoc, node: str, pinned: list[str], transcoders: str,
               labels: dict[str, str]) -> None:
    """The clicked node: label, activation, influence; pin it; its strongest edges; for a feature its top examples
    from the index, its logit effects and its feature page."""
    n, kind = doc.nodes[node], doc.kind(node)
    st.subheader(params.md_text(ex.label(doc, node, labels)))  # corpus or explainer text: no Markdown from it
    m = st.columns(4)
    m[0].metric("Kind", kind)
    m[1].metric("Layer · position", f"{n['layer']} · {n['ctx_idx']}")
    m[2].metric("Activation", "–" if n.get("activation") is None else f"{float(n['activation']):.4g}")
    m[3].metric("Cumulative influence", "–" if n.get("influence") is None else f"{float(n['influence']):.3f}",
                help="The node's share of influence on the logits counted with every more influential node "
                     "(small: important)")
    if node in pinned:
        if st.button("Unpin", key="circuits_unpin", icon=":material/keep_off:"):
            set_params(pinned=",".join(x for x in pinned if x != node))
    elif st.button("Pin into the subgraph", key="circuits_pin", icon=":material/keep:"):
        set_params(pinned=",".join([*pinned, node]))
    inc, out = ex.edges(doc, node)
    go = (lambda x: link_to(node=x))  # noqa: E731 - a one-line link maker
    c1, c2 = st.columns(2)
    frame.light(rc.edges_html([(x, ex.label(doc, x, labels), w) for x, w in inc], go,
                              "strongest incoming direct effects"), c1)
    frame.light(rc.edges_html([(x, ex.label(doc, x, labels), w) for x, w in out], go,
                              "strongest outgoing direct effects"), c2)
    if kind == ex.FEATURE:
        feature_unit(path, node, transcoders)


def feature_unit(path, node: str, transcoders: str) -> None:
    """A feature node's indexed unit: its top examples (the unit page's rendering), logit effects, feature page."""
    from dashboard.app_pages import unit_body
    from dashboard.cache.units import effects, view, vocab
    from dashboard.render import units as unit_charts
    from dashboard.views import catalog
    from dashboard.views.features import run_saes

    layer, feature, _pos = ex.feature_of(node)
    units = cv.feature_units(path, transcoders)
    if units is None or layer not in units.sae_ids:
        st.caption("This transcoder's features are not indexed here (`neuroboard extract --sae SET` indexes them), "
                   "so the node has no examples or feature page.")
        return
    run = next(r for r in catalog.load_runs(path) if r.run_id == units.run_id)
    sae = next(s for s in run_saes(path, run.run_id) if s.sae_id == units.sae_ids[layer])
    kind = f"feature:{sae.path}"
    page = "features?" + urlencode({"run": run.run_id, "sae": sae.sae_id, "feature": feature})
    frame.light(f'<a class="nb-feature-link" href="{esc(page)}" target="_self">Feature page</a>: run {run.run_id}, '
                f"SAE {sae.sae_id} ({esc(sae.name)}), feature {feature}")
    v = view(str(path), kind, run, sae.sae_id, feature, 12)
    st.caption(f"Top activating examples of the feature (of {len(v.top)}, from the index; orange: activation as a share "
               "of its max).")
    st.html(unit_body.examples_block(v, v.top[:EXAMPLES], vocab(str(path), run.model_id), 12, kind=kind))
    lm = frame.loaded_model(run.model, "the feature's logit effects")
    if lm is not None:
        st.caption("Logit effects: its decoder row through the final norm's gain and the unembedding (direct effect).")
        frame.light(unit_charts.logit_effects_html(effects(run.model, kind, sae.sae_id, feature),
                                                   vocab(str(path), run.model_id)))


def url_list(key: str, param: str, value: list[str], make: Callable, **kw) -> list[str]:
    """A list widget (multiselect) whose value lives in the URL as `a,b,c` (frame.url_widget's rule: a changed URL
    wins over the widget's remembered state); a moved widget rewrites the URL and reruns the page."""
    seen = f"_url_{key}"
    if st.session_state.get(seen) != value or key not in st.session_state:
        st.session_state[key] = value
    got = make(key=key, **kw)
    st.session_state[seen] = got
    if got != value:
        set_params(**{param: ",".join(got)})
    return got


def pin_editor(doc: ex.GraphDoc, pinned: list[str], groups: list[tuple[str, list[str]]]) -> None:
    """The pinned nodes (a multiselect), a form that groups some into a named supernode, and each supernode with a
    button that dissolves it."""
    name_of = (lambda x: f"{x} · {ex.label(doc, x)[:60]}")  # noqa: E731 - not the labels: they come with the model
    url_list("circuits_pinned", "pinned", pinned, st.multiselect, label="Pinned nodes", options=doc.ids,
             format_func=name_of, placeholder="Click nodes in the graph and pin them, or choose them here")
    grouped = {x for _, g in groups for x in g}
    free = [x for x in pinned if x not in grouped]
    with st.form("circuits_group_form", clear_on_submit=True, border=False):
        c1, c2, c3 = st.columns([2, 4, 1], vertical_alignment="bottom")
        name = c1.text_input("Supernode name", key="circuits_group_name", max_chars=40)
        members = c2.multiselect("Its nodes (pinned, not yet grouped)", free, key="circuits_group_members",
                                 format_func=name_of)
        add = c3.form_submit_button("Group", key="circuits_group_add")
    if add:
        clean = ex.clean_name(name)
        if not clean or not members:
            st.warning("A supernode needs a name (letters, digits, spaces) and at least one pinned node.")
        elif clean in {g for g, _ in groups}:
            st.warning(f"There is already a supernode named {params.md_code(clean)}.")
        else:
            set_params(groups=ex.encode_groups([*groups, (clean, members)]))
    for i, (gname, g) in enumerate(groups):
        c1, c2 = st.columns([6, 1], vertical_alignment="center")
        c1.markdown(f"**{params.md_text(gname)}**: " + ", ".join(f"`{params.md_code(x)}`" for x in g))
        if c2.button("Ungroup", key=f"circuits_group_del_{i}"):
            set_params(groups=ex.encode_groups([x for j, x in enumerate(groups) if j != i]))
