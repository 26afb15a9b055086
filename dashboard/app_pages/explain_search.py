"""The explanation search box (Home, neuron and feature pages): units whose explanations match a query by meaning
(all-MiniLM-L6-v2, offline) and keyword, as links with the similarity, the detection score and the embedding score
beside its control's. URL param `q`."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import streamlit as st

from core.index.db import IndexFileError
from dashboard.render.features import links_table
from dashboard.shell import frame
from dashboard.views import units as unit_views

log = logging.getLogger(__name__)


@st.cache_data(max_entries=64, ttl=30, show_spinner="Searching explanations…")
def _search(path: str, query: str) -> list[dict]:
    return unit_views.search_explanations(path, query, 20)


def href(r: dict, db: int | None = None) -> str:
    extra = {"db": str(db)} if db is not None else {}
    if r["layer"] >= 0:
        return "neurons?" + urlencode({"run": r["run_id"], "layer": r["layer"], "unit": r["unit"]} | extra)
    return "features?" + urlencode({"run": r["run_id"], "sae": -r["layer"], "feature": r["unit"]} | extra)


def search_box(path, key: str, db: int | None = None) -> None:
    """Nothing when the index has no explanations yet."""
    try:
        n = unit_views.explanation_count(str(path))
    except IndexFileError as e:  # an index being written, or of an older schema: no box
        log.debug("no explanation search for %s: %s", path, e)
        return
    except Exception:  # anything else: no box either, and the log says why
        log.warning("no explanation search for %s", path, exc_info=True)
        return
    if not n:
        return
    q = frame.url_widget(st.text_input, key, "q", st.query_params.get("q", ""), max_chars=200,
                         label=f"Search the {n:,} unit explanations (by meaning and keyword)",
                         placeholder="e.g. numbers, Python keywords")
    if not q.strip():
        if "q" in st.query_params:
            del st.query_params["q"]
        return
    hits = _search(str(path), q.strip())
    if not hits:
        st.caption("No explanation matches.")
        return

    def f(x):
        return "–" if x is None else f"{x:.2f}"
    rows = [(href(r, db), (f"run {r['run_id']} layer {r['layer']} unit {r['unit']}" if r["layer"] >= 0 else
                           f"run {r['run_id']} SAE {-r['layer']} feature {r['unit']}") + f": {r['explanation']}",
             f"similarity {f(r['similarity'])} · detection {f(r['detection_bacc'])} · embedding "
             f"{f(r.get('embedding_auc'))} (control {f(r.get('control_embedding_auc'))})") for r in hits]
    frame.light(links_table(rows, ("unit: explanation", "match · scores (0.5 = chance; control: another unit's "
                                                        "explanation)")))
