"""The fault matrix's crashes: extraction killed with SIGKILL at exact moments (core.faults: mid-batch, between a
chunk's writes and its commit, after the commit and before the checkpoint, with a new checkpoint written but not
moved in, mid-finalize, and in an SAE-feature run also while writing the feature maps), then resumed with
--resume: each ends with exactly the index of an uninterrupted run."""

import os
import signal
import subprocess

import pytest
from helpers.resume import cli, corpus_and_sae, snapshot

from core.faults import ENV

pytestmark = pytest.mark.slow  # kills and resumes real extraction processes: minutes (the slow tier)

# (kill point, how many times it is passed first, with an SAE's features)
MOMENTS = [
    ("batch", 1, False),       # the first batch, before anything is written or checkpointed
    ("batch", 5, False),       # mid the second chunk
    ("write", 1, False),       # the first chunk written, not committed
    ("committed", 1, False),   # the first chunk committed, no checkpoint yet
    ("write", 3, False),       # a later chunk, not committed
    ("checkpoint", 2, False),  # the second checkpoint written beside the first, not moved in
    ("committed", 3, False),   # the index a chunk ahead of the checkpoint
    ("publish", 1, False),     # mid-finalize: the layer's results written, not committed
    ("batch", 4, True),        # an SAE-feature run, mid-chunk
    ("publish", 1, True),      # an SAE-feature run, finalizing: neurons written, features not
    ("umap", 1, True),         # an SAE-feature run, writing the feature maps
]


@pytest.fixture(scope="module")
def refs(tiny_lm_dir, tmp_path_factory):
    """{with_sae: (corpus, extra args, the uninterrupted run's snapshot)}."""
    tmp = tmp_path_factory.mktemp("kill")
    corpus, sae = corpus_and_sae(tmp)
    out = {}
    for with_sae, extra in ((False, ()), (True, ("--sae", sae))):
        ref = tmp / f"ref-{with_sae}.duckdb"
        subprocess.run(cli(tiny_lm_dir, corpus, ref, *extra), check=True, env=_env(), timeout=600)
        out[with_sae] = corpus, extra, snapshot(ref)
    return out


def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    return {**env, "PYTHONPATH": os.getcwd(), **kw}


@pytest.mark.parametrize("where,nth,with_sae", MOMENTS, ids=[f"{w}{n}{'-sae' * s}" for w, n, s in MOMENTS])
def test_killed_then_resumed_equals_uninterrupted(tiny_lm_dir, tmp_path, refs, where, nth, with_sae):
    corpus, extra, want = refs[with_sae]
    db = tmp_path / "killed.duckdb"
    killed = subprocess.run(cli(tiny_lm_dir, corpus, db, *extra), env=_env(**{ENV: f"{where}:{nth}"}), timeout=600)
    assert killed.returncode == -signal.SIGKILL, "the kill point was not reached: the case proves nothing"
    done = subprocess.run(cli(tiny_lm_dir, corpus, db, *extra, "--resume"), env=_env(), timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = snapshot(db)
    for table in want:
        assert got[table] == want[table], table
