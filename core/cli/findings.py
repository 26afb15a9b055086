"""The findings commands (printing only; core.findings computes and stores):

    neuroboard findings add --findings F --db INDEX --url URL --title T [--note N] [--json]
    neuroboard findings list --findings F [--json]
    neuroboard recheck FINDINGS [--id N] [--json]
    neuroboard export FINDINGS --out report.html [--id N ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.cli.args import add_config, config_from
from core.cli.progress import emit
from core.findings.store import DEFAULT_PATH


@dataclass
class FindingAdd:
    url: str
    """The view's URL as the dashboard shows it (e.g. http://127.0.0.1:8501/neurons?run=1&layer=15&unit=7)."""
    title: str
    """A title for the finding."""
    findings: str = DEFAULT_PATH
    """The findings file (created if missing)."""
    db: str = ""
    """The index the view reads (neuron and feature pages)."""
    note: str = ""
    """A note shown beside the finding."""


@dataclass
class FindingsList:
    findings: str = DEFAULT_PATH
    """The findings file."""


@dataclass
class Recheck:
    id: int | None = None
    """Only this finding (default: all)."""
    db: str = ""
    """The index to read instead of the one each finding recorded."""


@dataclass
class Export:
    out: str
    """The HTML file to write (one self-contained file: opens from disk with no network)."""
    id: list[int] = field(default_factory=list)
    """Only these findings (repeatable; default: all, in list order)."""
    title: str = "neuroboard findings"
    """The report's title."""


def add_parsers(sub) -> None:
    p = sub.add_parser("findings", help="saved findings: add one (its snapshot computed here) or list them")
    fsub = p.add_subparsers(dest="findings_cmd", required=True)
    for name, cls, help_ in (("add", FindingAdd, "save a view as a finding, computing its snapshot and manifest"),
                             ("list", FindingsList, "list the findings of a file")):
        q = fsub.add_parser(name, help=help_)
        add_config(q, cls)
        q.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("recheck", help="recompute each finding's numbers from its manifest and compare them with "
                                       "its snapshot")
    p.add_argument("findings_file", metavar="FINDINGS", help="the findings file")
    add_config(p, Recheck)
    p.add_argument("--json", action="store_true", help="print one JSON object per finding, in a list")
    p = sub.add_parser("export", help="write findings as one self-contained, interactive HTML file")
    p.add_argument("findings_file", metavar="FINDINGS", help="the findings file")
    add_config(p, Export)


def cmd_findings(a) -> int:
    from core.findings import store

    if a.findings_cmd == "add":
        from core.findings.views import make_finding

        q = config_from(a, FindingAdd)
        f = make_finding(q.url, q.title, q.note, db=q.db or None)
        fid = store.add(q.findings, f)
        return emit(a, {"id": fid, "page": f.page, "title": f.title},
                    lambda r: print(f"finding {r['id']} saved in {q.findings} ({r['page']}: {r['title']})"))
    q = config_from(a, FindingsList)
    return emit(a, [f.as_dict() for f in store.list_findings(q.findings)], _print_list)


def _print_list(rows: list[dict]) -> None:
    for f in rows:
        print(f"{f['id']:4d}  {f['page']:<13} {f['title']}  ({f['url']})")


def cmd_recheck(a) -> int:
    from core.findings import store
    from core.findings.views import recheck

    q = config_from(a, Recheck)
    todo = [store.get(a.findings_file, q.id)] if q.id is not None else store.list_findings(a.findings_file)
    return emit(a, [recheck(f, db=q.db or None) for f in todo], _print_recheck)


def _print_recheck(out: list[dict]) -> None:
    for r in out:
        what = (f"error: {r['error']}" if "error" in r else f"largest difference {r['max_abs_diff']:.3g}"
                + (f", {len(r['mismatches'])} differing values" if r["mismatches"] else "")
                + (" (the model's weights changed)" if r.get("weights_changed") else ""))
        print(f"{r['id']:4d}  {r['title']}: {what}")


def cmd_export(a) -> int:
    from core.findings import store
    from dashboard.export import export

    q = config_from(a, Export)
    rows = store.list_findings(a.findings_file)
    if q.id:
        known = {f.finding_id for f in rows}
        missing = [i for i in q.id if i not in known]
        if missing:
            raise store.FindingsError(f"no finding {missing[0]} in {a.findings_file}")
        rows = [f for f in rows if f.finding_id in set(q.id)]
    if not rows:
        raise store.FindingsError(f"no findings to export in {a.findings_file}")
    out = export(rows, q.out, q.title)
    print(f"{len(rows)} finding{'s' * (len(rows) != 1)} written to {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0


COMMANDS = {"findings": cmd_findings, "recheck": cmd_recheck, "export": cmd_export}
