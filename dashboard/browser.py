"""Driving the served dashboard from a real headless Chromium (Debian's `chromium` through playwright): used by the
end-to-end tests and bench/pages.py. No streamlit import; playwright is imported by the caller.

Settled means: the app's script has finished (`stApp[data-test-script-state=notRunning]`, the attribute Streamlit's
own e2e tests wait on), the websocket is connected, and every Plotly chart on the page has drawn its SVG.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

SETTLED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return charts.every(c => c.querySelector('.main-svg'));
}"""


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found; install it (apt-get install -y chromium) to run the browser checks"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[dev]')"
    return None


def launch(p):
    """A headless Chromium from a `sync_playwright()` handle."""
    return p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


def wait_settled(page, timeout_ms: float = 60_000) -> None:
    page.wait_for_function(SETTLED_JS, timeout=timeout_ms, polling=50)
