"""Home page through AppTest: the runs table, the progress of a running run, and friendly index problems."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[3] / "dashboard" / "app.py")
HOLD_LOCK = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(30)"


def run_app(monkeypatch, db) -> AppTest:
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=30)
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def tables(at) -> list[list[list[str]]]:
    """The page's HTML tables (render.svg.table) as rows of cell texts, header row first."""
    import html as h

    out = []
    for el in at.get("html"):
        for tab in re.findall(r"<table.*?</table>", el.proto.body, re.S):
            rows = re.findall(r"<tr>(.*?)</tr>", tab, re.S)
            out.append([[h.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
                        for r in rows])
    return out


def column(table, name) -> list[str]:
    i = table[0].index(name)
    return [row[i] for row in table[1:]]


def links(at) -> list[tuple[str, dict]]:
    return [(pl.proto.label, dict(pl.proto.query_string and [kv.split("=") for kv in pl.proto.query_string.split("&")]
                                  or [])) for pl in at.get("page_link")]


def test_home_lists_runs_and_progress(monkeypatch, tiny_index):
    at = run_app(monkeypatch, tiny_index)
    assert not at.exception
    runs, models = tables(at)
    assert column(runs, "run") == ["1", "2"]
    assert column(runs, "model") == ["tiny-llama", "tiny-llama"]
    assert column(runs, "status") == ["complete", "running"]
    assert column(runs, "tokens") == ["1,000", "400"] and column(runs, "target") == ["1,000", "1,000"]
    assert column(runs, "results") == ["all", "none yet"]
    assert column(models, "model") == ["tiny-llama"]
    bars = at.get("progress")
    assert len(bars) == 1 and "400 / 1,000 tokens (40%)" in bars[0].proto.text
    assert at.session_state["home_live"]  # a running run keeps the view refreshing
    assert str(tiny_index) in texts(at.sidebar.caption)
    assert column(runs, "units") == ["384", "256"]  # indexed layers x d_mlp
    size = tiny_index.stat().st_size / 2**10
    assert f"{size:,.1f} kB" in texts(at.caption) or f"{size / 2**10:,.1f} MB" in texts(at.caption)


def test_missing_index_is_a_friendly_message(monkeypatch, tmp_path):
    at = run_app(monkeypatch, tmp_path / "nope.duckdb")
    assert not at.exception
    assert "No index at" in texts(at.info)
    assert not tables(at)


def test_not_an_index_is_a_friendly_message(monkeypatch, tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    at = run_app(monkeypatch, bad)
    assert not at.exception
    assert "cannot open index" in texts(at.warning)


@pytest.mark.slow  # a lock held by another process for ~10 s
def test_index_locked_by_a_writer_then_retry(monkeypatch, tiny_index):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tiny_index)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        at = run_app(monkeypatch, tiny_index)
        assert not at.exception
        assert "The index is updating" in texts(at.warning)
        assert not tables(at)
        assert at.session_state["home_live"]
    finally:
        holder.kill()
        holder.wait()
    at.button(key="home_retry").click().run()
    assert not at.exception
    assert column(tables(at)[0], "run") == ["1", "2"]


def test_empty_index_says_so(monkeypatch, tmp_path):
    from core.index.db import connect

    db = tmp_path / "empty.duckdb"
    connect(db).close()
    at = run_app(monkeypatch, db)
    assert not at.exception
    assert "no runs yet" in texts(at.info)


def test_url_cannot_choose_the_index(monkeypatch, tiny_index, tmp_path):
    monkeypatch.setenv("NEUROBOARD_DB", str(tiny_index))
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["db"] = str(tmp_path / "other.duckdb")
    at.run()
    assert not at.exception
    assert str(tiny_index) in texts(at.sidebar.caption)
    assert column(tables(at)[0], "run") == ["1", "2"]


def test_sidebar_picks_among_served_indexes(monkeypatch, tiny_index, tmp_path):
    """Several indexes: the sidebar offers them by name, the URL keeps the number, a bad number falls back."""
    empty = tmp_path / "empty.duckdb"
    from core.index.db import connect

    connect(empty).close()
    monkeypatch.setenv("NEUROBOARD_DB", f"{tiny_index}:{empty}")
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["db"] = "1"
    at.run()
    assert not at.exception
    box = at.sidebar.selectbox(key="frame_db")
    assert box.value == 1 and "no runs yet" in texts(at.info)
    box.set_value(0).run()
    assert not at.exception
    assert links(at)[0][1] == {"run": "1", "db": "0"}
    at.query_params["db"] = "7"
    at.run()
    assert not at.exception and "`db=7` is out of range" in texts(at.warning)
