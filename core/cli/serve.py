"""Start the dashboard: `streamlit run dashboard/app.py` in a child process, bound to localhost by default.

Used by `neuroboard serve --db INDEX` (core.cli). Streamlit is only a child process here; this module never imports
it (core never imports the UI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from core.errors import UserError
from core.index.db import IndexNotFoundError


class ServeError(UserError):
    """Bad serve arguments; one line."""


@dataclass
class ServeConfig:
    db: list[str]
    """Index file; repeat the flag to offer several in the sidebar."""
    model: list[str] = field(default_factory=list)
    """A model the live pages may load besides the built-ins and the indexed ones (repeatable)."""
    port: int = 8501
    """TCP port."""
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only)."""
    findings: str = "data/findings.duckdb"
    """The findings file the pages save to (created on the first save; the indexes stay read-only)."""
    tour: str = ""
    """Present this findings file as a tour: one finding per screen, next/previous with the arrow keys, editing
    controls hidden."""


def app_path() -> Path:
    """dashboard/app.py, found through the installed (or editable) `dashboard` package."""
    return Path(str(files("dashboard").joinpath("app.py")))


def check_db(db: str | Path) -> Path:
    """The index as an absolute path; IndexNotFoundError (one line) when there is no such file."""
    path = Path(db).expanduser().resolve()
    if not path.is_file():
        raise IndexNotFoundError(f"index not found: {path} (build one with `neuroboard extract` or `make demo`)")
    return path


def _dbs(db) -> list[Path]:
    """One index or a list of them, each checked and made absolute."""
    return [check_db(d) for d in ([db] if isinstance(db, (str, Path)) else db)]


def serve_command(db: str | Path | list, host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> list[str]:
    """The argv that runs the dashboard on `db` (passed by serve_env) with protections on and telemetry off."""
    _dbs(db)
    if not 0 < port < 65536:
        raise ServeError(f"port {port} out of range 1-65535")
    return [sys.executable, "-m", "dashboard.server",  # Streamlit, after starting the models' background loading
            "--server.address", host, "--server.port", str(port),
            "--server.headless", str(headless).lower(),
            "--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
            "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
            "--client.toolbarMode", "minimal",
            # no source watching: Streamlit otherwise walks every loaded module (torch, transformers: thousands)
            # after each script run, a fifth of the server's CPU while `make demo` indexes beside it
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
            # no full garbage collection after every script run: with a model loaded it takes ~0.4 s on 2 cores
            # (py-spy), and the page counts as settled only after it; Python's own collector still runs
            "--runner.postScriptGC", "false"]


def serve_env(db: str | Path | list, models: list[str] | None = None, findings: str | None = None,
              tour: bool = False) -> dict[str, str]:
    """This process's environment plus NEUROBOARD_DB (absolute paths, os.pathsep-separated when several),
    NEUROBOARD_MODELS (extra models the pages may load: the URL can only pick from the allow-list),
    NEUROBOARD_FINDINGS (the findings file, absolute) and NEUROBOARD_TOUR, and the package root on PYTHONPATH."""
    env = dict(os.environ, NEUROBOARD_DB=os.pathsep.join(str(p) for p in _dbs(db)))
    if findings:
        env["NEUROBOARD_FINDINGS"] = str(Path(findings).expanduser().resolve())
    if tour:
        env["NEUROBOARD_TOUR"] = "1"
    if models:
        env["NEUROBOARD_MODELS"] = os.pathsep.join(models)
    root = str(app_path().parent.parent)  # streamlit puts dashboard/ on sys.path, not its parent
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def start(db: str | Path | list, host: str = "127.0.0.1", port: int = 8501, headless: bool = True,
          models: list[str] | None = None, findings: str | None = None, tour: bool = False) -> subprocess.Popen:
    """Start the dashboard on `db` in a child process and return it (it keeps running: `wait` for it)."""
    return subprocess.Popen(serve_command(db, host, port, headless), env=serve_env(db, models, findings, tour))


def wait(proc: subprocess.Popen) -> int:
    """Wait for a started dashboard until it stops (Ctrl-C stops both); returns Streamlit's exit code."""
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to streamlit too; let it shut down cleanly
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def serve(db: str | Path | list, host: str = "127.0.0.1", port: int = 8501, headless: bool = True,
          models: list[str] | None = None, findings: str | None = None, tour: bool = False) -> int:
    """Run the dashboard on `db` until it stops (Ctrl-C stops both); returns Streamlit's exit code."""
    return wait(start(db, host, port, headless, models, findings, tour))


def cmd_serve(a) -> int:
    """`neuroboard serve`: check the indexes (upgrading an older schema with a brief writing open: the dashboard
    only reads) and a tour's findings file, then serve until stopped."""
    from core.cli.args import config_from
    from core.index.db import IndexLockedError, connect

    cfg = config_from(a, ServeConfig)
    for db in cfg.db:
        check_db(db)
        try:
            connect(db, wait_s=1.0).close()
        except IndexLockedError:
            pass  # an extraction is writing it, and has upgraded it
    if cfg.tour:
        from core.findings.store import list_findings

        if not list_findings(cfg.tour):  # FindingsError (one line) for a file that is not one
            raise ServeError(f"{cfg.tour} holds no findings to present")
    return serve(cfg.db, host=cfg.host, port=cfg.port, models=cfg.model, findings=cfg.tour or cfg.findings,
                 tour=bool(cfg.tour))
