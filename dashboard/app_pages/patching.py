"""Activation patching: /patching?model=<m>&compare=<m2|none>&view=<patch|backpatch>&clean=&corrupted=&answer=&foil=
&prompt=.

Patch: the corrupted prompt's run with one activation at a time replaced by the clean run's, as heatmaps of the
normalised logit difference (1 = the clean answer restored): residual stream, attention and MLP outputs (layer ×
position) and each head's output (layer × head). Back-patch: for one prompt, a later block's last-position output
written over an earlier block's; the answer's probability and rank (source × target). A second model beside the
first when the prompts suit it too. All state in the URL; results are computed live (cached per input), except
grids stored in the index for this model and input (the demo stores its default pair's: core.index.patch_grids),
which are read without waiting for the model.
"""

import streamlit as st

from core.index.patch_grids import DEFAULT_PAIR
from dashboard.cache import interventions as ci
from dashboard.cache.models import allowed_models
from dashboard.render import interventions as ri
from dashboard.shell import frame

DEFAULTS = DEFAULT_PAIR | {"prompt": "The Eiffel Tower is in the city of"}
VIEWS = {"patch": "Activation patching", "backpatch": "Back-patching"}


def patch_view(name: str, clean: str, corrupted: str, answer: str, foil: str, where, stored: dict | None) -> None:
    from core.errors import UserError

    try:
        with st.spinner(f"Patching {name}: every layer, position and head…"):
            res = stored or ci.patch_result(name, clean, corrupted, answer, foil)
    except (UserError, ValueError) as e:
        where.warning(f"{name}: {e}")
        return
    where.caption(f"{name}: logit({answer!r}) − logit({foil!r}) is {res['clean_diff']:.3f} on the clean prompt and "
                  f"{res['corrupted_diff']:.3f} on the corrupted one; each cell is (patched − corrupted) / (clean − "
                  "corrupted)." + (" Grids stored in the index (by `neuroboard demo`)." if stored else ""))
    for html in ri.patch_grids_html(res).values():
        frame.light(html, where)


def backpatch_view(name: str, prompt: str, answer: str, where) -> None:
    from core.errors import UserError

    try:
        with st.spinner(f"Back-patching {name}…"):
            bp = ci.backpatch_result(name, prompt, answer)
    except (UserError, ValueError) as e:
        where.warning(f"{name}: {e}")
        return
    frame.light(ri.backpatch_html(bp), where)
    where.caption("The diagonal writes a block's output into itself and changes nothing. Cells above it patch an "
                  "earlier block's state later; below it (source later than target) is back-patching.")


st.title("Patching")
allowed = allowed_models()
qp = st.query_params
c1, c2, c3 = st.columns([2, 2, 2])
models = frame.model_picker("patch", allowed, where=(c1, c2))
view = frame.url_widget(c3.segmented_control, "patch_view", "view", frame.param_choice("view", list(VIEWS), "patch"),
                        label="View", options=list(VIEWS), format_func=VIEWS.get, required=True)
if view == "patch":
    clean = frame.url_widget(st.text_input, "patch_clean", "clean", qp.get("clean", DEFAULTS["clean"]),
                             label="Clean prompt", max_chars=2000)
    corrupted = frame.url_widget(st.text_input, "patch_corrupted", "corrupted",
                                 qp.get("corrupted", DEFAULTS["corrupted"]),
                                 label="Corrupted prompt (the same number of tokens)", max_chars=2000)
a1, a2 = st.columns(2)
answer = frame.url_widget(a1.text_input, "patch_answer", "answer", qp.get("answer", DEFAULTS["answer"]),
                          label="Answer token (one token; mind the leading space)", max_chars=100)
if view == "patch":
    foil = frame.url_widget(a2.text_input, "patch_foil", "foil", qp.get("foil", DEFAULTS["foil"]),
                            label="Foil token", max_chars=100)
else:
    prompt = frame.url_widget(a2.text_input, "patch_prompt", "prompt", qp.get("prompt", DEFAULTS["prompt"]),
                              label="Prompt", max_chars=2000)
path = frame.choose_index()
stored = {m: ci.stored_patch(str(path), m, clean, corrupted, answer, foil) for m in models} if view == "patch" else {}
if [m for m in models if stored.get(m) is None and frame.loaded_model(m, "patching results") is None]:
    st.stop()
cols = st.columns(len(models))
for col, name in zip(cols, models, strict=True):
    if view == "patch":
        patch_view(name, clean, corrupted, answer, foil, col, stored[name])
    else:
        backpatch_view(name, prompt, answer, col)
