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


def clear_jobs(con) -> None:
    """Forget every job (a new `neuroboard demo` starts its list afresh)."""
    con.execute("DELETE FROM jobs")


class Tracker:
    """A job's progress written to the index by the process doing it: in short transactions, at most every
    `every_s` seconds, and skipped (not failed) when a reader holds the file at that moment, so progress never
    stops the work. Status changes wait for the file like any write."""

    def __init__(self, db: str, job_id: int, every_s: float = 1.0) -> None:
        self.db, self.job_id, self.every_s = db, job_id, every_s
        self._last = 0.0

    def _write(self, wait_s: float, **kw) -> bool:
        from core.index.db import IndexLockedError, connect

        try:
            con = connect(self.db, wait_s=wait_s)
        except IndexLockedError:
            return False
        try:
            update_job(con, self.job_id, **kw)
        finally:
            con.close()
        return True

    def start(self, total: float | None = None) -> None:
        self._write(10.0, status="running", total=total)

    def progress(self, done: float, total: float | None = None) -> None:
        import time

        now = time.monotonic()
        if now - self._last >= self.every_s and self._write(0.2, done=done, total=total):
            self._last = now

    def finish(self, done: float | None = None) -> None:
        self._write(10.0, status="done", done=done)

    def fail(self, why: str) -> None:
        self._write(10.0, status="failed", detail=why)
