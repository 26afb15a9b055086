"""neuroboard dashboard, the frame only: page config, the sidebar with the index path, navigation over app_pages/.

Start it with `neuroboard serve --db INDEX` (core.serve), which sets $NEUROBOARD_DB: the index is chosen
by the environment only, never by the URL.
"""

from pathlib import Path

import streamlit as st

from dashboard.data import DB_ENV, index_path

PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="neuroboard", page_icon=":material/neurology:", layout="wide")

nav = st.navigation([st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True),
                     st.Page(PAGES / "neurons.py", title="Neurons", icon=":material/neurology:", url_path="neurons")])

with st.sidebar:
    st.caption("Index")
    st.code(str(index_path()), language=None, wrap_lines=True)
    st.caption(f"Set by `{DB_ENV}` when the server starts.")

nav.run()
