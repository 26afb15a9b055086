"""The fault matrix: the served index deleted or replaced underneath a running dashboard session. Each rerun of the
session says so in a friendly message (no exception), and the session recovers once an index is back."""

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def messages(at) -> str:
    return " ".join(str(m.value) for kind in ("warning", "error", "info") for m in getattr(at, kind))


def test_index_deleted_then_replaced_under_a_session(env, monkeypatch, tmp_path):
    from dashboard.cache import models

    models.start([env["model"]])
    models._done[env["model"]].wait()
    served = tmp_path / "served.duckdb"
    shutil.copy(env["db"], served)
    monkeypatch.setenv("NEUROBOARD_DB", str(served))
    monkeypatch.setenv("NEUROBOARD_MODELS", env["model"])
    at = AppTest.from_file(str(ROOT / "dashboard/app.py"), default_timeout=120)
    at.switch_page("app_pages/neurons.py")
    at.query_params.update({"run": env["run"], "layer": "1", "unit": "3"})
    at.run()
    assert not at.exception and not messages(at)
    shown = [m.label for m in at.metric]
    served.unlink()  # deleted underneath
    at.run()
    print("deleted ->", messages(at))
    assert not at.exception and "not found" in messages(at)
    served.write_bytes(b"half a file")  # replaced by something that is not an index
    at.run()
    print("garbage ->", messages(at))
    assert not at.exception and messages(at)
    served.unlink()
    shutil.copy(env["db"], served)  # and back
    at.run()
    assert not at.exception and not messages(at) and [m.label for m in at.metric] == shown
