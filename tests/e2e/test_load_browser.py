"""Many users at once, the short form of bench/load.py: 3 Chromium sessions for 30 s against one `neuroboard
serve` of a tiny index (neurons, SAE features, heads, the lens page), after one session alone; then the same
while an extraction writes a new run into the served index. No page shows an exception or the index as locked,
the writer finishes, and the server's CPU seconds and RSS are measured (figures, not asserted: bench/load.py
states them against the goal)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
@pytest.mark.slow
def test_three_sessions_then_with_a_writer(tiny_lm_dir, tmp_path):
    from dashboard.browser import missing_browser

    why = missing_browser()
    if why:
        pytest.skip(why)
    from helpers.findings import tiny_extracted
    from helpers.tiny import write_corpus

    sys.path.insert(0, str(ROOT / "bench"))
    import load

    db, _, _ = tiny_extracted(tiny_lm_dir, tmp_path)
    corpus = write_corpus(tmp_path / "more.txt", n_docs=30, seed=9)
    writer = [sys.executable, "-m", "core.cli", "extract", "--model", str(tiny_lm_dir), "--corpus", corpus,
              "--context-len", "32", "--batch-tokens", "64", "--chunk-tokens", "128", "--no-progress"]
    out = load.run(Path(db), sessions=3, seconds=30, single_seconds=10, extract=True, extract_cmd=writer)
    print(out)
    pages = {u.split("?")[0] for u in load.urls(Path(db), 50, 0)}
    assert {"/neurons", "/features", "/heads", "/trajectories"} <= pages
    for name in ("single", "many", "writing"):
        ph = out[name]
        assert ph["views"] >= ph["sessions"] and ph["errors"] == 0, ph["error_examples"]
        assert ph["server_cpu_s"] > 0 and ph["server_peak_rss_mb"] > 0
    assert out["writing"]["lock_errors"] == 0 and out["writing"]["writer_exit"] == 0
