"""Shared fixtures: tiny random-initialised models built from configs, a fixed seed, offline mode."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers.tiny import tiny_model, tiny_tokenizer  # noqa: E402

torch.set_num_threads(2)


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
