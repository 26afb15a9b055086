"""A run killed with SIGKILL resumes with --resume and ends with exactly the index of an uninterrupted run."""

import os
import signal
import subprocess
import time

import duckdb
import pytest
import torch
from helpers.resume import cli, snapshot
from helpers.tiny import write_corpus

from core.saes.formats import save_saelens
from core.saes.sae import SAE
from core.units.run_state import checkpoint_path

pytestmark = pytest.mark.slow  # SIGKILLs and resumes real extraction processes: minutes (the slow tier)


@pytest.mark.parametrize("with_sae", [False, True])
def test_sigkill_then_resume_equals_uninterrupted(tiny_lm_dir, tmp_path, with_sae):
    """With an SAE, its features (group -1) are in the same checkpoint and must come out identical too."""
    corpus = write_corpus(tmp_path / "c.txt", n_docs=60, seed=3)
    extra = ()
    if with_sae:
        g = torch.Generator().manual_seed(5)
        sae = SAE(torch.randn(64, 80, generator=g) * 0.2, torch.randn(80, generator=g) * 0.1,
                  torch.randn(80, 64, generator=g), torch.zeros(64), activation="topk", k=6, site="resid_post.1")
        extra = ("--sae", str(save_saelens(sae, tmp_path / "sae")))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    ref = tmp_path / "ref.duckdb"
    subprocess.run(cli(tiny_lm_dir, corpus, ref, *extra), check=True, env=env, timeout=600)

    db = tmp_path / "killed.duckdb"
    proc = subprocess.Popen(cli(tiny_lm_dir, corpus, db, *extra), env=env)
    ckpt = checkpoint_path(db, 1)
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.3)  # somewhere in the middle of a later chunk (or its commit)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    status = duckdb.connect(str(db), read_only=True).execute("SELECT status, tokens_done FROM runs").fetchall()
    assert status[0][0] == "running", "the run finished before the kill; the test proves nothing"

    done = subprocess.run(cli(tiny_lm_dir, corpus, db, *extra, "--resume"), env=env, timeout=600)
    assert done.returncode == 0
    assert not ckpt.exists()
    got, want = snapshot(db), snapshot(ref)
    assert want["runs"][0][0] == "complete"
    for table in want:
        assert got[table] == want[table], table
    if with_sae:
        assert any(r[0] == -1 for r in want["unit_stats"])  # the features are there
