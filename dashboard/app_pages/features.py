"""SAE feature page: /features?run=<run_id>&sae=<s>&feature=<f>&ctx=<tokens each side>&map=<0|1>&text=<text>
&cmp=<run>:sae<s2>&cmp_unit=<f2>.

The body is the generic unit page (dashboard.app_pages.unit_body) over the run's SAE s (core.saes.features): stats,
histogram of the non-zero activations, top examples and interval groups, logit effects; then the SAE's quality
numbers, the 10 nearest features by decoder cosine, head attribution for an SAE on attention outputs, the feature
map (on demand) and features on your text; with `cmp`, another SAE's best-matching features (activation
correlation) and the chosen one's page beside (dashboard.app_pages.unit_compare). All state in the URL.
"""

from urllib.parse import urlencode

import streamlit as st

from core.index.db import IndexLockedError
from dashboard.app_pages import unit_body
from dashboard.app_pages.explain_search import search_box
from dashboard.app_pages.unit_compare import compare_target
from dashboard.render import features as fr
from dashboard.shell import frame, params
from dashboard.views import features as fv

st.title("SAE features")
path = frame.choose_index()
qp = st.query_params
all_saes = frame.read_or_stop(fv.run_saes, path)
if not all_saes:
    st.info("No run in this index has SAE features. Index an SAE's features with the neurons: "
            "`neuroboard extract --model M --sae SAE_FOLDER ...` (SAELens, sparsify or Gemma Scope files), or train "
            "one with `neuroboard train-sae`.")
    st.stop()
if "run" not in qp:
    st.query_params["run"] = str(all_saes[0].run_id)
runs, run = frame.choose_run(path)
saes = [s for s in all_saes if s.run_id == run.run_id]
if not saes:
    st.info(f"Run {run.run_id} indexed no SAE features; runs with features: "
            f"{', '.join(sorted({str(s.run_id) for s in all_saes}))}.")
    st.stop()
by_id = {s.sae_id: s for s in saes}
sae_id, p1 = params.choice_param(qp, "sae", list(by_id), saes[0].sae_id)
info = by_id[sae_id]
feature, p2 = params.int_param(qp, "feature", 0, 0, info.d_sae - 1)
W = int(run.config.get("ctx_window", 16)) or 16
ctx, p3 = params.int_param(qp, "ctx", min(12, W), 1, W)
for problem in (p1, p2, p3):
    if problem:
        st.warning(problem)


def link(f: int, **extra) -> str:
    """This page on feature `f` (every other URL param kept)."""
    keep = {k: qp[k] for k in qp if k != "text"}
    return "features?" + urlencode(keep | {"run": str(run.run_id), "sae": str(sae_id), "feature": str(f)} | extra)


c1, c2, c3 = st.columns([2, 1, 2])
sae_id = frame.url_widget(c1.selectbox, "feature_sae", "sae", sae_id, label="SAE", options=list(by_id),
                          format_func=lambda s: f"{s} · {by_id[s].name} · {by_id[s].site} · {by_id[s].d_sae:,} "
                                                f"{'semi-NMF' if by_id[s].activation == 'nnls' else by_id[s].activation}")
info = by_id[sae_id]
feature = frame.url_widget(c2.number_input, "feature_id", "feature", min(feature, info.d_sae - 1), label="Feature",
                           min_value=0, max_value=info.d_sae - 1, step=1)
ctx = frame.url_widget(c3.slider, "feature_ctx", "ctx", ctx, label="Context tokens each side", min_value=1,
                       max_value=W)
kind = f"feature:{info.path}"
frame.light(fr.quality_html(info.quality))
search_box(path, "feature_explain_search")
interactive = frame.url_widget(st.toggle, "feature_plotly", "charts", qp.get("charts") == "plotly",
                               label="Interactive charts (Plotly: zoom and pan; slower to load)")
st.query_params["charts"] = "plotly" if interactive else "light"
out = "the decoder row at " + (info.out_site or info.site) + (
    ", a combination of neurons through the MLP's down projection" if info.site.startswith("neurons.") else "")
