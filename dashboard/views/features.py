"""What feature pages read from the index (no streamlit): a run's SAEs, the feature map's coordinates, labels and
densities. Each read runs on a cursor of the shared read-only connection (core.index.pool)."""

from __future__ import annotations

import numpy as np

from core.index import queries
from dashboard.views.units import read_index


def run_saes(path, run_id: int | None = None) -> list[queries.SaeInfo]:
    return read_index(path, queries.run_saes, run_id)


def feature_map(path, run_id: int, sae_id: int) -> dict | None:
    """{"xy": (d_sae, 2), "density": (d_sae,), "labels": [str]} or None when the map was not computed."""
    flat = read_index(path, queries.sae_umap, run_id, sae_id)
    if not flat:
        return None
    xy = np.asarray(flat, np.float32).reshape(-1, 2)
    dens = np.asarray(read_index(path, queries.group_density, run_id, -sae_id), np.float64)
    labels = read_index(path, queries.feature_labels, run_id, sae_id)
    return {"xy": xy, "density": dens, "labels": [labels.get(i, "") for i in range(len(xy))]}
