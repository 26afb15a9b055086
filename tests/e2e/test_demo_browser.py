"""`neuroboard demo` serves while it indexes: in a real Chromium, Home shows the jobs' live progress and the first
model's neuron pages open while the second model's run is still extracting."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dashboard.browser import new_page, wait_settled


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_serves_while_indexing(browser, tiny_lm_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("neuroboard")
    log = open(tmp_path / "demo.log", "w")
    # a tiny model first (indexed in seconds, with an early preview), then the real smollm2 (tens of seconds)
    proc = subprocess.Popen([str(exe), "demo", "--db", str(tmp_path / "demo.duckdb"), "--models",
                             f"{tiny_lm_dir},smollm2-135m", "--max-tokens", "16000", "--preview-tokens", "2000",
                             "--ablation-tokens", "0", "--sae-site", "", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        page = new_page(browser)
        deadline = time.monotonic() + 120
        while True:  # the server answers long before the indexing ends
            try:
                page.goto(base, wait_until="domcontentloaded", timeout=5_000)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    pytest.fail((tmp_path / "demo.log").read_text()[-2000:])
                time.sleep(0.5)
        running = page.get_by_text("index smollm2-135m: running")
        running.first.wait_for(timeout=120_000)  # Home refreshes itself as the jobs go
        assert page.get_by_test_id("stProgress").count() >= 1
        assert page.get_by_text("score the heads of smollm2-135m: waiting").count() == 1
        neurons = new_page(browser)  # the first model's neurons, while the second model is being indexed
        neurons.goto(f"{base}/neurons?run=1&layer=1&unit=3", wait_until="domcontentloaded")
        neurons.locator(".nb-tok").first.wait_for(timeout=60_000)
        wait_settled(neurons, 60_000)
        assert neurons.get_by_test_id("stException").count() == 0
        page.reload(wait_until="domcontentloaded")
        page.get_by_text("index smollm2-135m: running").first.wait_for(timeout=30_000)  # still extracting
        page.screenshot(path=str(tmp_path / "home.png"), full_page=True)
        page.get_by_text("Browse the neurons of run 2").wait_for(timeout=180_000)  # and it fills in
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