cmp = compare_target("features", run, runs, f"sae:{info.path}", int(feature), saes=all_saes)
main, beside = st.columns(2) if cmp else (st.container(), None)
if cmp:
    with beside:
        st.markdown(f"**Beside it: run {cmp.run.run_id} SAE {cmp.group}, feature {cmp.unit}** "
                    f"(correlation {dict(cmp.matches).get(cmp.unit, float('nan')):.3f})")
        unit_body.unit_body(cmp.kind, path, cmp.run, cmp.group, cmp.unit, int(ctx), interactive=interactive,
                            label="SAE / feature", key="cmp")
with main:
    v = unit_body.unit_body(kind, path, run, int(sae_id), int(feature), int(ctx), interactive=interactive,
                            label="SAE / feature", effects_caption=f"The feature's output direction ({out}, written into "
                            "the residual stream) through the final norm's gain and the unembedding (direct effect)."
                            + (f" A transcoder: examples are on its input site ({info.site}), effects from its output ({info.out_site})."
                               if info.out_site else "")
                            + (" A semi-NMF: each token's factor activations are its non-negative least-squares code "
                               "(exact zeros where a factor is not used)." if info.activation == "nnls" else ""))


def sae_weights():
    from core.saes.features import sae_at  # torch: after the index data is on the page

    try:
        return sae_at(info.path)
    except Exception as e:  # noqa: BLE001 - moved or corrupt files: say so, keep the page
        st.warning(f"The SAE's files at {info.path} cannot be read ({str(e).splitlines()[0][:160]}); nearest "
                   "features, head attribution and live values need them.")
        return None


sae = sae_weights()
if sae is not None:
    from core.saes.features import head_attribution, nearest

    st.subheader("Nearest features")
    st.caption("The 10 features whose decoder directions have the highest cosine with this one's.")
    frame.light(fr.links_table([(link(j), f"feature {j}", f"{c:.3f}") for j, c in nearest(sae, int(feature))],
                               ("feature", "cosine")))
    model_heads = None
    if info.site.startswith("z."):
        lm = frame.loaded_model(run.model, "head attribution")
        if lm is not None:
            model_heads = lm.parts.heads[0]
    attr = head_attribution(sae, model_heads) if model_heads else None
    if attr is not None:
        layer = int(info.site.split(".")[1])
        st.subheader("Attribution to heads")
        st.caption("Norm of the feature's encoder weights on each head's block of z (Kissane et al.).")
        row = attr[int(feature)]
        order = row.argsort()[::-1]
        frame.light(fr.links_table([(f"heads?{urlencode({'model': run.model, 'layer': layer, 'head': int(h)})}",
                                     f"head {layer}.{int(h)}", f"{row[h]:.3f}") for h in order],
                                   ("head", "encoder weight norm")))

show_map = frame.url_widget(st.toggle, "feature_map", "map", qp.get("map") == "1", label="Feature map")
st.query_params["map"] = "1" if show_map else "0"
if show_map:
    try:
        fmap = fv.feature_map(path, run.run_id, sae_id)
    except IndexLockedError:
        fmap, _ = None, st.warning("The index is updating; try again in a moment.")
    if fmap is None:
        st.caption("No feature map for this SAE (extraction ran with --no-sae-map).")
    else:
        event = st.plotly_chart(fr.feature_map_figure(fmap["xy"], fmap["density"], fmap["labels"], int(feature)),
                                key="feature_map_chart", on_select="rerun", selection_mode="points")
        pts = (event or {}).get("selection", {}).get("points", [])
        if pts and pts[0].get("customdata") is not None and int(pts[0]["customdata"]) != int(feature):
            st.query_params["feature"] = str(int(pts[0]["customdata"]))
            st.rerun()


@st.fragment
def my_text() -> None:
    """A fragment: typing text re-runs only this part."""
    st.subheader("Features on your text")
    text = st.text_area("Type text to see each token's strongest features (click one to open it)",
                        qp.get("text", ""), key="feature_text", max_chars=2000)
    if not text:
        if "text" in st.query_params:
            del st.query_params["text"]
        return
    st.query_params["text"] = text
    lm = frame.loaded_model(run.model, "features on your text")
    if lm is None or sae is None:
        return
    from core.errors import UserError
    from core.saes.query import token_features

    try:
        rows = token_features(lm, sae, text, site=info.site)
    except UserError as e:
        st.warning(str(e))
        return
    unit_body.custom_text(kind, run, int(sae_id), int(feature), float(v.stats["max"]) if v else 0.0, text)
    frame.light(fr.token_features_html(rows, lambda f: link(f, text=text)))


my_text()
