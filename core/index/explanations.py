"""The explanations table (migration 007): every statement parameterised."""

from __future__ import annotations

import json

COLS = "run_id, layer, unit, status, explanation, reason, prompt, reply, explainer, settings, scores"


def put(con, row: dict) -> None:
    """Insert or replace one unit's explanation row (keys: the columns; settings and scores as dicts)."""
    vals = [row["run_id"], row["layer"], row["unit"], row["status"], row.get("explanation"), row.get("reason"),
            row.get("prompt", ""), row.get("reply"), row["explainer"], json.dumps(row.get("settings", {})),
            json.dumps(row["scores"]) if row.get("scores") is not None else None]
    con.execute("DELETE FROM explanations WHERE run_id = ? AND layer = ? AND unit = ?", vals[:3])
    con.execute(f"INSERT INTO explanations ({COLS}) VALUES ({', '.join('?' * 11)})", vals)


def set_scores(con, run_id: int, layer: int, unit: int, scores: dict, reason: str | None = None) -> None:
    """The unit's scores, and why some could not be made (`reason`; None when all were)."""
    con.execute("UPDATE explanations SET scores = ?, reason = ? WHERE run_id = ? AND layer = ? AND unit = ?",
                [json.dumps(scores), reason, run_id, layer, unit])


def get_all(con, run_id: int, layer: int | None = None) -> list[dict]:
    """The run's explanations (of one group when `layer` is given), by group and unit."""
    rows = con.execute(f"SELECT {COLS} FROM explanations WHERE run_id = ? AND (? IS NULL OR layer = ?) "
                       "ORDER BY layer, unit", [run_id, layer, layer]).fetchall()
    out = []
    for r in rows:
        d = dict(zip(COLS.split(", "), r, strict=True))
        d["settings"] = json.loads(d["settings"]) if d["settings"] else {}
        d["scores"] = json.loads(d["scores"]) if d["scores"] else None
        out.append(d)
    return out


def keyword_search(con, words: str, limit: int = 50) -> list[dict]:
    """Explanations containing every word (case-insensitive), best-scored first."""
    terms = [w for w in words.lower().split() if w][:8]
    if not terms:
        return []
    where = " AND ".join(["lower(explanation) LIKE ? ESCAPE '\\'"] * len(terms))
    pats = ["%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in terms]
    rows = con.execute(f"SELECT run_id, layer, unit, explanation, scores FROM explanations WHERE status = 'ok' AND "
                       f"{where} ORDER BY run_id, layer, unit LIMIT ?", pats + [limit]).fetchall()
    return [{"run_id": r[0], "layer": r[1], "unit": r[2], "explanation": r[3],
             "scores": json.loads(r[4]) if r[4] else None} for r in rows]


def get_one(con, run_id: int, layer: int, unit: int) -> dict | None:
    """One unit's explanation row (layer: the layer, or -sae for a feature), or None."""
    rows = con.execute(f"SELECT {COLS} FROM explanations WHERE run_id = ? AND layer = ? AND unit = ?",
                       [run_id, layer, unit]).fetchall()
    if not rows:
        return None
    d = dict(zip(COLS.split(", "), rows[0], strict=True))
    d["settings"] = json.loads(d["settings"]) if d["settings"] else {}
    d["scores"] = json.loads(d["scores"]) if d["scores"] else None
    return d


def count(con) -> int:
    """Explanations stored ('ok' ones)."""
    return int(con.execute("SELECT count(*) FROM explanations WHERE status = 'ok'").fetchone()[0])
