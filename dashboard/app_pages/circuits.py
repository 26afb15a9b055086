"""Circuits page: an attribution graph explained and checked.

    /circuits?graph=ID&logit=ID&node=ID&pinned=ID,ID&groups=NAME:ID|ID;NAME:ID&charts=plotly    a stored graph
    /circuits?graph=new&model=M&set=FOLDER&prompt=TEXT&target=TOKEN&...                          a new one

A graph stored in the index (`neuroboard graph --db`) opens at once; a new one is computed in the background
(dashboard.cache.circuits) while the page stays usable. The graph is drawn as layers × token positions (light SVG;
Plotly behind the "Interactive charts" toggle) with the strongest paths into the chosen logit; a click on a node
(`node=`) shows its label, edges, top examples, logit effects and feature page. Pinned nodes and named supernodes
(core.circuits.explore's URL forms) make a subgraph drawn on its own, which the sidebar's "Save finding" keeps.
"""

import streamlit as st

from core.circuits import explore as ex
from dashboard.app_pages import circuit_checks as checks
from dashboard.app_pages import circuit_parts as parts
from dashboard.cache import circuits as cc
from dashboard.render import circuits as rc
from dashboard.shell import frame, params
from dashboard.views import circuits as cv

NEW = "new"

st.title("Circuits")
st.caption("How the model's features, reconstruction errors and prompt tokens connect into its next-token "
           "prediction (an attribution graph through a transcoder set).")
path = frame.choose_index()
qp = st.query_params
stored = {g.graph_id: g for g in frame.read_or_stop(cv.graphs, path)}
choices = [*stored, NEW]
asked = qp.get("graph") or (NEW if qp.get("prompt") or not stored else str(next(iter(stored))))
if asked == NEW:
    default, problem = NEW, None
elif not stored:
    default, problem = NEW, f"`graph={params.md_code(asked[:40])}`: this index stores no graph; make a new one here."
else:
    default, problem = params.choice_param(qp, "graph", list(stored), next(iter(stored)))
if problem:
    st.warning(problem)


def graph_name(g) -> str:
    if g == NEW:
        return "New graph…"
    info = stored[g]
    targets = info.config.get("target") or []
    return f"{g}: {info.prompt!r} → {', '.join(map(repr, targets)) or 'its most probable tokens'}"


choice = frame.url_widget(st.selectbox, "circuits_graph", "graph", default, label="Graph", options=choices,
                          format_func=graph_name)
if choice != default:  # the reader chose another graph: the old one's nodes mean nothing there
    parts.set_params(**dict.fromkeys(parts.STATE_PARAMS))

if choice == NEW:
    got = parts.new_graph(path)
    if got is None:
        st.stop()
    doc, meta = got
    model, transcoders, scores, note = meta["model"], meta["transcoders"], meta.get("scores") or {}, None
    key = f"new:{meta['model']}:{meta['transcoders']}:{meta['prompt']}:{meta['targets']}"
else:
    info = stored[int(choice)]
    try:
        doc = cc.stored_doc(str(path), info.graph_id, info.created_at)
    except ex.ExploreError as e:
        doc, _ = None, st.warning(f"Graph {info.graph_id} cannot be shown: {e}")
    if doc is None:
        st.info(f"Graph {info.graph_id} is not in this index any more; choose another.")
        st.stop()
    model, transcoders, scores, note = info.model, info.transcoders, info.scores, info.config.get("note")
    key = f"{path}:{info.graph_id}:{info.created_at}"

state, problems = ex.view_state(doc, qp.to_dict())
for p in problems:
    st.warning(p)
if problems:  # the URL keeps only what this graph has
    for k, v in (("pinned", ",".join(state["pinned"])), ("groups", ex.encode_groups(state["groups"])),
                 ("node", state["node"]), ("logit", state["logit"])):
        if v:
            qp[k] = v
        else:
            qp.pop(k, None)
frame.light(rc.scores_html(scores))
if note:
    st.caption(f"Why the model is right here: {params.md_text(note)}")

labels: dict[str, str] = {}
labels_why = None
if frame.loaded_model(model, "feature labels and logit effects") is not None:
    labels, labels_why = cc.labels(str(path), key, doc, transcoders, model)
if labels_why:
    st.caption(f"No feature labels: {labels_why}")

c1, c2 = st.columns([3, 2])
logits = doc.logits()
logit = frame.url_widget(c1.selectbox, "circuits_logit", "logit", state["logit"], label="Paths into",
                         options=logits, format_func=lambda x: ex.label(doc, x))
interactive = frame.url_widget(c2.toggle, "circuits_plotly", "charts", qp.get("charts") == "plotly",
                               label="Interactive charts (Plotly: zoom and pan; slower to load)")
qp["charts"] = "plotly" if interactive else "light"
paths = ex.top_paths(doc, logit, k=5)
edges = ex.path_edges(paths)
st.caption(f"{len(doc.ids)} nodes, {len(doc.wire.get('links', []))} links. Size: influence; colour: kind; blue edges "
           "raise their target, red ones lower it; yellow: the 5 strongest paths into the chosen logit (product of "
           "each edge's share of its target's input). Click a node for its panel.")
if interactive:
    event = st.plotly_chart(rc.graph_figure(doc, paths=edges, selected=state["node"], labels=labels),
                            key="circuits_chart", on_select="rerun", selection_mode="points")
    pts = (event or {}).get("selection", {}).get("points", [])
    if pts and pts[0].get("customdata") and pts[0]["customdata"] != state["node"]:
        parts.set_params(node=str(pts[0]["customdata"]))
else:
    frame.light(rc.graph_svg(doc, link=lambda x: parts.link_to(node=x), paths=edges, selected=state["node"],
                             pinned=set(state["pinned"]), labels=labels))

# widget option names never use the labels: they arrive with the model, and a widget whose option names change is
# a new widget to Streamlit (its value would start over)
order = sorted(doc.ids, key=lambda x: (doc.kind(x) != ex.LOGIT, float(doc.nodes[x].get("influence") or 0.0)))
node = frame.url_widget(st.selectbox, "circuits_node", "node", state["node"], label="Node",
                        options=[None, *order], format_func=lambda x: "(none)" if x is None else
                        f"{x} · {ex.label(doc, x)[:80]}")
if node is None:
    qp.pop("node", None)
    st.caption("Strongest paths: " + "; ".join(f"{s:.3f}: " + " → ".join(p) for s, p in paths))
else:
    parts.node_panel(path, doc, node, state["pinned"], transcoders, labels)

st.subheader("Subgraph")
st.caption("Pin the nodes that carry the prediction and group them into named supernodes; the subgraph below sums "
           "the direct effects between them. The sidebar's Save finding keeps this view.")
parts.pin_editor(doc, state["pinned"], state["groups"])
sub = ex.subgraph(doc, state["pinned"], state["groups"], labels)
frame.light(rc.subgraph_svg(sub, doc.tokens, link=lambda x: parts.link_to(node=x)))

checks.panel(key, doc, model, transcoders, state, labels, logit)
