"""The findings page through AppTest: listing, a finding whose index is gone, editing and reordering, and a file
that is not a findings file."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.findings import store
from core.findings.store import Finding

ROOT = Path(__file__).resolve().parents[3]


def run(monkeypatch, path) -> AppTest:
    monkeypatch.setenv("NEUROBOARD_FINDINGS", str(path))
    monkeypatch.setenv("NEUROBOARD_DB", str(path.parent / "no-index.duckdb"))
    at = AppTest.from_file(str(ROOT / "dashboard/app.py"), default_timeout=60)  # through navigation: page links
    at.switch_page("app_pages/findings.py")
    return at.run()


def test_list_gone_edit_reorder(monkeypatch, tmp_path):
    f = tmp_path / "f.duckdb"
    snap = {"kind": "neurons", "model": "m", "run": 1, "layer": 1, "unit": 5, "stats": {"max": 2.0}, "examples": []}
    store.add(f, Finding(title="first *bold*", url="http://x/neurons?run=1&layer=1&unit=5", snapshot=snap,
                         manifest={"index": str(tmp_path / "gone.duckdb")}, note="a note"))
    store.add(f, Finding(title="second", url="http://x/patching?model=m", snapshot={"kind": "patching",
                         "clean_diff": 1.0, "corrupted_diff": -1.0}, manifest={}))
    at = run(monkeypatch, f)
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "1. first \\*bold\\*" in text and "2. second" in text  # user text shown as text
    assert any("gone.duckdb is gone" in w.value for w in at.warning)
    at.text_input(key="fd_title_2").set_value("renamed")
    at.button(key="fd_save_2").click().run()
    at.button(key="fd_up_2").click().run()
    assert [(x.finding_id, x.title) for x in store.list_findings(f)] == [(2, "renamed"), (1, "first *bold*")]
    at.button(key="fd_del_1").click().run()
    assert [x.finding_id for x in store.list_findings(f)] == [2] and not at.exception


def test_not_a_findings_file_and_empty(monkeypatch, tmp_path):
    from core.index.db import connect

    connect(tmp_path / "index.duckdb").close()
    at = run(monkeypatch, tmp_path / "index.duckdb")
    assert not at.exception and "not a findings file" in at.warning[0].value
    at = run(monkeypatch, tmp_path / "none.duckdb")
    assert not at.exception and "No findings yet" in at.info[0].value
