"""Pure data helpers for the pages: open the index briefly, read, close, return pandas DataFrames.

No streamlit here. Every read opens the index read-only with a short lock wait and closes it before returning, so
an extraction in another process can commit between two reads (DuckDB allows one writing process per file).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from core.index.pool import reading
from core.index.queries import RunInfo, layer_ranges, list_runs

DB_ENV = "NEUROBOARD_DB"
DEFAULT_DB = "data/demo.duckdb"
LOCK_WAIT_S = 2.0

RUN_COLUMNS = ["run_id", "model", "corpus", "status", "tokens", "target", "progress", "layers", "d_mlp", "units",
               "created", "neurons"]


def index_paths() -> list[Path]:
    """The indexes the dashboard offers: $NEUROBOARD_DB (set by `core.cli.serve`; os.pathsep-separated when several),
    else the demo index. Only the environment names files; the URL can only pick one of these by number."""
    return [Path(p) for p in (os.environ.get(DB_ENV) or DEFAULT_DB).split(os.pathsep) if p] or [Path(DEFAULT_DB)]


def load_runs(path: str | Path) -> list[RunInfo]:
    """All runs of the index. Raises core.index.db.IndexFileError subclasses (locked, not an index, too new)."""
    with reading(path, wait_s=LOCK_WAIT_S) as cur:
        return list_runs(cur)


def file_size(path: str | Path) -> str:
    """The index's size on disk, e.g. '412.3 MB': the file and its write-ahead log (core.index.db: durability)."""
    wal = Path(f"{path}.wal")
    n = Path(path).stat().st_size + (wal.stat().st_size if wal.is_file() else 0)
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 2**10:,.1f} kB"


def progress_pct(run: RunInfo) -> float | None:
    """Percent of the token target done, for a run still extracting; None otherwise (or with no target)."""
    if run.status != "running" or not run.tokens_target:
        return None
    return min(100.0, 100.0 * run.tokens / run.tokens_target)


def runs_frame(runs: list[RunInfo], db: int | None = None) -> pd.DataFrame:
    """One row per run, the columns of RUN_COLUMNS, in run order; `db`: the index's number when several."""
    extra = f"&db={db}" if db is not None else ""
    rows = [{"run_id": r.run_id, "model": r.model, "corpus": r.corpus, "status": r.status, "tokens": r.tokens,
             "target": r.tokens_target, "progress": progress_pct(r),
             "layers": f"{layer_ranges(r.layers)} of {r.n_layers}", "d_mlp": r.d_mlp, "units": len(r.layers) * r.d_mlp,
             "created": r.created_at[:16],
             "neurons": f"/neurons?run={r.run_id}{extra}" if r.has_results else None} for r in runs]
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return df.astype({"target": "Int64", "progress": "Float64"})


def models_frame(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per model that has runs: model, n_layers, d_mlp, runs, tokens (summed over its runs)."""
    cols = ["model", "n_layers", "d_mlp", "runs", "tokens"]
    if not runs:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame([{"model": r.model, "model_id": r.model_id, "n_layers": r.n_layers, "d_mlp": r.d_mlp,
                        "tokens": r.tokens} for r in runs])
    out = df.groupby(["model_id", "model", "n_layers", "d_mlp"], sort=True, as_index=False).agg(
        runs=("tokens", "size"), tokens=("tokens", "sum"))
    return out[cols]


def running_lines(runs: list[RunInfo]) -> list[tuple[float, str]]:
    """(fraction done, label) for each run still extracting, for progress bars."""
    out = []
    for r in runs:
        pct = progress_pct(r)
        if r.status == "running":
            target = f" / {r.tokens_target:,}" if r.tokens_target else ""
            label = f"Run {r.run_id} ({r.model} on {r.corpus}) is extracting: {r.tokens:,}{target} tokens"
            out.append(((pct or 0.0) / 100.0, label + (f" ({pct:.0f}%)" if pct is not None else "")))
    return out


def results_label(run: RunInfo) -> str:
    """What the run's per-unit results cover: 'all', 'first N tokens' (a preview while it runs), or 'none yet'."""
    if not run.has_results:
        return "none yet"
    return "all" if not run.partial else f"first {run.results_tokens:,} tokens"


def load_jobs(path: str | Path) -> list:
    """The index's jobs (core.index.jobs.Job), oldest first."""
    from core.index.jobs import list_jobs

    with reading(path, wait_s=LOCK_WAIT_S) as cur:
        return list_jobs(cur)


def load_sweeps(path: str | Path) -> list:
    """The index's stored steering sweeps (core.index.sweeps.SweepInfo), oldest first; none in an index whose
    schema predates them (opened read-only, it is not migrated)."""
    import duckdb

    from core.index.sweeps import list_sweeps

    with reading(path, wait_s=LOCK_WAIT_S) as cur:
        try:
            return list_sweeps(cur)
        except duckdb.CatalogException:
            return []


def job_label(job) -> str:
    """One line: name, status and progress, e.g. 'index smollm2-135m: running, 16,384 / 100,000 tokens (16%)'."""
    unit = f" {job.unit}" if job.unit else ""
    if job.status == "running" and job.total:
        prog = f", {job.done:,.0f} / {job.total:,.0f}{unit} ({100 * job.fraction:.0f}%)"
    elif job.status == "running":
        prog = f", {job.done:,.0f}{unit}"
    else:
        prog = ""
    note = f" — {job.detail}" if job.detail and job.status == "failed" else ""
    icon = {"waiting": "◦", "running": "▸", "done": "✓", "failed": "✗"}.get(job.status, "")
    return f"{icon} {job.name}: {job.status}{prog}{note}"
