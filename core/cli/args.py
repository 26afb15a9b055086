"""The config is the CLI: argparse flags generated from a config dataclass, so each default and help line is written
once, in the dataclass (a docstring under each field, as sparsify does).

Types: int, float, str, bool (a default False gives `--flag`, a default True `--flag/--no-flag`), `X | None`,
`Literal[...]` (choices) and `list[str]` (a repeatable flag). A field without a default is a required flag.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import types
import typing
from dataclasses import MISSING, fields
from functools import cache


@cache
def field_docs(cls) -> dict[str, str]:
    """{field: the first line of the docstring written under it} from the class's source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(inspect.getsource(klass).lstrip())
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for a, b in zip(body, body[1:], strict=False):
            if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
                docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def _unwrap(tp):
    """The type without None (`int | None` -> int)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def add_config(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = (),
               help: dict[str, str] | None = None) -> None:
    """One flag per field of the dataclass `cls` (module docstring); `skip`: fields the command sets itself."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = _unwrap(hints[f.name])
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        text = (help or {}).get(f.name) or docs.get(f.name, "")
        kw: dict = {"help": text.replace("%", "%%"), "dest": f.name}  # argparse formats help with %
        required = f.default is MISSING and f.default_factory is MISSING
        if tp is bool:
            if default:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=True, **kw)
            else:
                parser.add_argument(flag, action="store_true", **kw)
            continue
        if typing.get_origin(tp) is typing.Literal:
            kw["choices"] = list(typing.get_args(tp))
            tp = type(kw["choices"][0])
        if typing.get_origin(tp) is list:
            kw["action"] = "append"
            tp = typing.get_args(tp)[0]
            kw["help"] += f" (default: {' '.join(map(str, default))})" if default else ""
            default = None  # argparse's append would add to a default list; None means "not given"
        if kw["help"] and not required and default not in (None, [], ""):
            kw["help"] += f" (default: {default})"
        parser.add_argument(flag, type=tp, required=required, default=None if required else default, **kw)


def config_from(args: argparse.Namespace, cls, **overrides):
    """An instance of `cls` from the parsed flags (fields absent from `args` keep their defaults)."""
    keep = {f.name for f in fields(cls) if f.default is not None}  # None from argparse means "not given" there
    names = {f.name for f in fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names and not (v is None and k in keep)}
    return cls(**(given | overrides))
