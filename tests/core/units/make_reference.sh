#!/bin/sh
# Regenerate tests/core/units/reference_run.json with the extractor as it was before any speed work (commit 02e36a9),
# under the packages installed in .venv: the digest depends on them (DuckDB's float-to-text casting, transformers'
# kernels) and on the CPU (oneDNN's kernel choice), so a new DuckDB, transformers or host needs a new reference made
# by the OLD code, never by the code under test. The test makes one itself, the same way, on a host that differs.
set -e
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
git -C "$root" worktree add -q "$tmp/old" 02e36a9
(cd "$tmp/old" && "$root/.venv/bin/python" -c "
import torch; torch.set_num_threads(2)
from core.extract import ExtractConfig, extract
extract(ExtractConfig(model='smollm2-135m', db='$tmp/ref.duckdb', corpus='demo', max_tokens=3000, context_len=128,
                      layers='all', chunk_tokens=1024, batch_tokens=1024))")
(cd "$root" && .venv/bin/python -c "
import json, sys; sys.path.insert(0, 'tests')
import duckdb, numpy, torch, transformers
from helpers.index_digest import host_fingerprint, run_digest
con = duckdb.connect('$tmp/ref.duckdb', read_only=True)
out = {'versions': {'duckdb': duckdb.__version__, 'transformers': transformers.__version__,
                    'torch': torch.__version__.split('+')[0], 'numpy': numpy.__version__},
       'host': host_fingerprint(), 'digest': run_digest(con, 1)}
json.dump(out, open('tests/core/units/reference_run.json', 'w'), indent=1)")
git -C "$root" worktree remove --force "$tmp/old"
rm -rf "$tmp"
