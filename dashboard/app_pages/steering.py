"""Steering: /steering?model=<m>&compare=<m2|none>&direction=<spec>&layer=<L>&alpha=<a>&prompt=<text>&tokens=<n>
&mode=<steer|ablate>&sweep=<id>.

A direction (from a built-in, CSV-path or uploaded prompt set by difference of means, paired-difference PCA or a
probe; an SAE feature; a neuron; a safetensors file, by path or uploaded) with its quality (held-out separation, pair cosine), the default and steered continuations
of a prompt side by side with where they diverge (or, with mode=ablate, the directionally ablated model's), the
next-token distribution shift, and the layer × α sweeps stored
by `neuroboard sweep` (behaviour, side effects, fluency, anti-steerable share). A second model beside the first when
the direction can be made for it. All state in the URL; an upload is named in it by content (`METHOD:upload:<digest>`,
`file:upload:<digest>`: dashboard.cache.uploads), so a copied link reopens it while this server holds the upload.
"""

import streamlit as st

from dashboard.cache.models import allowed_models
from dashboard.cache.models import model as loaded
from dashboard.render import interventions as ri
from dashboard.shell import frame

DEFAULT_PROMPT = "I watched the film last night and"
DEFAULT_DIRECTION = "diffmeans:sentiment"


def steer_view(name: str, spec: str, layer: int, alpha: float, prompt: str, tokens: int, where,
               ablating: bool = False) -> None:
    from core.errors import UserError
    from dashboard.cache import interventions as ci

    try:
        with st.spinner(f"{'Ablating' if ablating else 'Steering'} {name}…"):
            d = ci.direction(name, spec, layer)
            res = (ci.ablate_result(name, spec, layer, prompt, tokens) if ablating else
                   ci.steer_result(name, spec, layer, alpha, prompt, tokens))
    except (UserError, ValueError) as e:
        where.warning(f"{name}: {e}")
        return
    q = d.quality
    made = ", ".join(f"{k}={v}" for k, v in d.made.items())
    where.caption(f"{name}: direction ({made})" + (
        f"; held-out separation (AUC) **{q.separation:.3f}** on {q.held_out} prompts; mean cosine between the "
        f"{q.pairs} training pairs' differences **{q.pair_cosine:.3f}** (low: the pairs disagree, steering is "
        "likely unreliable)" if q else "") + (
        ". Directional ablation: the direction removed from every write into the residual stream (embeddings, every "
        "attention and MLP output), at every layer and position; the lower line is the ablated model."
        if ablating else f". Added after block {layer}: α × {res['stream_norm']:.3g} (the median norm of that "
        "stream over demo-corpus tokens) along the unit direction."))
    frame.light(ri.continuation_html(prompt, *steered_tokens(res), label="ablated" if ablating else "steered"), where)
    where.caption(f"Sampled (temperature 1, seed 0) — default: {res['sampled_default']!r}; steered: "
                  f"{res['sampled_steered']!r}")
    frame.light(ri.shift_html(res["gained"][:6], res["lost"][:6]), where)
    where.caption(f"KL(default ‖ steered) of the next-token distribution: {res['next_token_kl']:.4g} nats.")


def steered_tokens(res: dict) -> tuple[list[str], list[str], int]:
    return res["default_tokens"], res["steered_tokens"], res["diverge"]


def sweeps_view(path, name: str) -> None:
    from dashboard.cache import interventions as ci

    found = frame.read_or_stop(ci.sweeps, str(path), name)
    st.subheader(f"Layer × α sweeps of {name}")
    if not found:
        st.caption(f"None stored for {name} yet: `neuroboard sweep --model {name} --direction {DEFAULT_DIRECTION} "
                   "--layer 15 --db INDEX` runs one (a CLI job with a progress bar).")
        return
    ids = [s.sweep_id for s in found]
    by_id = {s.sweep_id: s for s in found}
    sid = frame.url_widget(st.selectbox, "steer_sweep", "sweep", ids[-1] if str(st.query_params.get("sweep", ""))
                           not in map(str, ids) else int(st.query_params["sweep"]), label="Sweep", options=ids,
                           format_func=lambda i: f"{i} · {by_id[i].name} · {by_id[i].created_at[:16]}")
    res = ci.sweep(str(path), int(sid))
    if res is None:
        st.warning(f"Sweep {sid} is not in this index.")
        return
    q = (res.get("direction") or {}).get("quality")
    st.caption(f"{len(res['prompts'])} prompts of {res.get('prompt_set')}, {res['tokens']} generated tokens each; "
               f"direction made at block {res['direction_layer']}"
               + (f" (separation {q['separation']:.3f}, pair cosine {q['pair_cosine']:.3f})" if q else "")
               + f"; {res['seconds']} s.")
    grids = ri.sweep_html(res)
    c1, c2 = st.columns(2)
    frame.light(grids["score"], c1)
    frame.light(grids["anti"], c2)
    c3, c4 = st.columns(2)
    frame.light(grids["kl"], c3)
    frame.light(grids["ppl"], c4)


