"""Many users at once: concurrent headless Chromium sessions browsing random pages of one `neuroboard serve`.

    .venv/bin/python bench/load.py --json [--db data/demo.duckdb] [--sessions 10] [--seconds 180] [--no-extract]

Each session is its own process with its own Chromium (dashboard.browser), one tab that goes from page to page:
random neuron units, SAE features, heads and the lens page of the index's models, each visit from navigation to
settled. An exception shown on a page (Streamlit's stException) is an error; a page that shows the index as
locked by a writer is a lock error.

Phases, one server each time, in one run:
  single   one session for --single-seconds: the server's own cost of a page view alone (CPU seconds of the server
           process tree per view)
  many     --sessions sessions for --seconds: settle p50/p95, errors, server CPU seconds per view and the ratio to
           the single session's (goal <= 1.5: the browsers share these cores, so the server's own cost is the
           figure to hold), the server's peak RSS
  writing  (unless --no-extract) the same, on a copy of the index that an extraction writes to meanwhile (a new
           run of the index's first model): lock errors must be 0
One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TARGETS = {"errors": 0, "lock_errors": 0, "cpu_per_view_ratio_max": 1.5}
LOCKED_TEXT = "another process is writing"


def urls(db: Path, n: int, seed: int) -> list[str]:
    """n random page URLs of the index: neuron units, SAE features, heads, the lens page (pages.page_urls)."""
    from pages import page_urls, pick_units

    from dashboard.views.catalog import load_runs

    run = max((r for r in load_runs(db) if r.has_results), key=lambda r: len(r.layers) * r.d_mlp)
    by_page = page_urls(db, run, pick_units(run, n, seed))
    by_page.pop("home", None)
    rng = random.Random(seed)
    flat = [u for us in by_page.values() for u in us]
    return [rng.choice(flat) for _ in range(n)]


def session(base: str, pool: list[str], seconds: float, seed: int, out, in_order: bool = False) -> None:
    """One user: random pages of `pool` until `seconds` are up (`in_order`: each of `pool` once, in order); puts
    {"settle": [...], "errors": [...], "lock_errors": n} on `out`."""
    from playwright.sync_api import sync_playwright

    from dashboard.browser import launch, new_page, wait_settled

    rng, res = random.Random(seed), {"settle": [], "errors": [], "lock_errors": 0}
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = new_page(browser)
            deadline = time.monotonic() + seconds
            todo = list(pool) if in_order else None
            while (todo if in_order else time.monotonic() < deadline):
                url = todo.pop(0) if in_order else rng.choice(pool)
                try:
                    page.goto(base + url, wait_until="commit")
                    res["settle"].append(wait_settled(page, 300_000))
                    res["errors"] += [f"{url}: {e[:200]}" for e in page.get_by_test_id("stException").all_inner_texts()]
                    res["lock_errors"] += LOCKED_TEXT in page.inner_text("body")
                except Exception as e:  # a visit that never settles is an error too
                    res["errors"].append(f"{url}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            browser.close()
    finally:
        out.put(res)


class ServerMeter:
    """CPU seconds and peak RSS of a server's process tree, sampled every 0.25 s."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root, self.peak_rss, self._stop = psutil.Process(pid), 0, threading.Event()
        self.cpu0 = self.cpu()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def procs(self):
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for p in self.procs():
                try:
                    rss += p.memory_info().rss
                except Exception:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(0.25)

    def stop(self) -> tuple[float, int]:
        """(CPU seconds since start, peak RSS bytes)."""
        self._stop.set()
        self._t.join()
        return self.cpu() - self.cpu0, self.peak_rss


