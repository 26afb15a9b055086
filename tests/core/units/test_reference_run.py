"""The extractor's index equals a reference run exactly: every row of every per-token and per-unit table, bit for
bit. The reference is written by the extractor as it was before any speed work (commit 02e36a9): stored in
tests/core/units/reference_run.json with the package versions and host it was made under, and made again here, by
that old code in a git worktree, when this host or a package version differs (float kernels differ between CPUs: oneDNN uses AMX or
AVX-512 BF16 where present). make_reference.sh rewrites the stored one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.index_digest import host_fingerprint, run_digest

from core.index.db import connect
from core.units.config import ExtractConfig
from core.units.extract import extract

pytestmark = pytest.mark.slow
REFERENCE = Path(__file__).with_name("reference_run.json")
CONFIG = dict(model="smollm2-135m", corpus="demo", max_tokens=3000, context_len=128, layers="all", chunk_tokens=1024,
              batch_tokens=1024)
"""The reference run: smollm2-135m, the demo corpus's first 3,000 tokens, all 30 layers, three chunks."""


def test_index_equals_the_reference_run(tmp_path):
    import duckdb
    import numpy
    import torch
    import transformers

    ref = json.loads(REFERENCE.read_text())
    here = {"duckdb": duckdb.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0], "numpy": numpy.__version__}
    # DuckDB's float casting, transformers' kernels and the CPU change the digest: where any differs from the stored
    # reference's, the old code makes the reference here (make_reference.sh stores a new one)
    same = here == ref["versions"] and ref.get("host") == host_fingerprint()
    want = ref["digest"] if same else old_code_digest(tmp_path)
    torch.set_num_threads(2)  # the reference was made with 2 threads (the sum order of BLAS reductions)
    cfg = ExtractConfig(db=str(tmp_path / "r.duckdb"), **CONFIG)
    run_id = extract(cfg)
    con = connect(cfg.db, read_only=True)
    try:
        got = run_digest(con, run_id)
    finally:
        con.close()
    assert got == want


OLD = "02e36a9"


def old_code_digest(tmp: Path) -> dict:
    """The reference digest made on this host by the extractor of commit OLD (a git worktree, this interpreter)."""
    root = Path(__file__).resolve().parents[3]
    have = subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{OLD}^{{commit}}"], capture_output=True)
    if have.returncode != 0:
        pytest.skip(f"this host differs from the reference's and commit {OLD} is not in this checkout")
    old, db = tmp / "old", tmp / "ref.duckdb"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "-q", "--detach", str(old), OLD], check=True)
    try:
        args = ", ".join(f"{k}={v!r}" for k, v in CONFIG.items())
        code = (f"import torch; torch.set_num_threads(2)\nfrom core.extract import ExtractConfig, extract\n"
                f"extract(ExtractConfig(db={str(db)!r}, {args}))")
        subprocess.run([sys.executable, "-c", code], cwd=old, check=True, capture_output=True,
                       env={**__import__("os").environ, "PYTHONPATH": str(old)})
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(old)], capture_output=True)
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return run_digest(con, 1)
    finally:
        con.close()
