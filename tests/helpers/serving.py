"""Start the dashboard the way a user does, for tests."""

import contextlib
import sys
from pathlib import Path

import pytest


@contextlib.contextmanager
def served(db, log_path, extra: tuple[str, ...] = ()):
    """`neuroboard serve --db DB [extra]` (the console script) on a free localhost port; yields the base URL once
    healthy."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("neuroboard")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "core.cli"]
    with open(log_path, "w") as out:
        proc = subprocess.Popen([*cmd, "serve", "--db", str(db), "--port", str(port), *extra], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"neuroboard serve exited with {proc.returncode}:\n{Path(log_path).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode() == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no health 'ok' from {url} in 60 s:\n{Path(log_path).read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and its streamlit child
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
