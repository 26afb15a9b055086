"""The model lists of the served indexes: an index that cannot be read only shortens the list; a missing or busy
one quietly, anything else with a warning in the log that says what went wrong."""

import logging

from core.index.db import IndexLockedError
from core.model.builtin import BUILTIN
from dashboard.cache import models
from dashboard.views import catalog


def test_unreadable_index_is_logged(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(catalog, "index_paths", lambda: [tmp_path / "i.duckdb"])
    monkeypatch.delenv(models.MODELS_ENV, raising=False)

    def busy(path):
        raise IndexLockedError("locked by another process")

    def broken(path):
        raise RuntimeError("something unexpected")

    for read, warned in ((busy, False), (broken, True)):
        monkeypatch.setattr(catalog, "load_runs", read)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dashboard.cache.models"):
            assert models.allowed_models() == list(BUILTIN)
            assert models.index_models() == []
        assert ("something unexpected" in caplog.text) == warned and ("locked" in caplog.text) is False
