"""core/model/intervene.py is the only place a hook is registered on a module: every analysis (the lens, heads,
patching, steering, attribution graphs and their interventions) edits activations through it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {Path("core/model/intervene.py")}


def hook_calls(path: Path) -> list[int]:
    """Lines of `x.register_*hook*(...)` calls in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr.startswith("register_") and "hook" in n.func.attr]


def registering(root: Path) -> dict[str, list[int]]:
    out = {}
    for package in ("core", "dashboard"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if rel not in ALLOWED and (lines := hook_calls(path)):
                out[str(rel)] = lines
    return out


def test_only_intervene_registers_hooks():
    assert hook_calls(ROOT / "core/model/intervene.py")  # the rule looks at real calls
    assert registering(ROOT) == {}


def test_the_rule_sees_a_hook_elsewhere(tmp_path):
    (tmp_path / "core" / "lens").mkdir(parents=True)
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "core/lens/sneaky.py").write_text("def f(m, h):\n    return m.register_forward_pre_hook(h)\n")
    assert registering(tmp_path) == {"core/lens/sneaky.py": [2]}
