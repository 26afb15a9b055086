"""Search's embedder: the bundled all-MiniLM-L6-v2 loads from its package folder without touching the process's
environment (a process-wide HF_HUB_OFFLINE would stop a later hub-id model load in the same server)."""

import os
import socket

import numpy as np


def test_embedder_leaves_hf_hub_offline_alone(monkeypatch):
    from core.autointerp import search

    def no_network(*a, **k):
        raise AssertionError(f"the embedder reached for the network: {a}")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # tests/conftest.py sets it; restored after the test
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    search.embedder.cache_clear()  # load it here, with the variable unset
    try:
        E = search.embed(["numbers and digits", "the cat sat"])
        assert "HF_HUB_OFFLINE" not in os.environ
    finally:
        search.embedder.cache_clear()
    assert E.shape == (2, 384) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
