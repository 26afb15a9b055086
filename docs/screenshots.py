"""The README's pictures, remade from the demo index: `make screenshots` (after `make index` or `make demo`).

    .venv/bin/python docs/screenshots.py [--db data/demo.duckdb] [--out docs/img] [--neuron RUN:LAYER:UNIT]
                                         [--feature RUN:SAE:FEATURE]

Serves the index with `neuroboard serve` on a free port (tests/helpers/serving.py), opens real pages in Debian's
headless Chromium (dashboard/browser.py), waits until each has its live parts and has settled, collapses the sidebar
and writes a viewport-sized PNG, reduced to a 256-colour palette and optimised (UI pictures lose nothing visible):

  neuron.png        a neuron page: stats, histogram, top examples coloured by activation
  feature.png       an SAE feature page
  trajectories.png  the logit lens of smollm2-135m beside gemma3-270m

The units shown are the demo's explained neuron and feature with the best embedding score (or, before the demo has
explained any, the most selective unit of the middle layer / SAE), unless --neuron / --feature name one.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from core.index import explanations, queries  # noqa: E402
from core.index.db import connect  # noqa: E402

VIEWPORT = {"width": 1200, "height": 800}
PROMPT = "The Eiffel Tower is in the city of"
PAGES = ("neuron", "feature", "trajectories")
LIVE = {"neuron": '.nb-table:has-text("promoted")', "feature": '.nb-table:has-text("promoted")',
        "trajectories": ".nb-grid"}
"""What each page shows once its model has loaded (its live parts), as bench/pages.py waits for them."""
TOP = {"neuron": '[data-testid="stMetric"]', "feature": '[data-testid="stMetric"]',
       "trajectories": '[data-testid="stSlider"]'}
"""The element scrolled to the top of the picture (below a page's controls), where there is one."""
HIDE_SIDEBAR = '[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] {display: none !important}'


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")


def selective(units: list[dict]) -> int:
    """The unit whose top examples sit most on one token, among those active on 0.1%–5% of tokens."""
    fits = [u for u in units if u["dominance"] is not None and 1e-3 <= u["density"] <= 0.05] or units
    return max(fits, key=lambda u: (u["dominance"] or 0, u["max"]))["unit"]


def best_explained(con, run_id: int, features: bool) -> tuple[int, int] | None:
    """(layer, unit) of the run's explained neuron (or feature) with the best embedding score, or None."""
    rows = [r for r in explanations.get_all(con, run_id) if r["status"] == "ok" and (r["layer"] < 0) == features]
    if not rows:
        return None
    r = max(rows, key=lambda r: ((r["scores"] or {}).get("embedding") or {}).get("auc") or 0.0)
    return r["layer"], r["unit"]


def pick(db: Path) -> dict[str, str]:
    """The URL of each picture, from the index."""
    con = connect(db, read_only=True)
    try:
        runs = [r for r in queries.list_runs(con) if r.has_results]
        saes = queries.run_saes(con)
        if not runs:
            raise SystemExit(f"{db} has no run with results yet; build it with `make index`")
        model = runs[0].model
        urls = {"trajectories": f"/trajectories?model={model}&compare=gemma3-270m&view=lens&lens=logit"
                                f"&prompt={quote(PROMPT)}"}
        run = next((r for r in runs if best_explained(con, r.run_id, False)), runs[0])
        mid = run.layers[len(run.layers) // 2]
        layer, unit = best_explained(con, run.run_id, False) or (mid, selective(queries.layer_units(con, run.run_id, mid)))
        urls["neuron"] = f"/neurons?run={run.run_id}&layer={layer}&unit={unit}"
        if saes:
            s = saes[0]
            _, feature = best_explained(con, s.run_id, True) or (s.group, selective(
                queries.layer_units(con, s.run_id, s.group)))
            urls["feature"] = f"/features?run={s.run_id}&sae={s.sae_id}&feature={feature}"
        return urls
    finally:
        con.close()


def shoot(browser, url: str, live: str, top: str | None, out: Path) -> None:
    """Open `url`, wait for its live parts and for the page to settle, and write an optimised PNG of the viewport."""
    from PIL import Image
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from dashboard.browser import new_page, wait_settled

    page = new_page(browser, viewport=VIEWPORT)
    try:
        page.goto(url, wait_until="commit")
        try:
            page.locator(live).first.wait_for(timeout=600_000)
            wait_settled(page, 600_000)
        except PlaywrightTimeout as e:
            seen = Path(tempfile.gettempdir()) / f"neuroboard-{out.stem}-timeout.png"
            page.screenshot(path=seen)
            raise SystemExit(f"{url}: no {live} within 10 min; the page as it was: {seen}") from e
        errors = page.get_by_test_id("stException").all_inner_texts()
        if errors:
            raise SystemExit(f"{url}: {errors[0][:300]}")
        page.add_style_tag(content=HIDE_SIDEBAR)
        if top:
            page.locator(top).first.evaluate("el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)  # the main column widens into the sidebar's room
        png = page.screenshot(type="png")
    finally:
        page.context.close()
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    img.save(out, optimize=True)
    log(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {out.stat().st_size / 1e3:.0f} kB  ({url})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=ROOT / "data" / "demo.duckdb", help="the index to serve")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go")
    ap.add_argument("--neuron", help="RUN:LAYER:UNIT instead of the picked neuron")
    ap.add_argument("--feature", help="RUN:SAE:FEATURE instead of the picked feature")
    ap.add_argument("--pages", default=",".join(PAGES), help=f"which pictures, comma-separated: {', '.join(PAGES)}")
    args = ap.parse_args()

    from dashboard.browser import launch, missing_browser

    why = missing_browser()
    if why:
        raise SystemExit(why)
    if not args.db.exists():
        raise SystemExit(f"no index at {args.db}; build it with `make index`")
    urls = pick(args.db)
    if args.neuron:
        r, lay, u = args.neuron.split(":")
        urls["neuron"] = f"/neurons?run={r}&layer={lay}&unit={u}"
    if args.feature:
        r, s, f = args.feature.split(":")
        urls["feature"] = f"/features?run={r}&sae={s}&feature={f}"
    args.out.mkdir(parents=True, exist_ok=True)

    from helpers.serving import served
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, served(args.db, Path(tmp) / "serve.log") as base, \
            sync_playwright() as p:
        browser = launch(p)
        try:
            for name in args.pages.split(","):
                if name in urls:
                    shoot(browser, base + urls[name], LIVE[name], TOP.get(name), args.out / f"{name}.png")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
