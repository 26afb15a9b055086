"""Layer trajectories: /trajectories?model=<m>&compare=<m2|none>&prompt=<text>&view=<lens|stream|sets>&lens=<logit|tuned>
&pos=<-1..>&target=<token>&set=<truth|sentiment>&layer=<rel. depth %>&proj=<pca|umap>&cka=<debiased|linear>.

What each model "thinks" after every block for one prompt (logit or tuned lens), how its residual stream's norm and
direction evolve, and at which layer labelled prompt sets separate; a second model beside the first, aligned by
relative depth, and on a prompt set which of its blocks compute like which of the first's (CKA). All state is in the URL. Models only from dashboard.cache.models.allowed_models().
"""

import numpy as np
import streamlit as st

from dashboard.cache import trajectories as td
from dashboard.cache.models import allowed_models
from dashboard.render import lens as lc
from dashboard.render import svg
from dashboard.shell import frame
from dashboard.shell.frame import loaded_model, model_picker, param_choice, param_int, url_widget
from dashboard.shell.params import md_code

DEFAULT_PROMPT = "The capital of France is"
INTERACTIVE = False  # Plotly figures instead of the light inline ones (URL charts=plotly): the toggle below


def chart(light: str, figure, key: str, where=st) -> None:
    """A chart: the light inline SVG/HTML, or the interactive Plotly figure when the page asks for it (the figure
    is built only then: `figure` is a function)."""
    if INTERACTIVE:
        where.plotly_chart(figure(), key=key)
    else:
        frame.light(light, where)
VIEWS = {"lens": "Lens", "stream": "Residual stream", "sets": "Prompt sets"}


def lens_view(models: list[str], prompt: str, kind: str, target: str) -> None:
    results = []
    for name in models:
        tgt, problem = td.target_of(name, target)
        if problem:
            st.warning(problem)
        results.append(td.lens_result(name, prompt, td.usable_kind(name, kind), tgt))
    T = min(len(r.ids) for r in results)
    pos = -1
    if T > 1:  # a slider needs two values
        pos = url_widget(st.slider, "traj_pos", "pos", param_int("pos", -1, -T, -1), label="Position (counted "
                         "from the end: -1 is the last token)", min_value=-T, max_value=-1)
    cols = st.columns(len(models))
    for col, name, res in zip(cols, models, results, strict=True):
        title = f"{name}: top-1 after each block ({td.usable_kind(name, kind)} lens)"
        chart(lc.lens_grid_html(res, td.vocab_fn(name), title),
              lambda res=res, name=name, title=title: lc.lens_grid(res, td.vocab_fn(name), title),
              f"traj_grid_{name}", col)
    series = [(name, res, len(res.ids) + pos, td.vocab_fn(name)(int(res.target_ids[pos])))
              for name, res in zip(models, results, strict=True)]
    st.subheader("Target across depth")
    st.caption("Target: " + "; ".join(f"{n} → `{md_code(t)}` at token {p} (`{md_code(r.tokens[p])}`)"
                                      for n, r, p, t in series)
               + ". Default target: the model's own final prediction at that position.")
    chart(lc.target_chart_svg(series), lambda: lc.target_chart(series), "traj_target_chart")
    ent = [lc.Series(n, r.entropy[:, p], color=i) for i, (n, r, p, _) in enumerate(series)]
    kl = [lc.Series(f"{n} ({td.usable_kind(n, kind)})", r.kl_final[:, p], color=i) for i, (n, r, p, _) in enumerate(series)]
    c1, c2 = st.columns(2)
    chart(lc.depth_lines_svg(ent, "entropy (nats)", title="Entropy at the position"),
          lambda: lc.depth_lines(ent, "entropy (nats)", title="Entropy at the position"), "traj_entropy", c1)
    kl_title = "KL to the final distribution at the position"
    chart(lc.depth_lines_svg(kl, "KL(final ‖ layer) (nats)", title=kl_title),
          lambda: lc.depth_lines(kl, "KL(final ‖ layer) (nats)", title=kl_title), "traj_kl", c2)
    both = []
    for i, name in enumerate(models):
        both.append(lc.Series(f"{name} logit", td.lens_result(name, prompt, "logit", None).kl_final.mean(1), i))
        if td.tuned_lens(name) is not None:
            both.append(lc.Series(f"{name} tuned", td.lens_result(name, prompt, "tuned", None).kl_final.mean(1), i,
                                  dash="dash"))
    both_title = "Logit vs tuned lens: KL to the final distribution, mean over positions"
    chart(lc.depth_lines_svg(both, "mean KL (nats)", log_y=True, title=both_title),
          lambda: lc.depth_lines(both, "mean KL (nats)", log_y=True, title=both_title), "traj_kl_both")
    missing = [n for n in models if td.tuned_lens(n) is None]
    if missing:
        st.caption("No tuned lens yet for " + ", ".join(missing) + " (train one with `neuroboard train-lens "
                   "--model NAME`).")


