"""The sidebar every page shares: which index, model and run, kept in the URL (`db=<n>`, `run=<id>`).

Also `url_widget`: a widget whose value lives in the URL. A changed URL (a pasted link, a button that rewrites a
param) wins over the widget's remembered state; a moved widget rewrites the URL. `model_picker`: the model pages'
model and a second model beside it (`model=`, `compare=`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from core.index.db import IndexFileError, IndexLockedError
from core.index.queries import RunInfo
from dashboard.shell import params
from dashboard.views import catalog


def url_widget(make: Callable, key: str, param: str, url_value, **kw):
    """Create `make(label..., key=key, **kw)` showing `url_value`, and write the chosen value back to `param`."""
    seen = f"_url_{key}"
    if st.session_state.get(seen) != url_value or key not in st.session_state:
        st.session_state[key] = url_value
    value = make(key=key, **kw)
    st.session_state[seen] = value
    st.query_params[param] = str(value)
    return value


def param_choice(name: str, options: list[str], default: str) -> str:
    """The URL param `name` if it is one of `options`, else `default` with a friendly warning."""
    value, problem = params.str_param(st.query_params, name, options, default)
    if problem:
        st.warning(problem)
    return value


def param_int(name: str, default: int, lo: int, hi: int) -> int:
    """The integer URL param `name` within [lo, hi], else `default` with a friendly warning."""
    value, problem = params.int_param(st.query_params, name, default, lo, hi)
    if problem:
        st.warning(problem)
    return value


NONE = "none"
"""The `compare=` value of a page showing one model."""


def model_picker(page: str, options: list[str], *, compare_default: str = NONE, where=None) -> list[str]:
    """The page's model and a second one beside it, as two selectboxes kept in the URL (`model=`, `compare=`, `none`
    for no second model), keyed `{page}_model` and `{page}_compare`; `where`: two containers (default: the page).
    Returns the models to show: [model] or [model, compare]."""
    c1, c2 = where or (st, st)
    model = url_widget(c1.selectbox, f"{page}_model", "model", param_choice("model", options, options[0]),
                       label="Model", options=options)
    others = [NONE] + [m for m in options if m != model]
    default = compare_default if compare_default in others else NONE
    compare = url_widget(c2.selectbox, f"{page}_compare", "compare", param_choice("compare", others, default),
                         label="Beside it", options=others)
    return [model] + ([compare] if compare != NONE else [])


def choose_index() -> Path:
    """Index chooser (shown only when the server offers several); URL param `db` is its number."""
    paths = catalog.index_paths()
    if len(paths) == 1:
        with st.sidebar:  # a caption, not st.code: the code block pulls in a 1.5 MB syntax highlighter
            st.caption(f"Index: `{params.md_code(str(paths[0]))}`")
        return paths[0]
    i, problem = params.int_param(st.query_params, "db", 0, 0, len(paths) - 1)
    if problem:
        st.warning(problem)
    with st.sidebar:
        i = url_widget(st.selectbox, "frame_db", "db", i, label="Index", options=list(range(len(paths))),
                       format_func=lambda j: paths[j].name, help="Indexes this server was started with")
    return paths[i]


def read_or_stop(read: Callable, *args):
    """`read(*args)`, or stop the page with a friendly message when the index is missing, not an index, or locked
    by a writer (with a Retry button)."""
    try:
        return read(*args)
    except IndexLockedError:
        st.warning("The index is updating (another process is writing to it). Try again in a moment.",
                   icon=":material/hourglass_top:")
        st.button("Retry", key="frame_retry")
        st.stop()
    except IndexFileError as e:
        st.info(str(e))
        st.stop()


def light(html_text: str, where=None) -> None:
    """A light chart or table (dashboard.render.svg). Inline SVG needs st.markdown's raw HTML: st.html's sanitizer
    drops <svg>. The markup is built by our own builders, with every text in it escaped. It is passed as one line:
    in Markdown a line break inside an HTML block can end it (a blank line, or an indented line after one, makes
    the rest Markdown: a code block of the markup), and token text holds line breaks; as `&#10;` a break is the same
    character to the HTML parser, in text and in attribute values."""
    (where or st).markdown(html_text.replace("\r", "&#13;").replace("\n", "&#10;"), unsafe_allow_html=True)


def loaded_model(name: str, what: str):
    """The model if it is loaded; else None, after a placeholder that reruns the page once the model is ready
    (it loads in the background: dashboard.cache.models), so a page shows its index data at once and fills in
    `what` (e.g. "logit effects") later. A model that cannot load: a friendly line, None."""
    from dashboard.cache import models

    if models.ready(name) and models.error(name) is None:
        return models.model(name)
    if models.error(name):
        st.warning(f"{name} could not be loaded, so {what} are not shown: {models.error(name)}")
        return None
    models.request(name)  # loaded once this script run ends (dashboard/app.py), not in the middle of it

    @st.fragment(run_every=1.0)
    def waiting() -> None:
        if models.ready(name):
            st.rerun()
        st.caption(f":material/hourglass_top: Loading {name}… {what} appear when it is ready.")

    waiting()
    return None


def choose_run(path: Path) -> tuple[list[RunInfo], RunInfo]:
    """Sidebar model and run choosers over the complete runs of `path`; stops the page with a friendly message
    when the index is missing, locked by a writer, or has no complete run."""
    runs = [r for r in read_or_stop(catalog.load_runs, path) if r.has_results]
    if not runs:
        st.info("No run in this index has results yet; `neuroboard extract` makes one (Home shows the progress of "
                "runs still extracting).")
        st.stop()
    ids = [r.run_id for r in runs]
    run_id, problem = params.choice_param(st.query_params, "run", ids, ids[0])
    if problem:
        st.warning(problem)
    by_id = {r.run_id: r for r in runs}
    models = list(dict.fromkeys(r.model for r in runs))
    with st.sidebar:
        model = st.selectbox("Model", models, index=models.index(by_id[run_id].model), key=f"frame_model_{run_id}")
        if model != by_id[run_id].model:  # a new model: its first run
            run_id = next(r.run_id for r in runs if r.model == model)
        choices = [r.run_id for r in runs if r.model == model]
        run_id = url_widget(st.selectbox, f"frame_run_{model}", "run", run_id, label="Run", options=choices,
                            format_func=lambda i: f"run {i} · {Path(by_id[i].corpus).name} · {by_id[i].tokens:,} tok")
    return runs, by_id[run_id]
