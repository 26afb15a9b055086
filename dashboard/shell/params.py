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
        return default, f"`{name}={md_code(str(raw)[:40])}` is not a number; showing {name} {default}."
    if not lo <= value <= hi:
        return default, f"`{name}={value}` is out of range ({lo}–{hi}); showing {name} {default}."
    return value, None


def str_param(params: Mapping[str, str], name: str, options: list[str], default: str) -> tuple[str, str | None]:
    """A string that must be one of `options` (a model name, a view); `default` and a problem line otherwise."""
    value = params.get(name)
    if value is None or value in options:
        return (default if value is None else value), None
    return default, f"`{name}={md_code(value[:60])}` is not available here; showing {md_code(default)}."


def md_code(s: str) -> str:
    """User text made safe inside a Markdown code span (no backtick can end it)."""
    return str(s).replace("`", "'")


def choice_param(params: Mapping[str, str], name: str, choices: list[int], default: int) -> tuple[int, str | None]:
    """An integer that must be one of `choices` (e.g. a run id)."""
    value, problem = int_param(params, name, default, min(choices), max(choices))
    if problem is None and value not in choices:
        return default, f"`{name}={value}` is not in this index; showing {name} {default}."
    return value, problem


def md_text(text: str) -> str:
    """User text shown through st.markdown as text: markdown's special characters escaped (and `$`, which would
    start math). No HTML is allowed there."""
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)