def stream_view(models: list[str], prompt: str) -> None:
    geos = [td.residual(n, prompt) for n in models]
    cols = st.columns(len(models))
    for col, name, g in zip(cols, models, geos, strict=True):
        toks = [td.vocab_fn(name)(i) for i in td.stream_of(name, prompt).ids]
        chart(lc.norm_grid_html(g, toks, f"{name}: residual norm (log colour scale)"),
              lambda g=g, toks=toks, name=name: lc.norm_heatmap(g, toks, f"{name}: residual norm"),
              f"traj_norm_{name}", col)
        col.caption("Largest activations (massive: |value| > 100 and > 1000× the block's median |h|)")
        col.html(svg.table(["layer", "dim", "position", "token", "value", "ratio", "massive"],
                           [[m["layer"], m["dim"], m["position"], repr(toks[m["position"]]), float(m["value"]),
                             float(m["ratio"]), "yes" if m["massive"] else ""] for m in g.massive]))
    med = [lc.Series(n, g.median_update, color=i) for i, (n, g) in enumerate(zip(models, geos, strict=True))]
    cos = [lc.Series(n, np.nanmedian(g.cos_prev[:, 1:] if g.cos_prev.shape[1] > 1 else g.cos_prev, axis=1), color=i)
           for i, (n, g) in enumerate(zip(models, geos, strict=True))]
    quiet = {n: g.quiet for n, g in zip(models, geos, strict=True)}
    c1, c2 = st.columns(2)
    up_title, cos_title = "Relative update per block (median over positions)", "Cosine with the block's input " \
        "(median over positions)"
    chart(lc.depth_lines_svg(med, "‖h_l − h_{l−1}‖ / ‖h_{l−1}‖", log_y=True, highlight=quiet, title=up_title),
          lambda: lc.depth_lines(med, "‖h_l − h_{l−1}‖ / ‖h_{l−1}‖", log_y=True, highlight=quiet, title=up_title),
          "traj_update", c1)
    chart(lc.depth_lines_svg(cos, "cos(h_l, h_{l−1})", highlight=quiet, title=cos_title),
          lambda: lc.depth_lines(cos, "cos(h_l, h_{l−1})", highlight=quiet, title=cos_title), "traj_cos", c2)
    st.caption("Circled: quiet blocks, whose median relative update is below 0.1 (the first position is left "
               "out: attention sinks make it an outlier). " + "; ".join(
                   f"{n}: {', '.join(map(str, q)) or 'none'}" for n, q in quiet.items()))


def sets_view(models: list[str]) -> None:
    from core.data.prompt_sets import BUILTIN_SETS, PromptSetError
    from core.geometry.separation import GeometryError
    from dashboard.cache import uploads

    names = list(BUILTIN_SETS)
    c1, c2, c3 = st.columns([1, 1, 2])
    spec = url_widget(c1.selectbox, "traj_set", "set", param_choice("set", names, names[0]), label="Prompt set",
                      options=names)
    method = url_widget(c2.selectbox, "traj_proj", "proj", param_choice("proj", ["pca", "umap"], "pca"),
                        label="Projection", options=["pca", "umap"])
    up = c3.file_uploader("…or your own CSV (columns text,label, optional group; at most "
                          f"{uploads.MAX_UPLOAD_PROMPTS:,} rows; not kept in the URL)", type="csv", key="traj_upload")
    try:
        if up is not None:
            spec = uploads.uploaded_set(up.getvalue(), up.name)
        ps = td.prompt_set(spec)
        geos = [td.set_metrics(n, spec) for n in models]
    except (PromptSetError, GeometryError) as e:
        st.warning(str(e))
        return
    st.caption(f"{len(ps.texts)} prompts, labels: " + ", ".join(f"{lab} ({ps.labels.count(lab)})"
                                                                 for lab in sorted(set(ps.labels))))
    metrics = [("probe_acc", f"probe accuracy ({geos[0].folds}-fold CV)", False), ("silhouette", "silhouette", False),
               ("davies_bouldin", "Davies–Bouldin (lower = better)", True),
               ("calinski_harabasz", "Calinski–Harabasz", True), ("centroid_dist", "centroid distance", True)]
    cols = st.columns(2)
    for j, (field, title, log_y) in enumerate(metrics):
        series = [lc.Series(n, getattr(g, field), color=i) for i, (n, g) in enumerate(zip(models, geos, strict=True))]
        chart(lc.depth_lines_svg(series, title, log_y=log_y, title=title),
              lambda series=series, title=title, log_y=log_y: lc.depth_lines(series, title, log_y=log_y, title=title),
              f"traj_set_{field}", cols[j % 2])
    st.caption("At which layer are the labels separated (the first block within 0.02 of the best probe accuracy)? "
               + "; ".join(separation(n, g) for n, g in zip(models, geos, strict=True))
               + (". Folds keep each `group` (e.g. a true statement and its false twin) together."
                  if ps.groups else "."))
    depth = url_widget(st.slider, "traj_layer", "layer", param_int("layer", 50, 0, 100),
                       label="Projection at relative depth (%)", min_value=0, max_value=100, step=5)
    cols = st.columns(len(models))
    for col, name in zip(cols, models, strict=True):
        L = len(td.set_metrics(name, spec).probe_acc)
        layer = min(L - 1, max(0, round(depth / 100 * L) - 1))
        try:
            xy = td.projection(name, spec, layer, method)
        except GeometryError as e:
            col.warning(str(e))
            continue
        sc_title = f"{name}: block {layer} ({method.upper()})"
        chart(lc.scatter_svg(xy, ps.labels, ps.texts, sc_title),
              lambda xy=xy, sc_title=sc_title: lc.scatter_2d(xy, ps.labels, ps.texts, sc_title),
              f"traj_scatter_{name}", col)
    if len(models) == 2:
        cka_view(models, spec)


