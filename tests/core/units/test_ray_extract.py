"""`extract --ray` on a real Ray cluster that the test starts on this machine (`ray start --head`, 2 CPUs: two worker
processes), joined by its address as a user joins an existing cluster: the index equals a one-process run of the
same corpus, bit for bit (neurons and an SAE's features); a driver killed with SIGKILL resumes per shard (with
--ray, reusing the shards already finished, or without it) to the same index."""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys

import pytest
from helpers.resume import cli, corpus_and_sae, snapshot

from core.faults import ENV

pytestmark = pytest.mark.slow  # starts local Ray clusters and kills drivers: minutes (the slow tier)

pytest.importorskip("ray", reason="ray is an optional extra (pip install 'neuroboard[ray]'); make install adds it")


TOKEN = secrets.token_hex(32)
"""This cluster's authentication token (Ray >= 2.59 turns token authentication on; `ray start` needs a token it
can find, and who joins by address sends it): given to the cluster and every driver, never written to ~/.ray."""


def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    return {**env, "PYTHONPATH": os.getcwd(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, **kw}


def _ray(*args, check=True):
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], env=_env(), capture_output=True,
                          text=True, timeout=180, check=check)


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray cluster with 2 CPUs, stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _ray("start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats")
    yield f"127.0.0.1:{port}"
    _ray("stop", "--force", check=False)


@pytest.fixture(scope="module")
def setup(tiny_lm_dir, tmp_path_factory):
    """(corpus, extra args with an SAE, the one-process run's snapshot)."""
    tmp = tmp_path_factory.mktemp("ray")
    corpus, sae = corpus_and_sae(tmp)
    extra = ("--sae", sae)
    ref = tmp / "one.duckdb"
    subprocess.run(cli(tiny_lm_dir, corpus, ref, *extra), check=True, env=_env(), timeout=600)
    return corpus, extra, snapshot(ref)


def _say(stderr: str) -> dict:
    m = re.search(r"ray: (\d+) shards, (\d+) run as tasks, (\d+) reused from an earlier attempt; (\d+) worker", stderr)
    assert m, stderr
    return dict(zip(("shards", "ran", "reused", "workers"), map(int, m.groups()), strict=True))


def test_ray_index_equals_one_process(tiny_lm_dir, tmp_path, cluster, setup):
    corpus, extra, want = setup
    db = tmp_path / "ray.duckdb"
    done = subprocess.run(cli(tiny_lm_dir, corpus, db, *extra, "--ray", cluster, "--shard-chunks", "2"), env=_env(),
                          timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = _say(done.stderr)
    assert said["shards"] >= 6 and said["ran"] == said["shards"] and said["reused"] == 0
    assert said["workers"] == 2, "both workers took shards"
    got = snapshot(db)
    assert want["unit_stats"] and want["run_saes"][0][1] == 80  # neurons and the SAE's features are both in it
    for table in want:
        assert got[table] == want[table], table
    assert not list(tmp_path.glob("ray.duckdb.ckpt/*")), "shard results and checkpoint are removed when complete"


def test_ray_with_a_preview_equals_one_process(tiny_lm_dir, tmp_path, cluster, setup):
    """--preview-tokens (a smaller first chunk, results published after it) on Ray and in one process."""
    corpus = setup[0]
    one, on_ray = tmp_path / "one.duckdb", tmp_path / "ray.duckdb"
    subprocess.run(cli(tiny_lm_dir, corpus, one, "--preview-tokens", "600"), check=True, env=_env(), timeout=600)
    done = subprocess.run(cli(tiny_lm_dir, corpus, on_ray, "--preview-tokens", "600", "--ray", cluster,
                              "--shard-chunks", "3"), env=_env(), timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    want, got = snapshot(one), snapshot(on_ray)
    for table in want:
        assert got[table] == want[table], table


@pytest.mark.parametrize("where,resume_on_ray", [("shard:3", True), ("committed:5", False)],
                         ids=["shard-saved-resume-on-ray", "mid-shard-resume-one-process"])
def test_killed_driver_resumes_per_shard(tiny_lm_dir, tmp_path, cluster, setup, where, resume_on_ray):
    """shard:3: killed right after saving the third finished shard (at least one saved, not merged: resuming on Ray
    runs fewer tasks than shards). committed:5: killed with chunks committed ahead of the last checkpoint, resumed
    by one process (the checkpoint is the same either way)."""
    corpus, extra, want = setup
    db = tmp_path / "killed.duckdb"
    ray_args = ("--ray", cluster, "--shard-chunks", "2")
    killed = subprocess.run(cli(tiny_lm_dir, corpus, db, *extra, *ray_args), env=_env(**{ENV: where}), timeout=600,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, f"the kill point was not reached: {killed.stderr}"
    again = cli(tiny_lm_dir, corpus, db, *extra, *(ray_args if resume_on_ray else ()), "--resume")
    done = subprocess.run(again, env=_env(), timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if resume_on_ray:
        said = _say(done.stderr)
        assert said["reused"] >= 1 and said["ran"] < said["shards"]
    got = snapshot(db)
    for table in want:
        assert got[table] == want[table], table


def test_more_cpus_per_task_than_the_cluster_has_is_one_line(tiny_lm_dir, tmp_path, cluster, setup):
    r = subprocess.run(cli(tiny_lm_dir, setup[0], tmp_path / "x.duckdb", "--ray", cluster, "--ray-cpus", "64"),
                       env=_env(), timeout=300, capture_output=True, text=True)
    assert r.returncode == 2 and "the cluster has 2 CPUs" in r.stderr, r.stderr
    assert not (tmp_path / "x.duckdb").exists(), "nothing is written before the cluster is found to fit"


def test_ray_bad_input_one_line(tiny_lm_dir, tmp_path, setup):
    corpus, _, _ = setup
    db = tmp_path / "bad.duckdb"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args, msg in ((("--ray", f"127.0.0.1:{port}"), "no Ray cluster answers there"),
                      (("--ray", "--capture", "resid_post.1"), "run it without --ray"),
                      (("--ray", "--shard-chunks", "0"), "must be positive")):
        r = subprocess.run(cli(tiny_lm_dir, corpus, db, *args), env=_env(), timeout=120, capture_output=True,
                           text=True)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not db.exists(), "nothing is written before the cluster is reached"
