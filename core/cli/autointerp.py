"""`neuroboard explain` and `neuroboard search` (printing only; core.autointerp computes and stores)."""

from __future__ import annotations

from dataclasses import dataclass

from core.autointerp.run import ExplainConfig
from core.cli.args import config_from
from core.cli.progress import emit, run_and_print


@dataclass
class SearchQuery:
    db: str
    """The index."""
    query: str
    """What to look for, in words (by meaning, and every word as a keyword)."""
    k: int = 20
    """Results at most."""
    run: int | None = None
    """Only this run's units."""


PARSERS = [("explain", ExplainConfig, "explain units from the index's examples with a language model, score each "
            "explanation (detection, fuzzing) against held-out windows and a control; stored in the index",
            "print one JSON object per unit, in a list", True),
           ("search", SearchQuery, "units whose explanations match a query, by meaning and by keyword",
            "print the results as JSON", False)]


def cmd_explain(a) -> int:
    from core.autointerp.run import explain

    cfg = config_from(a, ExplainConfig)  # one bar per phase: explain, then score
    return run_and_print(a, lambda bars: explain(cfg, on_unit=bars), _print_explained, "", stages=True, unit="unit")


def _print_explained(out: list[dict]) -> None:
    for r in out:
        if r["status"] != "ok":
            print(f"{r['unit']:>10}  {r['status']}: {r['reason'] or 'the reply had no explanation'}")
            continue
        sc = ("" if r["detection_bacc"] is None else
              f"  detection {r['detection_bacc']:.2f} (control {_f(r['control_detection_bacc'])}), fuzzing "
              f"{_f(r['fuzzing_bacc'])} (control {_f(r['control_fuzzing_bacc'])})")
        print(f"{r['unit']:>10}  {r['explanation']}{sc}")


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def cmd_search(a) -> int:
    from core.autointerp.search import search
    from core.index.db import connect

    q = config_from(a, SearchQuery)
    con = connect(q.db, read_only=True)
    try:
        out = search(con, q.query, q.k, q.run)
    finally:
        con.close()
    return emit(a, out, _print_search)


def _print_search(out: list[dict]) -> None:
    for r in out:
        where = f"run {r['run_id']} " + (f"layer {r['layer']} unit {r['unit']}" if r["layer"] >= 0 else
                                         f"SAE {-r['layer']} feature {r['unit']}")
        print(f"{_f(r['similarity']):>5}  {where}: {r['explanation']} (detection {_f(r['detection_bacc'])})")


COMMANDS = {"explain": cmd_explain, "search": cmd_search}
