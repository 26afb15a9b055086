"""dashboard.views.catalog: pure helpers over a real (tiny) index, checked against hand-written expectations."""

import pandas as pd

from core.index.queries import RunInfo
from dashboard.views import catalog


def _run(**kw) -> RunInfo:
    base = dict(run_id=1, model="m", model_id=1, corpus="demo", status="complete", tokens=10, tokens_target=10,
                docs=1, layers=[0], n_layers=1, d_mlp=8, created_at="2025-01-02 03:04:05.6", updated_at="",
                config={})
    return RunInfo(**(base | kw))


def test_layer_ranges():
    assert catalog.layer_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert catalog.layer_ranges([3]) == "3"
    assert catalog.layer_ranges([]) == ""


def test_progress_only_for_running_runs_with_a_target():
    assert catalog.progress_pct(_run(status="running", tokens=250, tokens_target=1000)) == 25.0
    assert catalog.progress_pct(_run(status="running", tokens_target=None)) is None
    assert catalog.progress_pct(_run(status="complete", tokens=7, tokens_target=10)) is None


def test_index_path_from_env_only(monkeypatch):
    monkeypatch.delenv(catalog.DB_ENV, raising=False)
    assert [str(p) for p in catalog.index_paths()] == [catalog.DEFAULT_DB]
    monkeypatch.setenv(catalog.DB_ENV, "/x/y.duckdb")
    assert [str(p) for p in catalog.index_paths()] == ["/x/y.duckdb"]
    monkeypatch.setenv(catalog.DB_ENV, "/x/y.duckdb:/z/w.duckdb")
    assert [str(p) for p in catalog.index_paths()] == ["/x/y.duckdb", "/z/w.duckdb"]


def test_home_links_carry_the_index_number(tiny_index):
    runs = catalog.load_runs(tiny_index)
    assert catalog.runs_frame(runs)["neurons"].tolist()[0] == "/neurons?run=1"
    assert catalog.runs_frame(runs, 1)["neurons"].tolist()[0] == "/neurons?run=1&db=1"


def test_frames_from_index(tiny_index):
    runs = catalog.load_runs(tiny_index)
    df = catalog.runs_frame(runs)
    assert list(df.columns) == catalog.RUN_COLUMNS
    assert df["run_id"].tolist() == [1, 2]
    assert df["status"].tolist() == ["complete", "running"]
    assert pd.isna(df["progress"][0]) and df["progress"][1] == 40.0
    assert df["layers"].tolist() == ["0-2 of 3", "0,2 of 3"]
    models = catalog.models_frame(runs)
    assert models.to_dict("records") == [{"model": "tiny-llama", "n_layers": 3, "d_mlp": 128, "runs": 2,
                                          "tokens": 1400}]
    assert catalog.running_lines(runs) == [
        (0.4, "Run 2 (tiny-llama on demo) is extracting: 400 / 1,000 tokens (40%)")]


def test_empty_frames():
    assert catalog.runs_frame([]).empty and list(catalog.runs_frame([]).columns) == catalog.RUN_COLUMNS
    assert catalog.models_frame([]).empty


def test_complete_runs_link_to_their_neuron_page():
    from core.index.queries import RunInfo

    def run(i, status, results=None):
        return RunInfo(i, "m", 1, "demo", status, 10, 20, 1, [0], 1, 8, "2026-01-01 00:00", "2026-01-01", {},
                       results_tokens=results)

    runs = [run(1, "complete", 10), run(2, "running"), run(3, "running", 5)]
    df = catalog.runs_frame(runs)
    assert df["neurons"].tolist()[0] == "/neurons?run=1" and df["neurons"].isna().tolist()[1]
    assert df["neurons"].tolist()[2] == "/neurons?run=3"  # a running run with a preview of its results
    assert [catalog.results_label(r) for r in runs] == ["all", "none yet", "first 5 tokens"]
