"""core.cli.serve: a safe command line, a clear error for a missing index, and a real server that answers /health."""

import subprocess
import sys
import urllib.request

import pytest

from core.cli.serve import app_path, serve, serve_command, serve_env


def _value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_serve_command_is_local_and_protected(tiny_index):
    cmd = serve_command(tiny_index, port=8600)
    assert cmd[:3] == [sys.executable, "-m", "dashboard.server"]  # Streamlit in-process, after preloading models
    assert app_path().is_file()
    assert _value(cmd, "--server.address") == "127.0.0.1"
    assert _value(cmd, "--server.port") == "8600"
    assert _value(cmd, "--server.enableXsrfProtection") == "true"
    assert _value(cmd, "--server.enableCORS") == "true"
    assert _value(cmd, "--server.headless") == "true"
    assert _value(cmd, "--browser.gatherUsageStats") == "false"
    assert _value(cmd, "--global.developmentMode") == "false"
    assert _value(cmd, "--server.fileWatcherType") == "none"  # no walk over every loaded module per script run
    assert _value(cmd, "--runner.postScriptGC") == "false"  # no gc.collect(2) after each run


def test_serve_env_points_at_absolute_index(tiny_index, monkeypatch):
    monkeypatch.chdir(tiny_index.parent)
    env = serve_env(tiny_index.name)
    assert env["NEUROBOARD_DB"] == str(tiny_index.resolve())
    assert str(app_path().parent.parent) in env["PYTHONPATH"].split(":")
    two = serve_env([tiny_index.name, tiny_index])
    assert two["NEUROBOARD_DB"] == f"{tiny_index.resolve()}:{tiny_index.resolve()}"


def test_missing_index_fails_before_starting(tmp_path):
    from core.errors import UserError

    with pytest.raises(UserError, match="index not found"):
        serve(tmp_path / "missing.duckdb")
    with pytest.raises(ValueError, match="port"):
        serve_command(__file__, port=70000)


def test_core_serve_does_not_import_streamlit():
    code = "import sys, core.cli.serve; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_real_server_answers_health(dashboard_server):
    with urllib.request.urlopen(f"{dashboard_server}/_stcore/health", timeout=5) as r:
        assert r.read().decode() == "ok"
    with urllib.request.urlopen(dashboard_server, timeout=5) as r:
        assert r.status == 200 and b"<html" in r.read().lower()
