"""Findings: /findings. The saved views of this server's findings file ($NEUROBOARD_FINDINGS): each with its title,
note and a summary of its snapshot, a link that reopens its live view, editing, reordering and deleting, and the
export of all of them as one self-contained HTML file. A finding whose index or model is gone keeps its snapshot,
with a note saying so.
"""

from pathlib import Path

import streamlit as st

from core.errors import UserError
from core.findings import store
from dashboard.shell.findings import PAGE_FILES, findings_path, touring
from dashboard.shell.params import md_text

st.title("Findings")
path = findings_path()
try:
    found = store.list_findings(path)
except UserError as e:
    st.warning(str(e))
    st.stop()
st.caption(f"`{path}` · {len(found)} finding{'s' * (len(found) != 1)}")
if not found:
    st.info("No findings yet: open a view (a neuron, a feature, a lens, steering, patching) and use **Save finding** "
            "in the sidebar.", icon=":material/bookmark_add:")
    st.stop()


@st.cache_data(max_entries=4, show_spinner="Writing the report…")
def report(stamp: tuple) -> str:
    from dashboard.export import report_html

    return report_html(store.list_findings(path))


st.download_button("Export all as one HTML file", data=report(tuple((f.finding_id, f.title, f.note, f.position)
                                                                     for f in found)),
                   file_name="neuroboard-findings.html", mime="text/html", icon=":material/download:",
                   key="findings_export", on_click="ignore")


def gone(f) -> str | None:
    """Why the live view can no longer be computed, if it cannot."""
    from dashboard.cache.models import allowed_models

    index = f.manifest.get("index")
    if index and not Path(index).exists():
        return f"its index {index} is gone"
    model = (f.manifest.get("model") or {}).get("name")
    if model and model not in allowed_models():
        return f"its model {model} is not available to this server"
    return None


def summary(f) -> str:
    s = f.snapshot
    kind = s.get("kind", f.page)
    if kind in ("neurons", "features"):
        st_ = s.get("stats", {})
        return (f"{s.get('model')} run {s.get('run')}, {'SAE' if kind == 'features' else 'layer'} {s.get('layer')} "
                f"unit {s.get('unit')}: max {float(st_.get('max') or 0):.4g}, density "
                f"{float(st_.get('density') or 0):.3g}, {len(s.get('examples', []))} examples saved")
    if kind == "trajectories":
        last = (s.get("layers") or [{}])[-1]
        return (f"{s.get('model')} {s.get('lens')} lens at {s.get('token')!r}: final top token "
                f"{last.get('top_token')!r} (p {float(last.get('top_prob') or 0):.3f})")
    if kind == "steering":
        return f"{s.get('model')}: default {s.get('default')!r} / steered {s.get('steered')!r}"
    if kind == "patching":
        return (f"{s.get('model')}: clean logit difference {s.get('clean_diff', 0):.3f}, corrupted "
                f"{s.get('corrupted_diff', 0):.3f}")
    return kind


for i, f in enumerate(found):
    with st.container(border=True):
        st.markdown(f"**{i + 1}. {md_text(f.title)}** · {f.page} · saved {f.created_at[:16]}")
        if f.note:
            st.caption(md_text(f.note))
        st.caption(md_text(summary(f)))
        why = gone(f)
        if why:
            st.warning(f"The live view cannot be recomputed: {why}. The snapshot above is what was saved.",
                       icon=":material/history:")
        else:
            st.page_link(str(PAGE_FILES / f"{f.page or 'home'}.py"), label="Open the live view",
                         query_params=f.params, icon=":material/open_in_new:")
        if touring():
            continue
        with st.expander("Edit, reorder, delete"):
            title = st.text_input("Title", value=f.title, key=f"fd_title_{f.finding_id}", max_chars=200)
            note = st.text_area("Note", value=f.note, key=f"fd_note_{f.finding_id}", max_chars=5000)
            c1, c2, c3, c4 = st.columns(4)
            try:
                if c1.button("Save", key=f"fd_save_{f.finding_id}"):
                    store.update(path, f.finding_id, title=title, note=note)
                    st.rerun()
                if c2.button("Up", key=f"fd_up_{f.finding_id}", disabled=i == 0):
                    store.move(path, f.finding_id, -1)
                    st.rerun()
                if c3.button("Down", key=f"fd_down_{f.finding_id}", disabled=i == len(found) - 1):
                    store.move(path, f.finding_id, 1)
                    st.rerun()
                if c4.button("Delete", key=f"fd_del_{f.finding_id}", type="primary"):
                    store.delete(path, f.finding_id)
                    st.rerun()
            except UserError as e:
                st.warning(str(e))
