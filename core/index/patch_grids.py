"""Stored activation-patching grids (migration 008): written by the demo's patching job (core.demo) for the patching
page's default prompt pair, read by that page instead of computing every grid live.

A stored result is core.interventions.patching.PatchResult.as_dict() of one (model, clean, corrupted, answer, foil),
one row per grid; it is read back only where the packages that computed it (torch, transformers) are the running
ones (package_versions), so a page never shows numbers an upgrade would change.
"""

from __future__ import annotations

import json

import numpy as np

from core.index.writer import transaction
from core.model.builtin import BUILTIN

DEFAULT_PAIR = {"clean": "The capital of France is Paris. The capital of France is",
                "corrupted": "The capital of Italy is Rome. The capital of Italy is", "answer": " Paris",
                "foil": " Rome"}
"""The patching page's default prompt pair, whose grids the demo stores (here, so the page reads it without torch)."""
DEFAULT_PAIR_MODELS = tuple(BUILTIN)
"""The models whose tokenizers the pair suits (12 tokens each prompt, answer and foil one token each): the demo
stores its grids for these."""
GRIDS = {"resid_pre": "resid", "attn_out": "attn", "mlp_out": "mlp", "heads": "heads"}
"""Grid kind (the row's `kind`) -> its key in PatchResult.as_dict()."""
CHECKED = ("torch", "transformers")
"""Package versions a stored result must share with the reader."""


def package_versions() -> dict:
    """{package: installed version} of CHECKED, from the installed metadata (no import: a page reads it cheaply)."""
    from importlib.metadata import version

    return {p: version(p) for p in CHECKED}


def put(con, model_id: int, pair: dict, result: dict, provenance: dict) -> None:
    """Store `result` (PatchResult.as_dict()) of `pair` ({clean, corrupted, answer, foil}) on the model, replacing
    an earlier copy, in one transaction. `provenance`: {"weights_sha256", "source", "versions": {package: version}}."""
    key = [model_id, pair["clean"], pair["corrupted"], pair["answer"], pair["foil"]]
    heads = [str(h) for h in range(len(result["heads"][0]) if result["heads"] else 0)]
    with transaction(con):
        con.execute("DELETE FROM patch_grids WHERE model_id = ? AND clean = ? AND corrupted = ? AND answer = ? "
                    "AND foil = ?", key)
        for kind, field in GRIDS.items():
            con.execute("INSERT INTO patch_grids (model_id, clean, corrupted, answer, foil, kind, grid, labels, "
                        "clean_diff, corrupted_diff, provenance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        key + [kind, np.asarray(result[field], np.float64).tolist(),
                               heads if kind == "heads" else list(result["tokens"]), float(result["clean_diff"]),
                               float(result["corrupted_diff"]), json.dumps(provenance)])


def get(con, model: str, pair: dict, versions: dict | None = None) -> dict | None:
    """The stored result of `pair` on the model named `model` (models.name), as PatchResult.as_dict() plus
    "provenance"; None when none is stored, or when `versions` is given and a CHECKED package differs from it."""
    rows = con.execute(
        "SELECT g.model_id, g.kind, g.grid, g.labels, g.clean_diff, g.corrupted_diff, g.provenance FROM patch_grids g "
        "JOIN models m USING (model_id) WHERE m.name = ? AND g.clean = ? AND g.corrupted = ? AND g.answer = ? "
        "AND g.foil = ? ORDER BY g.model_id DESC",
        [model, pair["clean"], pair["corrupted"], pair["answer"], pair["foil"]]).fetchall()
    by_kind = {kind: (grid, labels, c, x, json.loads(prov))  # of the newest model row of that name
               for mid, kind, grid, labels, c, x, prov in rows if mid == rows[0][0]}
    if set(by_kind) != set(GRIDS):
        return None
    prov = by_kind["resid_pre"][4]
    if versions is not None and any(prov.get("versions", {}).get(p) != versions.get(p) for p in CHECKED):
        return None
    out = {"clean_diff": by_kind["resid_pre"][2], "corrupted_diff": by_kind["resid_pre"][3],
           "tokens": list(by_kind["resid_pre"][1]), "provenance": prov}
    return out | {field: [list(r) for r in by_kind[kind][0]] for kind, field in GRIDS.items()}
