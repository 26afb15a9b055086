"""URL query params <-> page state. Pure: takes and returns plain mappings, so it is tested without streamlit."""

from __future__ import annotations

from collections.abc import Mapping


def int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> tuple[int, str | None]:
    """The integer `name` from the URL, or `default` with a friendly problem line if it is missing or bad."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default, None
    try:
        value = int(str(raw).strip())
    except ValueError:
        return default, f"`{name}={str(raw)[:40]}` is not a number; showing {name} {default}."
    if not lo <= value <= hi:
        return default, f"`{name}={value}` is out of range ({lo}–{hi}); showing {name} {default}."
    return value, None


def choice_param(params: Mapping[str, str], name: str, choices: list[int], default: int) -> tuple[int, str | None]:
    """An integer that must be one of `choices` (e.g. a run id)."""
    value, problem = int_param(params, name, default, min(choices), max(choices))
    if problem is None and value not in choices:
        return default, f"`{name}={value}` is not in this index; showing {name} {default}."
    return value, problem