def cka_view(models: list[str], spec: str) -> None:
    """Which blocks of the two models compute alike on this set: CKA of every block pair (core.geometry.cka)."""
    from dashboard.render.compare import cka_html

    st.subheader(f"Layer similarity: {models[0]} against {models[1]}")
    kind = url_widget(st.radio, "traj_cka", "cka", param_choice("cka", ["debiased", "linear"], "debiased"),
                      label="CKA estimator (debiased: near 0 for unrelated representations; linear: biased upwards "
                            "when the width is not small against the number of prompts)",
                      options=["debiased", "linear"], horizontal=True)
    res = td.cka(models[0], models[1], spec, kind)
    frame.light(cka_html(res))
    st.caption(f"Each block's output at each prompt's last token; the {res['prompts']} prompts of the set are the "
               "same for both models, so different tokenizers compare. Best match in "
               f"{models[1]} for each block of {models[0]}: "
               + ", ".join(f"{i}→{j}" for i, j in enumerate(res["best"])) + ".")


def separation(name: str, g) -> str:
    best = float(g.probe_acc.max())
    if best < g.chance + 0.1:
        return f"{name}: not separated (best probe accuracy {best:.2f}, chance {g.chance:.2f})"
    return f"{name}: block {g.separation_layer()} of {g.n_layers} (accuracy {best:.2f}, chance {g.chance:.2f})"


st.title("Layer trajectories")
allowed = allowed_models()
qp = st.query_params
prompt = url_widget(st.text_input, "traj_prompt", "prompt", qp.get("prompt", DEFAULT_PROMPT), label="Prompt",
                    max_chars=2000)
c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
models = model_picker("traj", allowed, compare_default="gemma3-270m", where=(c1, c2))
kind = url_widget(c3.radio, "traj_lens", "lens", param_choice("lens", ["logit", "tuned"], "logit"), label="Lens",
                  options=["logit", "tuned"])
target = url_widget(c4.text_input, "traj_target", "target", qp.get("target", ""), label="Target token (e.g. "
                    "' Paris'; empty: the model's own prediction)", max_chars=100)
view = url_widget(st.segmented_control, "traj_view", "view", param_choice("view", list(VIEWS), "lens"), label="View",
                  options=list(VIEWS), format_func=VIEWS.get, required=True)
INTERACTIVE = url_widget(st.toggle, "traj_plotly", "charts", qp.get("charts") == "plotly",
                         label="Interactive charts (Plotly: zoom and pan; slower to load)")
st.query_params["charts"] = "plotly" if INTERACTIVE else "light"
waiting = [m for m in models if loaded_model(m, "its views") is None]
if waiting:
    st.stop()
if kind == "tuned":
    for name in models:
        if td.tuned_lens(name) is None:
            st.warning(f"{name} has no tuned lens yet (`neuroboard train-lens --model {name}`); its views use "
                       "the logit lens.")
if "traj_tuned_problem" in st.session_state:
    st.warning(st.session_state.pop("traj_tuned_problem"))
try:
    if view == "sets":
        sets_view(models)
    elif not prompt.strip():
        st.info("Type a prompt.")
    elif view == "lens":
        lens_view(models, prompt, kind, target)
    else:
        stream_view(models, prompt)
except ValueError as e:  # a prompt longer than a model's context, a prompt of special tokens only, ...
    st.warning(f"Cannot show this prompt: {e}")