def upload_spec(current: str) -> str:
    """The direction spec after the uploader: a newly uploaded CSV gives `METHOD:upload:<digest>` (the method of the
    current spec if it is one, else diffmeans), a .safetensors vector `file:upload:<digest>`; otherwise `current`.
    A file that is not usable: a friendly message, and `current` stays."""
    from core.data.prompt_sets import PromptSetError
    from core.interventions.directions import METHODS
    from dashboard.cache import uploads

    up = st.file_uploader(f"…or upload a prompt set (CSV: text,label[,group], at most {uploads.MAX_UPLOAD_PROMPTS:,} "
                          "rows) or a direction (.safetensors, one vector)", type=["csv", "safetensors"],
                          key="steer_upload")
    if up is None:
        return current
    try:
        if up.name.endswith(".safetensors"):
            new = "file:" + uploads.uploaded_vector(up.getvalue(), up.name)
        else:
            kind = current.partition(":")[0]
            new = f"{kind if kind in METHODS else 'diffmeans'}:" + uploads.uploaded_set(up.getvalue(), up.name)
    except (PromptSetError, uploads.UploadError) as e:
        st.warning(str(e))
        return current
    if st.session_state.get("_steer_upload_seen") == new:  # already applied: the text box may have edited it since
        return current
    st.session_state["_steer_upload_seen"] = new
    return new


st.title("Steering")
allowed = allowed_models()
qp = st.query_params
c1, c2, c3 = st.columns([2, 2, 3])
models = frame.model_picker("steer", allowed, where=(c1, c2))
spec0 = upload_spec(qp.get("direction", DEFAULT_DIRECTION))
spec = frame.url_widget(c3.text_input, "steer_direction", "direction", spec0,
                        label="Direction: diffmeans|pca|probe:SET (truth, sentiment, a CSV path), feature:SAE:F, "
                              "neuron:L:U, file:PATH.safetensors", max_chars=500)
prompt = frame.url_widget(st.text_input, "steer_prompt", "prompt", qp.get("prompt", DEFAULT_PROMPT), label="Prompt",
                          max_chars=2000)
d1, d2, d3 = st.columns(3)
layer = frame.url_widget(d1.number_input, "steer_layer", "layer", frame.param_int("layer", 6, 0, 200),
                         label="Layer (steer after this block; the direction is made here)", min_value=0,
                         max_value=200, step=1)
try:
    alpha0 = float(qp.get("alpha", "0.5"))
except ValueError:
    alpha0 = 0.5
    st.warning(f"alpha={qp.get('alpha')!r} is not a number; showing α = 0.5.")
alpha = frame.url_widget(d2.number_input, "steer_alpha", "alpha", alpha0, label="α (in stream norms; negative "
                         "steers away)", min_value=-100.0, max_value=100.0, step=0.05)
tokens = frame.url_widget(d3.number_input, "steer_tokens", "tokens", frame.param_int("tokens", 24, 1, 128),
                          label="Tokens to generate", min_value=1, max_value=128, step=1)
ablating = frame.url_widget(st.toggle, "steer_ablate", "mode", qp.get("mode") == "ablate",
                            label="Directional ablation instead of steering (the direction removed everywhere)")
st.query_params["mode"] = "ablate" if ablating else "steer"
path = frame.choose_index()
if [m for m in models if frame.loaded_model(m, "steered continuations") is None]:
    st.stop()
cols = st.columns(len(models))
for col, name in zip(cols, models, strict=True):
    n_layers = loaded(name).n_layers
    if not 0 <= int(layer) < n_layers:
        col.warning(f"{name} has layers 0-{n_layers - 1}; layer {layer} is out of range.")
        continue
    steer_view(name, spec, int(layer), float(alpha), prompt, int(tokens), col, ablating)
sweeps_view(path, models[0])
