"""Jobs in the index: long work in progress (extractions, head scoring, ...) that Home shows with live progress.

A job is written by the process doing the work, in short transactions (the file is held only while writing), so the
dashboard reads it between writes. Reads and writes are named, parameterised queries.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("waiting", "running", "done", "failed")


@dataclass
class Job:
    job_id: int
    name: str
    kind: str
    status: str
    done: float
    total: float | None
    unit: str | None
    detail: str | None
    updated_at: str

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None


def add_job(con, name: str, kind: str, total: float | None = None, unit: str | None = None) -> int:
    """A new waiting job; its id."""
    job_id = con.execute("SELECT coalesce(max(job_id), 0) + 1 FROM jobs").fetchall()[0][0]
    con.execute("INSERT INTO jobs (job_id, name, kind, status, total, unit) VALUES (?, ?, ?, 'waiting', ?, ?)",
                [job_id, name, kind, total, unit])
    return job_id


def update_job(con, job_id: int, *, status: str | None = None, done: float | None = None,
               total: float | None = None, detail: str | None = None) -> None:
    """Set what is given (status one of STATUSES) and the update time."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"job status {status!r} not one of {STATUSES}")
    con.execute("UPDATE jobs SET status = coalesce(?, status), done = coalesce(?, done), total = coalesce(?, total), "
                "detail = coalesce(?, detail), updated_at = current_timestamp WHERE job_id = ?",
                [status, done, total, detail, job_id])


def list_jobs(con) -> list[Job]:
    rows = con.execute("SELECT job_id, name, kind, status, done, total, unit, detail, updated_at::TEXT FROM jobs "
                       "ORDER BY job_id").fetchall()
    return [Job(*r) for r in rows]


def stale_jobs(con) -> None:
    """Jobs left 'running' or 'waiting' by a process that ended without finishing them: marked failed."""
    con.execute("UPDATE jobs SET status = 'failed', detail = coalesce(detail, 'interrupted') "
                "WHERE status IN ('running', 'waiting')")
