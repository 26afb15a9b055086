"""Findings in the frame: the sidebar's "Save finding" and "Manifest" on every page with data, and the tour bar
(`serve --tour FINDINGS`).

The findings file is $NEUROBOARD_FINDINGS (set by `neuroboard serve --findings PATH`; default data/findings.duckdb).
Saving computes the view's snapshot from its URL (core.findings.views, the same route as `neuroboard findings add`)
with the models this server has loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from core.errors import UserError
from core.findings.views import PAGES as SNAPSHOT_PAGES
from dashboard.shell.params import int_param, md_text

PAGE_FILES = Path(__file__).resolve().parents[1] / "app_pages"


def findings_path() -> Path:
    return Path(os.environ.get("NEUROBOARD_FINDINGS") or "data/findings.duckdb").resolve()


def touring() -> bool:
    return os.environ.get("NEUROBOARD_TOUR") == "1"


def current_url(url_path: str, params: dict) -> str:
    base = (st.context.url or "http://127.0.0.1").rstrip("/")
    q = urlencode({k: v for k, v in params.items() if k != "tour"})
    return f"{base}/{url_path}" + (f"?{q}" if q else "")


def _index_for(params: dict) -> str | None:
    from dashboard.views import catalog

    paths = catalog.index_paths()
    try:
        i = int(params.get("db", 0))
    except ValueError:
        i = 0
    return str(paths[i]) if paths and 0 <= i < len(paths) else None


def save_box(url_path: str) -> None:
    """Sidebar: title and note, and a button that saves the page as it is now (its URL, a snapshot of its data, a
    manifest) to the findings file."""
    if url_path not in SNAPSHOT_PAGES:
        return
    with st.sidebar.expander("Save finding", icon=":material/bookmark_add:"):
        title = st.text_input("Title", key="finding_title", max_chars=200)
        note = st.text_area("Note", key="finding_note", max_chars=5000, height=80)
        if st.button("Save this view", key="finding_save", disabled=not title.strip()):
            params = st.query_params.to_dict()
            url = current_url(url_path, params)
            try:
                from core.findings import store
                from core.findings.views import make_finding
                from dashboard.cache.models import model

                with st.spinner("Computing the snapshot…"):
                    f = make_finding(url, title, note, db=_index_for(params), load=model)
                    fid = store.add(findings_path(), f)
            except (UserError, ValueError, OSError) as e:
                st.warning(f"Not saved: {str(e).splitlines()[0]}")
                return
            st.success(f"Saved as finding {fid}.")
            st.page_link(str(PAGE_FILES / "findings.py"), label="All findings", icon=":material/bookmarks:")


def manifest_box(url_path: str) -> None:
    """Sidebar: this view's manifest (model and weights hash, tokenizer, run configuration, parameters, versions),
    computed when opened."""
    if url_path not in SNAPSHOT_PAGES:
        return
    box = st.sidebar.expander("Manifest", icon=":material/fact_check:", key="manifest_box", on_change="rerun")
    if not box.open:
        return
    from core.findings.views import view_manifest
    from dashboard.cache.models import model

    params = st.query_params.to_dict()
    try:
        man = view_manifest(url_path, params, db=_index_for(params), load=model)
    except (UserError, ValueError, OSError) as e:
        box.caption(f"No manifest: {str(e).splitlines()[0]}")
        return
    box.caption("What this view's numbers depend on; a saved finding keeps it, and `neuroboard recheck` recomputes "
                "from it.")
    box.json(man, expanded=2)


def tour_bar(url_path: str) -> None:
    """In tour mode, above the page: which finding this is, its note, and previous/next (the arrow keys); at Home
    without a finding, the start of the tour."""
    from core.findings import store

    try:
        found = store.list_findings(findings_path())
    except UserError as e:
        st.warning(str(e))
        return
    if not found:
        st.info("This tour has no findings.")
        return
    i, problem = int_param(st.query_params, "tour", 0, 0, len(found))
    if problem:
        st.warning(problem)

    def go(j: int):
        f = found[j - 1]
        st.switch_page(str(PAGE_FILES / f"{f.page or 'home'}.py"), query_params=f.params | {"tour": str(j)})

    c1, c2, c3 = st.columns([1, 6, 1])
    if c1.button("Previous", key="tour_prev", shortcut="Left", disabled=i <= 1, icon=":material/arrow_back:"):
        go(i - 1)
    if c3.button("Next", key="tour_next", shortcut="Right", disabled=i >= len(found), icon=":material/arrow_forward:"):
        go(i + 1)
    if i == 0:
        c2.markdown(f"**Tour of {len(found)} findings.** Press → (or Next) to start.")
        return
    f = found[i - 1]
    c2.markdown(f"**{i} / {len(found)} · {md_text(f.title)}**")
    if f.note:
        c2.caption(md_text(f.note))

