"""The extractor's index equals a stored reference run exactly: every row of every per-token and per-unit table,
bit for bit (tests/core/units/reference_run.json, written by the extractor before any speed work, commit 02e36a9,
under the package versions it records; make_reference.sh makes it again under new versions, with that old code)."""

import json
from pathlib import Path

import pytest
from helpers.index_digest import run_digest

from core.index.db import connect
from core.units.extract import ExtractConfig, extract

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
    if here != ref["versions"]:
        pytest.skip(f"the reference was made under {ref['versions']}, this is {here}: DuckDB's float casting and "
                    f"transformers' kernels change the digest; run tests/core/units/make_reference.sh")

    torch.set_num_threads(2)  # the reference was made with 2 threads (the sum order of BLAS reductions)
    cfg = ExtractConfig(db=str(tmp_path / "r.duckdb"), **CONFIG)
    run_id = extract(cfg)
    con = connect(cfg.db, read_only=True)
    try:
        got = run_digest(con, run_id)
    finally:
        con.close()
    assert got == ref["digest"]
