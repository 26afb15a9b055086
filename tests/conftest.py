"""Shared fixtures: tiny random-initialised models built from configs, a fixed seed, offline mode."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import realmodels  # noqa: E402
from helpers.tiny import tiny_model, tiny_tokenizer  # noqa: E402

torch.set_num_threads(2)

# Every test that loads a built-in model carries `slow`, every browser test `e2e` (`make test-fast` leaves both
# out). This process and every Python process a test starts (through PYTHONPATH's sitecustomize) note the built-in
# model files they open; a test that opened one without the mark fails (see `_marks_match_what_the_test_did`).
realmodels.install()
_MODEL_LOG = Path(tempfile.mkdtemp(prefix="neuroboard-model-log-")) / "opened.txt"
_MODEL_LOG.touch()
os.environ[realmodels.LOG_ENV] = str(_MODEL_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).parent / "helpers" / "guard"), os.environ.get("PYTHONPATH")]))
_log_seen = {"offset": 0}


def _opened_since_last_test() -> set[str]:
    with open(_MODEL_LOG) as f:
        f.seek(_log_seen["offset"])
        lines = f.read().splitlines()
        _log_seen["offset"] = f.tell()
    opened = set(lines) | set(realmodels.opened)
    realmodels.opened.clear()
    return opened


def unmarked_real_model_loads(item, opened: set[str]) -> str | None:
    """Why `item`'s marks do not match what it did (None when they do)."""
    if opened and item.get_closest_marker("slow") is None:
        return f"loads a built-in model (opened {sorted(opened)[0]}) but is not marked @pytest.mark.slow"
    if "browser" in getattr(item, "fixturenames", ()) and item.get_closest_marker("e2e") is None:
        return "drives a real browser but is not marked @pytest.mark.e2e"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    why = unmarked_real_model_loads(item, _opened_since_last_test())
    if why:  # fixtures of a wider scope are counted against the test that first set them up
        pytest.fail(f"{item.nodeid} {why}", pytrace=False)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(params=["llama", "gemma3", "gpt2"])
def tiny(request):
    return tiny_model(request.param)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A tiny random Llama with its tokenizer saved as a local model folder (loads through the Auto classes)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_model("llama")
    model.config.bos_token_id, model.config.pad_token_id = 0, 1
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def tiny_index(tmp_path):
    """A small index: one model, one corpus, run 1 complete (1,000 tokens), run 2 running at 40% (400 / 1,000)."""
    import json

    from core.index.db import connect, fold_wal

    path = tmp_path / "index.duckdb"
    con = connect(path)
    try:
        con.execute("INSERT INTO models (model_id, name, source, arch, n_layers, d_model, d_mlp, vocab_size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [1, "tiny-llama", "test", "llama", 3, 64, 128, 300])
        con.execute("INSERT INTO corpora (corpus_id, spec) VALUES (?, ?)", [1, "demo"])
        config = json.dumps({"model": "tiny-llama", "context_len": 64})
        con.executemany("INSERT INTO runs (run_id, model_id, corpus_id, config, layers, status, tokens_done, "
                        "docs_done, tokens_target, results_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [[1, 1, 1, config, [0, 1, 2], "complete", 1000, 12, 1000, 1000],
                         [2, 1, 1, config, [0, 2], "running", 400, 5, 1000, None]])
    finally:
        con.close()
    fold_wal(path)  # one file, as a finished writer leaves it (tests copy it)
    return path


@pytest.fixture
def dashboard_server(tiny_index, tmp_path):
    """The dashboard serving `tiny_index`; yields the base URL."""
    from helpers.serving import served

    with served(tiny_index, tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """A real headless Chromium (skipped, with the reason, where it cannot run)."""
    from dashboard.browser import launch, missing_browser

    why = missing_browser()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()
