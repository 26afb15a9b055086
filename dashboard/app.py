"""neuroboard dashboard, the frame only: page config and navigation over app_pages/. Each page draws the shared
sidebar (dashboard.shell.frame: index, model, run).

Every page gets the sidebar's "Save finding" (or, with `serve --tour`, the tour bar): dashboard.shell.findings.

Start it with `neuroboard serve --db INDEX [--db INDEX2 ...]` (core.cli.serve), which sets $NEUROBOARD_DB: the files
are named by the environment only; the URL can only pick one of them by number (`db=`).
"""

from pathlib import Path

import streamlit as st

from dashboard.cache import models
from dashboard.shell import findings

PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="neuroboard", page_icon=":material/neurology:", layout="wide",
                   initial_sidebar_state="collapsed" if findings.touring() else "auto")

nav = st.navigation([st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True),
                     st.Page(PAGES / "neurons.py", title="Neurons", icon=":material/neurology:", url_path="neurons"),
                     st.Page(PAGES / "features.py", title="SAE features", icon=":material/scatter_plot:",
                             url_path="features"),
                     st.Page(PAGES / "trajectories.py", title="Trajectories", icon=":material/timeline:",
                             url_path="trajectories"),
                     st.Page(PAGES / "heads.py", title="Heads", icon=":material/grid_view:", url_path="heads"),
                     st.Page(PAGES / "steering.py", title="Steering", icon=":material/tune:", url_path="steering"),
                     st.Page(PAGES / "patching.py", title="Patching", icon=":material/swap_horiz:",
                             url_path="patching"),
                     st.Page(PAGES / "circuits.py", title="Circuits", icon=":material/hub:", url_path="circuits"),
                     st.Page(PAGES / "findings.py", title="Findings", icon=":material/bookmarks:",
                             url_path="findings")])

if findings.touring():  # the presenter's bar above every page; no editing controls
    findings.tour_bar(nav.url_path)
else:
    findings.save_box(nav.url_path)
    findings.manifest_box(nav.url_path)
try:
    nav.run()
finally:  # also after st.stop(): the models the page waits for, then the indexes' ones, once the page is out
    models.start_requested()