def phase(db: Path, sessions: int, seconds: float, pool: list[str], seed: int, writer: list[str] | None = None) -> dict:
    """A fresh server on `db`, warmed by one visit of each distinct page kind, then `sessions` sessions for
    `seconds` (and `writer`, a command run meanwhile); the phase's figures."""
    from pages import serve

    proc, base, _ = serve(db)
    try:
        kinds: dict[str, str] = {}
        for u in pool:  # one visit of each page first: models load, per-model caches fill
            kinds.setdefault(u.split("?")[0], u)
        q = mp.Queue()
        session(base, list(kinds.values()), 0, seed, q, in_order=True)
        warm = q.get()
        meter = ServerMeter(proc.pid)
        w = subprocess.Popen(writer, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) if writer else None
        out = mp.Queue()
        ps = [mp.Process(target=session, args=(base, pool, seconds, seed + i, out)) for i in range(sessions)]
        t = time.monotonic()
        for p in ps:
            p.start()
        results = [out.get() for _ in ps]
        for p in ps:
            p.join()
        wall = time.monotonic() - t
        cpu, rss = meter.stop()
        writer_rc = None
        if w:
            writer_rc = w.wait()
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    settle = sorted(s for r in results for s in r["settle"])
    views = len(settle)
    q95 = settle[min(len(settle) - 1, int(0.95 * len(settle)))] if settle else None
    return {"sessions": sessions, "seconds": round(wall, 1), "views": views,
            "settle_p50_s": round(statistics.median(settle), 3) if settle else None,
            "settle_p95_s": round(q95, 3) if q95 is not None else None,
            "errors": len([e for r in results for e in r["errors"]]) + len(warm["errors"]),
            "error_examples": [e for r in results for e in r["errors"]][:5],
            "lock_errors": sum(r["lock_errors"] for r in results),
            "server_cpu_s": round(cpu, 2), "server_cpu_s_per_view": round(cpu / views, 3) if views else None,
            "server_peak_rss_mb": round(rss / 2**20, 1), "writer_exit": writer_rc}


def run(db: Path, sessions: int, seconds: float, single_seconds: float, extract: bool, seed: int = 0,
        extract_cmd: list[str] | None = None) -> dict:
    """Every phase (module docstring) on `db`; `extract_cmd` overrides the writing phase's extraction (its --db is
    appended)."""
    pool = urls(db, 200, seed)
    out = {"db": str(db), "pages": len(set(pool))}
    out["single"] = phase(db, 1, single_seconds, pool, seed)
    out["many"] = phase(db, sessions, seconds, pool, seed + 100)
    one, many = out["single"]["server_cpu_s_per_view"], out["many"]["server_cpu_s_per_view"]
    out["cpu_per_view_ratio"] = round(many / one, 2) if one and many else None
    if extract:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "served.duckdb"
            shutil.copy(db, copy)
            cmd = extract_cmd or _default_extract(db)
            out["writing"] = phase(copy, sessions, seconds, pool, seed + 200, [*cmd, "--db", str(copy)])
    m = out["many"]
    out["targets"] = TARGETS
    out["met"] = {"errors": m["errors"] == 0 and (not extract or out["writing"]["errors"] == 0),
                  "lock_errors": not extract or out["writing"]["lock_errors"] == 0,
                  "cpu_per_view_ratio": out["cpu_per_view_ratio"] is not None
                  and out["cpu_per_view_ratio"] <= TARGETS["cpu_per_view_ratio_max"]}
    return out


def _default_extract(db: Path) -> list[str]:
    """A small new run of the index's first model over the demo corpus (Python's docs), every layer."""
    from dashboard.views.catalog import load_runs

    run = next(r for r in load_runs(db) if r.has_results)
    return [str(Path(sys.executable).with_name("neuroboard")), "extract", "--model", run.model, "--corpus", "demo",
            "--max-tokens", "16384", "--no-progress"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=str(ROOT / "data" / "demo.duckdb"))
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--single-seconds", type=float, default=60)
    ap.add_argument("--no-extract", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = run(Path(a.db), a.sessions, a.seconds, a.single_seconds, not a.no_extract)
    print(json.dumps(out, indent=None if a.json else 2))


if __name__ == "__main__":
    mp.set_start_method("spawn")
    main()
