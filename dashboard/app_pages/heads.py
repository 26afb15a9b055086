"""Attention heads: /heads?model=<m>&layer=<L>&head=<H>&compare=<m2|none>&prompt=<text>.

Every head's role scores at a glance (stored by `neuroboard heads`: one query per model), the top heads per role, and
a head panel: its scores, ablation effect and attention pattern on a repeated-token probe and on the user's own text
(heatmap, and a token view: hover a query token to see where it attends). Click a cell of any map to open that head.
A second model's maps beside the first. All state in the URL.
"""

from urllib.parse import urlencode

import streamlit as st

from dashboard.cache import heads as hd
from dashboard.render import heads as hc
from dashboard.shell import frame

INTERACTIVE = False  # clickable Plotly maps instead of the light linked tables (URL charts=plotly): the toggle


def head_link(layer: int, head: int) -> str:
    """This page with another head selected, every other URL param kept (a link reopens that exact view)."""
    params = {k: st.query_params[k] for k in st.query_params} | {"layer": str(layer), "head": str(head)}
    return "heads?" + urlencode(params)
DEFAULT_PROMPT = "The cat sat on the mat. The cat sat on the mat. Alice met Bob, and then Alice thanked Bob."


def clicked(event, key: str) -> tuple[int, int] | None:
    """(layer, head) of a newly clicked cell of a role map, once per click."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if not points:
        return None
    p = points[0]
    cell = (int(p["y"]), int(p["x"]))
    if st.session_state.get(f"_seen_{key}") == cell:
        return None
    st.session_state[f"_seen_{key}"] = cell
    return cell


def role_maps(name: str, arrays: dict, selected, cols: int = 3, prefix: str = "heads_map") -> None:
    grid = st.columns(cols)
    if not INTERACTIVE:  # light: HTML tables whose cells link to their head
        for i, (role, values) in enumerate(arrays.items()):
            grid[i % cols].html(hc.role_map_html(values, role, selected, head_link if prefix == "heads_map"
                                                 else lambda la, he: head_link(la, he) + f"&model={name}"))
        return
    for i, (role, values) in enumerate(arrays.items()):
        key = f"{prefix}_{name}_{role}"
        event = grid[i % cols].plotly_chart(hc.role_map(values, role, selected), key=key, on_select="rerun",
                                            selection_mode="points")
        cell = clicked(event, key)
        if cell is not None and prefix == "heads_map":
            st.query_params["layer"], st.query_params["head"] = str(cell[0]), str(cell[1])
            st.rerun()


def head_panel(name: str, arrays: dict, layer: int, head: int, prompt: str, half_len: int) -> None:
    st.subheader(f"{name}: layer {layer}, head {head}")
    roles = list(arrays)
    for row in range(0, len(roles), 5):
        cols = st.columns(5)
        for col, role in zip(cols, roles[row:row + 5], strict=False):
            col.metric(hc.ROLE_TITLES.get(role, role), f"{arrays[role][layer, head]:.3f}")
    if frame.loaded_model(name, "attention patterns") is None:
        return
    t1, t2 = st.tabs(["Your text", "Repeated random tokens (probe)"])
    with t1:
        try:
            toks, pattern = hd.prompt_pattern(name, layer, prompt)
        except ValueError as e:  # longer than the model's context, only special tokens, ...
            st.warning(f"Cannot show this text: {e}")
            return
        if len(toks) == hd.MAX_PATTERN_TOKENS:
            st.caption(f"The first {hd.MAX_PATTERN_TOKENS} tokens of your text.")
        if INTERACTIVE:
            st.plotly_chart(hc.pattern_heatmap(pattern[head], toks, f"layer {layer} head {head} on your text"),
                            key="heads_pattern_text")
        else:
            frame.light(hc.pattern_svg(pattern[head], toks, f"layer {layer} head {head} on your text"))
        # our own page: tokens travel as escaped JSON and are set with textContent (render.heads.token_view_html)
        st.iframe(hc.token_view_html(toks, pattern[head]), height=min(400, 60 + 18 * (len(toks) // 12 + 1)))
    with t2:
        toks, pattern = hd.probe_pattern(name, layer, half_len)
        st.caption("BOS, then random tokens repeated twice: an induction head attends from each token of the second "
                   "copy to the token after its first occurrence (one diagonal stripe, offset by the copy length "
                   "minus one).")
        if INTERACTIVE:
            st.plotly_chart(hc.pattern_heatmap(pattern[head], toks, f"layer {layer} head {head} on the probe"),
                            key="heads_pattern_probe")
        else:
            frame.light(hc.pattern_svg(pattern[head], toks, f"layer {layer} head {head} on the probe"))


st.title("Attention heads")
path = frame.choose_index()
sets = frame.read_or_stop(hd.head_sets, str(path))
if not sets:
    st.info("No head scores in this index yet. Compute them with `neuroboard heads --model MODEL --db "
            f"{path}` (built-ins: smollm2-135m, gemma3-270m).")
    st.stop()
by_name = {s.model: s for s in sets}
names = list(by_name)
model, *beside = frame.model_picker("heads", names)
hs = by_name[model]
layer = frame.param_int("layer", 0, 0, hs.n_layers - 1)
head = frame.param_int("head", 0, 0, hs.n_heads - 1)
st.query_params["layer"], st.query_params["head"] = str(layer), str(head)
INTERACTIVE = frame.url_widget(st.toggle, "heads_plotly", "charts", st.query_params.get("charts") == "plotly",
                               label="Interactive charts (Plotly: click a map to open a head; slower to load)")
st.query_params["charts"] = "plotly" if INTERACTIVE else "light"
arrays = hd.scores(str(path), hs.model_id, hs.created_at)
st.caption(f"{hs.n_layers} layers × {hs.n_heads} heads ({hs.n_kv_heads} key/value heads) · scored "
           f"{hs.created_at[:16]} · click a cell to open that head (hover: its score)")
if not beside:
    role_maps(model, arrays, (layer, head))
else:
    compare = beside[0]
    other = by_name[compare]
    other_arrays = hd.scores(str(path), other.model_id, other.created_at)
    for role in arrays:
        c1, c2 = st.columns(2)
        with c1:
            role_maps(model, {role: arrays[role]}, (layer, head), cols=1)
        if role in other_arrays:
            with c2:
                role_maps(compare, {role: other_arrays[role]}, None, cols=1, prefix="heads_cmp")
with st.expander("Top heads per role", expanded=False):
    st.html(hc.top_heads_html(arrays))
prompt = frame.url_widget(st.text_area, "heads_prompt", "prompt", st.query_params.get("prompt", DEFAULT_PROMPT),
                          label="Your text (for the head's attention pattern)", max_chars=1000)
if prompt.strip():
    head_panel(model, arrays, layer, head, prompt, int(hs.config.get("half_len", 32)))
else:
    st.info("Type some text to see the head's attention pattern on it.")
