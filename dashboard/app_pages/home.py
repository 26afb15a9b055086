"""Home: the jobs in progress, the runs and the models of the index. While anything is running the view refreshes
itself, so runs and pages appear as their data is written (`make demo` serves while it indexes).

Light elements only (HTML tables, progress bars, page links): no data grid, no chart library to load.
"""

from pathlib import Path

import streamlit as st

from core.index.db import IndexFileError, IndexLockedError
from dashboard.render import svg
from dashboard.shell import frame
from dashboard.views import catalog

REFRESH_S = 3.0
NEURONS = Path(__file__).with_name("neurons.py")
FEATURES = Path(__file__).with_name("features.py")
STEERING = Path(__file__).with_name("steering.py")
PATCHING = Path(__file__).with_name("patching.py")
CIRCUITS = Path(__file__).with_name("circuits.py")
RUN_COLUMNS = ["run", "model", "corpus", "status", "tokens", "target", "results", "layers", "units", "created"]


def runs_table(runs) -> str:
    df = catalog.runs_frame(runs)
    rows = [[r.run_id, r.model, Path(r.corpus).name, r.status, f"{r.tokens:,}",
             f"{r.tokens_target:,}" if r.tokens_target else "", catalog.results_label(r),
             df["layers"][i], f"{int(df['units'][i]):,}", r.created_at[:16]] for i, r in enumerate(runs)]
    return svg.table(RUN_COLUMNS, rows, align=["right", "left", "left", "left", "right", "right", "left", "left",
                                               "right", "left"])


def show_jobs(path) -> bool:
    """Progress of the index's jobs; True while any is waiting or running."""
    jobs = catalog.load_jobs(path)
    if not jobs:
        return False
    active = [j for j in jobs if j.status in ("waiting", "running")]
    if active or any(j.status == "failed" for j in jobs):
        st.subheader("Jobs")
    for j in jobs:
        if j.status == "running":
            st.progress(j.fraction or 0.0, text=catalog.job_label(j))
        elif j.status in ("waiting", "failed") or active:
            st.caption(catalog.job_label(j))
    return bool(active)


def show_index(path, db: int | None) -> bool:
    """Lay out the index's jobs, runs and models; True while the view should refresh (index locked, a job or a run
    in progress)."""
    if not path.exists():
        st.info(f"No index at `{path}` yet. Build one with `neuroboard extract` (or `make demo`), or serve an "
                "existing index with `neuroboard serve --db INDEX`.", icon=":material/info:")
        return False
    try:
        runs = catalog.load_runs(path)
        busy = show_jobs(path)
    except IndexLockedError:
        st.warning(f"The index is updating (another process is writing to it) — retrying every "
                   f"{REFRESH_S:.0f} s.", icon=":material/hourglass_top:")
        st.button("Retry now", key="home_retry")
        return True
    except IndexFileError as e:
        st.warning(str(e), icon=":material/warning:")
        return False
    if not runs:
        intervention_links(path, [], db)
        circuit_links(path, db)
        st.info("The index has no runs yet; `neuroboard extract` fills it.", icon=":material/info:")
        return busy
    st.caption(f"`{path}` · {catalog.file_size(path)} · {len(runs)} run{'s' * (len(runs) != 1)}")
    from dashboard.views.features import run_saes

    saes = {}
    for s in run_saes(path):
        saes.setdefault(s.run_id, []).append(s)
    for r in runs:  # the first of the two clicks from Home to a neuron's (or a feature's) top examples
        if r.has_results:
            params = {"run": str(r.run_id)} | ({"db": str(db)} if db is not None else {})
            label = f"Browse the neurons of run {r.run_id} ({r.model})" + (" — first results" if r.partial else "")
            st.page_link(NEURONS, label=label, icon=":material/neurology:", query_params=params)
            for s in saes.get(r.run_id, []):
                st.page_link(FEATURES, label=f"Browse the features of SAE {s.sae_id} of run {r.run_id} ({s.name}, "
                             f"{s.site}, {s.d_sae:,} features)", icon=":material/scatter_plot:",
                             query_params=params | {"sae": str(s.sae_id)})
    intervention_links(path, [r.model for r in runs], db)
    circuit_links(path, db)
    running = catalog.running_lines(runs)
    for frac, label in running:
        st.progress(frac, text=label)
    st.subheader("Runs")
    st.html(runs_table(runs))
    st.subheader("Models")
    m = catalog.models_frame(runs)
    st.html(svg.table(list(m.columns), [[r.model, r.n_layers, r.d_mlp, r.runs, f"{r.tokens:,}"]
                                        for r in m.itertuples()], align=["left", "right", "right", "right", "right"]))
    return bool(running) or busy


def intervention_links(path, models: list[str], db: int | None) -> None:
    """Links to each stored steering sweep (the steering page opens on its direction, layer and grid) and to
    patching on the index's first model."""
    extra = {"db": str(db)} if db is not None else {}
    sweeps = catalog.load_sweeps(path)
    for s in sweeps:
        layer = s.direction_layer if s.direction_layer is not None else s.config.get("layer")
        st.page_link(STEERING, label=f"Steer {s.model} along {s.config.get('direction')} and see its layer × α "
                     f"sweep ({s.name})", icon=":material/tune:",
                     query_params={"model": s.model, "direction": str(s.config.get("direction")),
                                   "sweep": str(s.sweep_id)} | ({"layer": str(layer)} if layer is not None else {})
                     | extra)
    models = models + [s.model for s in sweeps]
    if models:
        st.page_link(PATCHING, label=f"Patch a clean and a corrupted prompt through {models[0]} (activation "
                     "patching heatmaps, back-patching)", icon=":material/swap_horiz:",
                     query_params={"model": models[0]} | extra)


def circuit_links(path, db: int | None) -> None:
    """A link to each stored attribution graph (the circuits page opens on it)."""
    from dashboard.views.circuits import graphs

    for g in graphs(path):
        targets = ", ".join(repr(t) for t in g.config.get("target") or []) or "its most probable tokens"
        st.page_link(CIRCUITS, label=f"Circuits: {g.prompt!r} → {targets} ({g.model})", icon=":material/hub:",
                     query_params={"graph": str(g.graph_id)} | ({"db": str(db)} if db is not None else {}),
                     help=g.config.get("note") or None)


st.title("neuroboard")
st.caption("Models and extraction runs in this index.")

live = st.session_state.get("home_live", False)
path = frame.choose_index()
paths = catalog.index_paths()
db = paths.index(path) if len(paths) > 1 else None
if path.exists():
    from dashboard.app_pages.explain_search import search_box

    search_box(path, "home_search", db)


@st.fragment(run_every=REFRESH_S if live else None)
def index_view():
    now_live = show_index(path, db)
    if now_live != live:  # start or stop the timer: the decorator's run_every is fixed per full run
        st.session_state["home_live"] = now_live
        st.rerun()


index_view()
