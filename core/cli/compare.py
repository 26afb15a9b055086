"""The comparison commands: cka and match (printing only; core.geometry.cka and core.units.match compute)."""

from __future__ import annotations

from core.cli.args import config_from
from core.cli.progress import emit, run_and_print
from core.geometry.cka import CKAQuery
from core.units.match import MatchQuery

PARSERS = [("cka", CKAQuery, "layer similarity of two models (CKA of every block pair on the same prompts)",
            "print the L_A x L_B grid and each block's best match as one JSON object", False),
           ("match", MatchQuery, "match two unit sets (neurons or SAE features) by activation correlation or decoder "
            "cosine: best matches, one-to-one assignment, score distribution", "print the matching as one JSON "
            "object", True)]


def cmd_cka(a) -> int:
    from core.geometry.cka import cka_json

    return emit(a, cka_json(config_from(a, CKAQuery)), _print_cka)


def _print_cka(out: dict) -> None:
    print(f"{out['kind']} CKA, {out['rep']} token, {out['prompts']} prompts of {out['set']}: rows {out['a']} "
          f"blocks, columns {out['b']} blocks")
    for i, row in enumerate(out["cka"]):
        print(f"  {i:3d} " + " ".join(f"{x:5.2f}" for x in row) + f"   best {out['best'][i]}")


def cmd_match(a) -> int:
    from core.units.match import match_units

    q = config_from(a, MatchQuery)
    return run_and_print(a, lambda bar: match_units(q, on_tokens=bar), _print_match, "match", unit="tok",
                         unit_scale=True)


def _print_match(out: dict) -> None:
    print(f"{out['a']} ({out['model_a']}) -> {out['b']} ({out['model_b']}) by {out['by']}"
          + (f" over {out['tokens']:,} tokens" if "tokens" in out else "")
          + f": median best score {out['median_best']:.3f}")
    edges, counts = out["hist_edges"], out["hist_counts"]
    for lo, c in zip(edges, counts, strict=False):
        if c:
            print(f"  best in [{lo:+.1f}, {lo + 0.1:+.1f}): {c}")
    top = sorted(out["one_to_one"], key=lambda r: -r[2])[:10]
    if top:
        print("strongest one-to-one pairs: " + ", ".join(f"{i}->{j} {s:.3f}" for i, j, s in top))


COMMANDS = {"cka": cmd_cka, "match": cmd_match}
