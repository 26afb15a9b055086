"""Home: the models and runs of the index; runs still extracting show their progress and refresh by themselves."""

from pathlib import Path

import streamlit as st

from core.index.db import IndexFileError, IndexLockedError
from dashboard.shell import frame
from dashboard.views import catalog

REFRESH_S = 3.0
NEURONS = Path(__file__).with_name("neurons.py")

RUN_COLUMNS = {
    "run_id": st.column_config.NumberColumn("run", format="%d"),
    "tokens": st.column_config.NumberColumn("tokens", format="localized"),
    "target": st.column_config.NumberColumn("target", format="localized"),
    "units": st.column_config.NumberColumn("units", format="localized", help="indexed layers × d_mlp"),
    "progress": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
    "neurons": st.column_config.LinkColumn("neurons", display_text="browse neurons"),
}
MODEL_COLUMNS = {"tokens": st.column_config.NumberColumn("tokens", format="localized")}


def show_index(path, db: int | None) -> bool:
    """Lay out the index's models and runs; True while the view should refresh (index locked or a run running)."""
    if not path.exists():
        st.info(f"No index at `{path}` yet. Build one with `neuroboard extract` (or `make demo`), or serve an "
                "existing index with `neuroboard serve --db INDEX`.", icon=":material/info:")
        return False
    try:
        runs = catalog.load_runs(path)
    except IndexLockedError:
        st.warning(f"The index is updating (another process is writing to it) — retrying every "
                   f"{REFRESH_S:.0f} s.", icon=":material/hourglass_top:")
        st.button("Retry now", key="home_retry")
        return True
    except IndexFileError as e:
        st.warning(str(e), icon=":material/warning:")
        return False
    if not runs:
        st.info("The index has no runs yet; `neuroboard extract` fills it.", icon=":material/info:")
        return False
    st.caption(f"`{path}` · {catalog.file_size(path)} · {len(runs)} run{'s' * (len(runs) != 1)}")
    st.subheader("Runs")
    st.dataframe(catalog.runs_frame(runs, db), key="home_runs", hide_index=True, column_config=RUN_COLUMNS)
    for r in runs:  # the first of the two clicks from Home to a neuron's top examples
        if r.status == "complete":
            params = {"run": str(r.run_id)} | ({"db": str(db)} if db is not None else {})
            st.page_link(NEURONS, label=f"Browse the neurons of run {r.run_id} ({r.model})",
                         icon=":material/neurology:", query_params=params)
    running = catalog.running_lines(runs)
    for frac, label in running:
        st.progress(frac, text=label)
    st.subheader("Models")
    st.dataframe(catalog.models_frame(runs), key="home_models", hide_index=True, column_config=MODEL_COLUMNS)
    return bool(running)


st.title("neuroboard")
st.caption("Models and extraction runs in this index.")

live = st.session_state.get("home_live", False)
path = frame.choose_index()
paths = catalog.index_paths()
db = paths.index(path) if len(paths) > 1 else None


@st.fragment(run_every=REFRESH_S if live else None)
def index_view():
    now_live = show_index(path, db)
    if now_live != live:  # start or stop the timer: the decorator's run_every is fixed per full run
        st.session_state["home_live"] = now_live
        st.rerun()


index_view()
