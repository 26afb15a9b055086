"""Stored patching grids (migration 008): what the demo's patching job stores equals patch_grid computed live on the
same model; a read needs the same model name, prompt pair and package versions; the demo plans the job after the
first pages' jobs, runs it, and finds it done the next time."""

import numpy as np
import pytest

from core.index import patch_grids
from core.index.db import connect

PAIR = {"clean": "The cat sat on the mat and", "corrupted": "The cat sat in the mat and", "answer": " the",
        "foil": " a"}


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    from core.model.load import load_model

    return load_model(str(tiny_lm_dir))


def test_stored_grids_equal_the_live_computation(lm, tiny_lm_dir, tmp_path):
    from core.findings.manifest import weights_sha256
    from core.interventions.patching import patch_grid, store_patch

    db = str(tmp_path / "i.duckdb")
    name = str(tiny_lm_dir)
    store_patch(db, name, PAIR, lm=lm)
    live = patch_grid(lm, **PAIR)
    con = connect(db, read_only=True)
    try:
        versions = patch_grids.package_versions()
        got = patch_grids.get(con, name, PAIR, versions)
        assert got is not None and got["tokens"] == live.tokens
        assert (got["clean_diff"], got["corrupted_diff"]) == (live.clean_diff, live.corrupted_diff)
        for field in ("resid", "attn", "mlp", "heads"):
            want = getattr(live, field)
            assert np.array_equal(np.array(got[field]), want) and np.abs(want).max() > 0, field
        assert got["provenance"]["weights_sha256"] == weights_sha256(lm.model)
        assert got["provenance"]["source"] == lm.source
        assert patch_grids.get(con, name, PAIR | {"foil": " b"}) is None  # another pair: nothing stored
        assert patch_grids.get(con, "other-model", PAIR) is None
        assert patch_grids.get(con, name, PAIR, versions | {"torch": "0.0"}) is None  # other packages: not read
        assert con.execute("SELECT count(*) FROM patch_grids").fetchone()[0] == 4
    finally:
        con.close()
    store_patch(db, name, PAIR, lm=lm)  # stored again: replaces, never duplicates
    con = connect(db, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM patch_grids").fetchone()[0] == 4
    finally:
        con.close()


def test_the_demo_stores_the_default_pair_after_the_first_pages(tiny_lm_dir, tmp_path, monkeypatch):
    """The demo (only an extraction, head scores and the patching job here) stores the page's default pair (a pair
    the tiny model's tokenizer can patch stands in for it, as the built-in models' tokenizers patch the default),
    and a second plan finds it stored. A model the pair does not suit gets no job."""
    from core import demo

    cfg = demo.DemoConfig(db=str(tmp_path / "other.duckdb"), models=[str(tiny_lm_dir)], sae_site="", sweep="",
                          explain_units=0, circuits=False, serve=False)
    assert [j.kind for j in demo.plan(cfg)[0]] == ["extract", "heads"]
    monkeypatch.setattr(patch_grids, "DEFAULT_PAIR", PAIR)
    monkeypatch.setattr(patch_grids, "DEFAULT_PAIR_MODELS", (str(tiny_lm_dir),))
    cfg = demo.DemoConfig(db=str(tmp_path / "demo.duckdb"), models=[str(tiny_lm_dir)], max_tokens=512,
                          preview_tokens=0, ablation_tokens=0, sae_site="", sweep="", explain_units=0, circuits=False,
                          serve=False)
    jobs, _ = demo.plan(cfg)
    assert [j.kind for j in jobs] == ["extract", "heads", "patch"]  # behind the jobs the first pages need
    assert demo.build(cfg) == []
    con = connect(cfg.db, read_only=True)
    try:
        got = patch_grids.get(con, str(tiny_lm_dir), PAIR, patch_grids.package_versions())
        job = con.execute("SELECT status, done, total FROM jobs WHERE kind = 'patch'").fetchone()
    finally:
        con.close()
    assert got is not None and len(got["resid"]) == 3
    assert job == ("done", 3, 3)
    jobs, notes = demo.plan(cfg)
    assert jobs == [] and f"demo: the patching grids of {tiny_lm_dir} are already stored" in notes
